"""Which series to classify: rules on DICOM attributes, in the spirit of MONAI Deploy's DICOMSeriesSelector.

A rule is ``KEYWORD OP VALUE`` (grammar in :func:`parse_rule`), tested against a series' attributes as
:func:`series_attributes` reads them from a header. A :class:`Selection` keeps a series when every include
rule matches and no exclude rule does, and otherwise says which rule set it aside and what the value was.

The default (:data:`DEFAULT_RULES`) keeps axial CT image series: no localizer, no derived or secondary
series (reformats, MIPs, screen captures), no coronal, sagittal or oblique reconstruction. Each default is
a negative condition, so a series that lacks the attribute passes: an image folder has no DICOM attributes
at all, and a header without ImageType or ImageOrientationPatient is not evidence of a reformat.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from medinfer.errors import InputError
from medinfer.io.text import printable

if TYPE_CHECKING:
    from pydicom.dataelem import RawDataElement

# Read from every header: what the default rules test, plus what identifies and describes a series in a
# run's report (study, patient, protocol, reconstruction), so that --select on those needs no second pass.
SELECTION_TAGS: tuple[str, ...] = (
    "Modality", "ImageType", "SliceThickness", "ImageOrientationPatient", "SeriesDescription", "SeriesNumber",
    "StudyInstanceUID", "StudyDescription", "BodyPartExamined", "ConvolutionKernel", "PatientID", "StudyDate",
    "Manufacturer", "ProtocolName", "ContrastBolusAgent", "KVP", "PixelSpacing", "AcquisitionNumber",
)

# Exact values (any of a multi-valued attribute), not regular expressions: "LOCALIZER" must not match a
# vendor's private ImageType value that merely contains the word. DERIVED also sets aside the axial series
# some scanners write as DERIVED\PRIMARY (dual-energy blends, some iterative reconstructions): keep those
# with --all-series and rules of one's own.
DEFAULT_RULES: tuple[str, ...] = (
    "ImageType!=LOCALIZER",
    "ImageType!=DERIVED,SECONDARY",
    "Orientation!=CORONAL,SAGITTAL,OBLIQUE",
)

# The slice normal's dominant axis decides the orientation when it is within ~37° of it (cos 37° ≈ 0.8),
# so that a gantry tilt (up to ±30°) stays axial; beyond that the series is oblique.
AXIS_COSINE = 0.8


class Computed(NamedTuple):
    """An attribute computed from DICOM ones: ``compute(attributes)`` gives its value, or None."""

    needs: tuple[str, ...]
    compute: Callable[[dict], object]


def _orientation(attributes: dict) -> str | None:
    iop = attributes.get("ImageOrientationPatient")
    if not (isinstance(iop, list) and len(iop) == 6
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in iop)):
        return None
    (a, b, c), (d, e, f) = iop[:3], iop[3:]
    normal = (b * f - c * e, c * d - a * f, a * e - b * d)
    size = math.hypot(*normal)
    # Zero or parallel direction cosines (or ones far from a right angle) do not define a plane.
    if size == 0 or size < 0.5 * math.hypot(a, b, c) * math.hypot(d, e, f):
        return None
    axis = max(range(3), key=lambda i: abs(normal[i]))
    if abs(normal[axis]) / size < AXIS_COSINE:
        return "OBLIQUE"
    return ("SAGITTAL", "CORONAL", "AXIAL")[axis]  # normal along x (left-right), y (front-back), z (feet-head)


COMPUTED: dict[str, Computed] = {"Orientation": Computed(("ImageOrientationPatient",), _orientation)}

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_INT_VRS = {"IS", "SS", "US", "SL", "UL", "SV", "UV"}
_FLOAT_VRS = {"DS", "FL", "FD"}
_NUMBER_VRS = _INT_VRS | _FLOAT_VRS


def source_keywords(keywords: Iterable[str]) -> tuple[str, ...]:
    """The DICOM keywords to read for ``keywords``: computed ones replaced by what they need, duplicates
    dropped, order kept. Raises InputError for a name that is neither (pydicom would refuse it per file)."""
    out: dict[str, None] = {}
    for keyword in keywords:
        if keyword in COMPUTED:
            out.update(dict.fromkeys(COMPUTED[keyword].needs))
        elif _keywords().get(keyword.lower()) == keyword:
            out[keyword] = None
        else:
            raise InputError(f"{keyword!r} is not a DICOM keyword{_suggestion(keyword)}")
    return tuple(out)


def series_attributes(ds, keywords: Iterable[str]) -> dict[str, object]:
    """``{keyword: value}`` for each of ``keywords`` that ``ds`` (a pydicom Dataset) holds with a usable
    value, plus the :data:`COMPUTED` ones. JSON-safe: text as printable str, IS/DS and binary numbers as
    int/float, an attribute that may hold several values (ImageType, PixelSpacing ...) as a list. Enhanced CT
    keeps some (SliceThickness, ImageOrientationPatient ...) in SharedFunctionalGroupsSequence: looked up
    there when absent at the top level. A malformed value is left out, never raised."""
    from pydicom.dataelem import RawDataElement  # lazily: parsing rules needs no pydicom

    wanted = [k for k in dict.fromkeys(keywords) if k not in COMPUTED]
    needed = [k for c in COMPUTED.values() for k in c.needs]
    groups = None  # the shared functional groups, found on first need (classic CT has none)
    values = {}
    for keyword in dict.fromkeys([*wanted, *needed]):
        spec = _spec(keyword)
        if spec is None:
            continue
        value = _value(ds, spec, RawDataElement)
        if value is None:
            if groups is None:
                groups = _shared_groups(ds)
            value = next((v for g in groups if (v := _value(g, spec, RawDataElement)) is not None), None)
        if value is not None:
            values[keyword] = value
    out = {k: values[k] for k in wanted if k in values}
    for name, computed in COMPUTED.items():
        try:
            value = computed.compute(values)
        except Exception:  # a computed attribute is a hint; a surprise in its source must not stop a run
            value = None
        if value is not None:
            out[name] = value
    return out


@lru_cache(maxsize=1024)  # keyed by the keywords callers pass: bounded
def _spec(keyword: str) -> tuple[int, bool, str] | None:
    """(tag, whether the attribute may hold several values, its VR) for a DICOM keyword, None for any other
    name."""
    from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, dictionary_VM(tag) != "1", dictionary_VR(tag))


def _shared_groups(ds) -> list:
    try:
        shared = ds.get(0x52009229)  # SharedFunctionalGroupsSequence
        item = shared.value[0] if shared is not None and shared.value else None
        # Each functional group is a sequence of one item: PixelMeasuresSequence, PlaneOrientationSequence ...
        return [] if item is None else [e.value[0] for e in item if e.VR == "SQ" and e.value]
    except Exception:
        return []


def _value(ds, spec: tuple[int, bool, str], raw_type: type[RawDataElement]):
    tag, multi, vr = spec
    try:
        found = _items(ds, tag, vr, raw_type)
        if found is None:
            return None
        vr, items = found
        converted = [_convert(vr, v) for v in items]
        if not converted or any(v is None for v in converted) or all(v == "" for v in converted):
            return None  # empty, or one value malformed: the attribute cannot be trusted
        return converted if multi or len(converted) > 1 else converted[0]
    except Exception:  # pydicom converts raw values lazily: any malformed element may raise on access
        return None


# Text and IS/DS values of plain ASCII bytes read the same in every character set DICOM allows (ISO 2022
# switches sets with ESC, hence its exclusion): split here, several times faster than pydicom's conversion,
# which would otherwise dominate the header pass. LT, ST, UT and UR are single-valued: "\\" is text there.
_FAST_VRS = _TEXT_VRS | {"DS", "IS"}
_SPLIT_VRS = _FAST_VRS - {"LT", "ST", "UT", "UR"}


def _items(ds, tag: int, vr: str, raw_type: type[RawDataElement]) -> tuple[str, list] | None:
    """(VR, values) of an element, None when absent. ``vr``: the dictionary's, for implicit VR files."""
    raw = ds.get_item(tag)
    if raw is None:
        return None
    if isinstance(raw, raw_type) and isinstance(raw.value, bytes):
        vr = raw.VR or vr
        data = raw.value
        if vr in _FAST_VRS and data.isascii() and b"\x1b" not in data:
            text = data.decode("ascii")
            return vr, [v.strip(" \0") for v in (text.split("\\") if vr in _SPLIT_VRS else [text])]
    element = ds[tag]  # pydicom's conversion: other character sets, binary numbers, odd encodings
    value = element.value
    if value is None:
        return None
    return element.VR, list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]


