"""The direction of dependencies: models → ops → kernels, and inference that needs no PyTorch.

Read from the sources' import statements (every ``import``, at any depth, including the lazy ones inside
functions), so a new import that points the wrong way fails here before it becomes an import loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to absolute names (``kernels/`` ships as ``medinfer.kernels``)."""
    package = "medinfer.kernels" if path.parent.name == "kernels" else \
        ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.update(f"{base}.{a.name}" if a.name != "*" else base for a in node.names)
            found.add(base)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.py"))


def offending(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for f in files:
        hits = sorted(m for m in imported_modules(f) if any(m == p or m.startswith(p + ".") for p in forbidden))
        if hits:
            bad[str(f.relative_to(ROOT))] = hits
    return bad


def test_ops_never_import_models_or_anything_above_them():
    above = ("medinfer.models", "medinfer.training", "medinfer.engine", "medinfer.export", "medinfer.bench",
             "medinfer.evaluation", "medinfer.cli")
    assert offending(sources("medinfer/ops"), above) == {}


def test_kernels_import_nothing_from_medinfer():
    # What a kernel needs is passed in; kernels/ stays a leaf (its own modules aside).
    files = sources("kernels")
    assert files
    hits = {f: [m for m in ms if not m.startswith("medinfer.kernels")]
            for f, ms in offending(files, ("medinfer",)).items()}
    assert {f: ms for f, ms in hits.items() if ms} == {}


def test_model_families_use_the_ops_and_not_the_registry_presets_loop():
    # The task presets live outside the registry, so the registry and the families do not import each other.
    families = [f for f in sources("medinfer/models") if f.stem not in ("__init__", "registry", "summary")]
    assert offending(families, ("medinfer.models.registry.LIVER_CLASSES", "medinfer.models.registry.CHEST_PREPROCESS",
                                "medinfer.models.registry.LIVER_PREPROCESS",
                                "medinfer.models.registry.COVID_CLASSES")) == {}
    assert "medinfer.ops" in imported_modules(ROOT / "medinfer/models/layers.py")


@pytest.mark.parametrize("module", ["medinfer/onnx_file.py", "medinfer/metadata.py", "medinfer/engine/base.py",
                                    "medinfer/engine/onnxruntime_backend.py", "medinfer/engine/__init__.py",
                                    "medinfer/backends.py", "medinfer/info.py", "medinfer/cli/__init__.py",
                                    "medinfer/cli/predict.py", "medinfer/runtime/batcher.py",
                                    "medinfer/runtime/stream.py", "medinfer/io/catalog.py", "medinfer/io/select.py",
                                    "medinfer/archive/run.py", "medinfer/archive/results.py",
                                    "medinfer/distributed.py", "medinfer/checkpoint.py"])
def test_the_inference_path_imports_no_torch_at_module_level(module):
    tree = ast.parse((ROOT / module).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names} | \
        {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] in ("torch", "matplotlib")}