def _convert(vr: str, value):
    """One value as str / int / float; None when malformed."""
    if vr in _TEXT_VRS:
        return printable(str(value).strip())
    if vr in _NUMBER_VRS:
        number = float(value)  # IS and DS arrive as text-backed numbers, or as plain str when malformed
        if not math.isfinite(number):
            return None
        if vr in _INT_VRS:
            return int(number) if number == int(number) else None
        return number
    return None  # binary, sequences, tags: nothing a rule can test


@lru_cache(maxsize=1)
def _keywords() -> dict[str, str]:
    """Every name a rule may test, by its lower-case spelling."""
    from pydicom.datadict import keyword_dict

    return {k.lower(): k for k in (*keyword_dict, *COMPUTED)}


def _suggestion(keyword: str) -> str:
    close = [_keywords()[c] for c in difflib.get_close_matches(keyword.lower(), _keywords(), n=3, cutoff=0.75)]
    if not close:
        return ""
    return f"; did you mean {close[0] if len(close) == 1 else ', '.join(close[:-1]) + ' or ' + close[-1]}?"


GRAMMAR = ("a rule is KEYWORD OP VALUE with OP one of = != ~ !~ < <= > >=, e.g. Modality=CT,PT  "
           "SliceThickness<=2.5  SliceThickness=0.5..2.5  SeriesDescription~axial|body  ImageType!=LOCALIZER "
           "(= and != compare text case-insensitively, any of a comma list, or a numeric range LOW..HIGH; "
           "~ and !~ search a regular expression)")
_EXPRESSION = re.compile(r"\s*([A-Za-z][A-Za-z0-9]*)\s*(!=|!~|<=|>=|=|~|<|>)\s*(.*?)\s*", re.S)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"\s*({_NUMBER})?\s*\.\.\s*({_NUMBER})?\s*")


def _range(option: str) -> tuple[float, float] | None:
    """``"0.5..2.5"`` -> (0.5, 2.5); an open end is infinite; None when ``option`` is not a range."""
    m = _RANGE.fullmatch(option)
    if not m or m.group(1) is m.group(2) is None:
        return None
    return (float(m.group(1)) if m.group(1) else -math.inf, float(m.group(2)) if m.group(2) else math.inf)


def _options(value: str) -> list[str]:
    return [o for o in (part.strip() for part in value.split(",")) if o]


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _show(value) -> str:
    """An attribute value as reasons print it: numbers plainly, text quoted, several values joined by "\\"
    as DICOM writes them."""
    if value is None:
        return "absent"
    if isinstance(value, list):
        return "\\".join(_plain(v) for v in value)
    return f"'{value}'" if isinstance(value, str) else _plain(value)


def _plain(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


@dataclass(frozen=True)
class Rule:
    """One condition on one attribute. ``text`` is the expression as written; ``origin`` where it came from:
    ``"default"``, ``"--select"``, ``"--exclude"``, the rules file's path, or ``""`` (built in code).
    ``exclude`` makes a :class:`Selection` set a series aside when the rule matches."""

    keyword: str
    op: str
    value: str
    text: str
    exclude: bool = False
    origin: str = ""

    def matches(self, attributes: dict) -> bool:
        """Whether the condition holds. A missing attribute satisfies only the negative operators."""
        value = attributes.get(self.keyword)
        negative = self.op in ("!=", "!~")
        if value is None or value == [] or value == "":
            return negative
        values = value if isinstance(value, list) else [value]
        op = self.op.lstrip("!")
        if op == "=":
            hit = any(_equals(v, o) for o in _options(self.value) for v in values)
        elif op == "~":  # against the values as DICOM writes them, so a pattern may span several
            hit = re.search(self.value, "\\".join(_plain(v) for v in values), re.IGNORECASE) is not None
        else:
            limit = float(self.value)
            hit = any(n is not None and _COMPARE[op](n, limit) for n in map(_number, values))
        return hit != negative

    @property
    def source(self) -> str:
        """The rule as reasons name it: ``"the default rule ImageType!=LOCALIZER"``, ``"--select X"`` ..."""
        if self.origin == "default":
            return f"the default rule {self.text}"
        if self.origin in ("--select", "--exclude"):
            return f"{self.origin} {self.text}"
        kind = "exclude" if self.exclude else "select"
        return f"the {kind} rule {self.text}" + (f" in {printable(self.origin)}" if self.origin else "")

    def to_dict(self) -> dict:
        return {"rule": self.text, "keyword": self.keyword, "op": self.op, "value": printable(self.value),
                "exclude": self.exclude, "origin": printable(self.origin)}


_COMPARE = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}


def _equals(value, option: str) -> bool:
    bounds = _range(option)
    if bounds is not None:
        number = _number(value)
        return number is not None and bounds[0] <= number <= bounds[1]
    if isinstance(value, (int, float)):  # SliceThickness=5 holds for 5.0; SeriesNumber=02 for 2
        number = _number(option)
        return number == value if number is not None else _plain(value).casefold() == option.casefold()
    return str(value).casefold() == option.casefold()


def parse_rule(text: str, *, exclude: bool = False, origin: str = "") -> Rule:
    """A :class:`Rule` from ``KEYWORD OP VALUE``; whitespace around OP is allowed.

    * ``=`` / ``!=``: equal (or not) to any of a comma list, text case-insensitively, numbers as numbers
      (``SliceThickness=5`` holds for 5.0), any value of a multi-valued attribute (``ImageType=LOCALIZER``);
      an item ``LOW..HIGH`` is an inclusive numeric range, either end open (``=..5``, ``=1..``);
    * ``~`` / ``!~``: a Python regular expression found (or not) anywhere in the value, case-insensitively;
      several values are joined by ``\\`` as DICOM writes them (``ImageType~^ORIGINAL\\\\PRIMARY``);
    * ``<`` ``<=`` ``>`` ``>=``: numeric; any value of a multi-valued attribute may satisfy it, a value that
      is not a number never does.

    A missing attribute satisfies only ``!=`` and ``!~``. KEYWORD is a DICOM keyword (any case) or one of
    :data:`COMPUTED`. Raises InputError naming the rule and the problem."""
    shown = printable(str(text).strip())
    where = {"default": "default rule", "--select": "--select", "--exclude": "--exclude"}.get(origin)
    if where is None:
        kind = "exclude rule" if exclude else "select rule"
        where = f"{kind} in {printable(origin)}" if origin else kind

    def fail(problem: str) -> InputError:
        return InputError(f"{where} {shown!r}: {problem}")

    m = _EXPRESSION.fullmatch(str(text))
    if not m:
        raise fail(f"not a rule; {GRAMMAR}")
    keyword, op, value = m.groups()
    if not value:
        raise fail(f"no value after {op!r}; {GRAMMAR}")
    canonical = _keywords().get(keyword.lower())
    if canonical is None:
        raise fail(f"unknown attribute {keyword!r}{_suggestion(keyword)} (rules test DICOM keywords such as "
                   f"SliceThickness, or the computed {', '.join(COMPUTED)})")
    if canonical not in COMPUTED:
        _check_testable(canonical, fail)
    if op in ("~", "!~"):
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise fail(f"bad regular expression {value!r}: {exc}") from None
    elif op in ("=", "!="):
        if not _options(value):
            raise fail(f"no value after {op!r}; {GRAMMAR}")
        if value[0] in "=<>~!":  # "Modality==CT" would compare with "=CT" and never match
            raise fail(f"{op + value[0]!r} is not an operator; {GRAMMAR}")
        for option in _options(value):
            bounds = _range(option)
            if bounds is not None and bounds[0] > bounds[1]:
                raise fail(f"empty range {option!r}: LOW must not exceed HIGH")
    elif _number(value) is None:
        raise fail(f"{op!r} compares numbers, and {value!r} is not one")
    return Rule(keyword=canonical, op=op, value=value, text=shown, exclude=exclude, origin=origin)


def _check_testable(keyword: str, fail) -> None:
    from pydicom.datadict import dictionary_VR

    vrs = set(dictionary_VR(keyword).replace(" or ", " ").split())
    if not vrs & (_TEXT_VRS | _NUMBER_VRS):
        what = "a sequence" if "SQ" in vrs else "binary data"
        raise fail(f"{keyword} holds {what} ({' or '.join(sorted(vrs))}), which a rule cannot test")


RULES_FILE_KEYS = ("select", "exclude", "defaults")


def _rules_file(path) -> tuple[list[str], list[str], bool]:
    name = printable(str(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the rules file {name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"the rules file {name} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"the rules file {name} is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    shape = '{"select": ["KEYWORD OP VALUE", ...], "exclude": [...], "defaults": true}'
    if not isinstance(data, dict):
        raise InputError(f"the rules file {name} must hold a JSON object {shape}, not a {type(data).__name__}")
    unknown = [k for k in data if k not in RULES_FILE_KEYS]
    if unknown:
        hints = "".join(f" ({k!r}: did you mean {close[0]!r}?)" for k in unknown
                        if (close := difflib.get_close_matches(k.lower(), RULES_FILE_KEYS, n=1)))
        raise InputError(f"the rules file {name} has unknown key(s) {', '.join(map(repr, unknown))}{hints}; "
                         f"it holds {shape}")
    lists = []
    for key in ("select", "exclude"):
        value = data.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InputError(f"the rules file {name}: {key!r} must be a list of rule strings such as "
                             f"\"SliceThickness<=5\", not {printable(json.dumps(value))[:80]}")
        lists.append(value)
    defaults = data.get("defaults", True)
    if not isinstance(defaults, bool):
        raise InputError(f"the rules file {name}: 'defaults' must be true or false, not "
                         f"{printable(json.dumps(defaults))[:80]}")
    return lists[0], lists[1], defaults


def _strings(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value or ())  # one expression passed bare


@dataclass(frozen=True)
class Selection:
    """Which series to keep: every ``include`` rule matches and no ``exclude`` rule does. ``defaults``:
    whether :data:`DEFAULT_RULES` are among ``include`` (first, then the rules file's, then --select)."""

    include: tuple[Rule, ...]
    exclude: tuple[Rule, ...]
    defaults: bool

    @classmethod
    def parse(cls, select: Iterable[str] = (), exclude: Iterable[str] = (), rules_file=None,
              defaults: bool = True) -> Selection:
        """From --select / --exclude expressions and a JSON rules file (``{"select": [...], "exclude":
        [...], "defaults": true}``), which combine. ``defaults=False`` (--all-series), or ``"defaults":
        false`` in the file, leaves out the default rules."""
        include: list[Rule] = []
        excluded: list[Rule] = []
        if rules_file is not None:
            file_select, file_exclude, file_defaults = _rules_file(rules_file)
            defaults = defaults and file_defaults
            origin = str(rules_file)
            include += [parse_rule(t, origin=origin) for t in file_select]
            excluded += [parse_rule(t, exclude=True, origin=origin) for t in file_exclude]
        include += [parse_rule(t, origin="--select") for t in _strings(select)]
        excluded += [parse_rule(t, exclude=True, origin="--exclude") for t in _strings(exclude)]
        if defaults:
            include[:0] = [parse_rule(t, origin="default") for t in DEFAULT_RULES]
        return cls(include=tuple(include), exclude=tuple(excluded), defaults=bool(defaults))

    @property
    def keywords(self) -> tuple[str, ...]:
        """The DICOM keywords the rules read (a computed attribute counts as those it needs), sorted."""
        return tuple(sorted(source_keywords(r.keyword for r in (*self.include, *self.exclude))))

    def verdict(self, attributes: dict) -> str | None:
        """None when a series with these attributes is selected, else why not: the first rule that sets it
        aside, and the value it saw."""
        for rule in self.include:
            if not rule.matches(attributes):
                return f"set aside by {rule.source} ({rule.keyword} is {_show(attributes.get(rule.keyword))})"
        for rule in self.exclude:
            if rule.matches(attributes):
                return f"set aside by {rule.source} ({rule.keyword} is {_show(attributes.get(rule.keyword))})"
        return None

    def describe(self) -> list[str]:
        """One line per rule, with where it came from."""
        if not self.include and not self.exclude:
            return ["every series (no selection rules)"]
        return [f"{'exclude' if r.exclude else 'include'} {r.text}  ({printable(r.origin) or 'code'})"
                for r in (*self.include, *self.exclude)]

    def to_dict(self) -> dict:
        return {"defaults": self.defaults, "include": [r.to_dict() for r in self.include],
                "exclude": [r.to_dict() for r in self.exclude]}
