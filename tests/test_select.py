"""Series selection rules: the grammar, every operator on present / absent / multi-valued / numeric / text
attributes, rules files, the defaults, the computed Orientation, and attributes read from headers."""

from __future__ import annotations

import json
import math

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medinfer.errors import InputError
from medinfer.io.dicom import read_header
from medinfer.io.select import (
    COMPUTED,
    DEFAULT_RULES,
    SELECTION_TAGS,
    Rule,
    Selection,
    parse_rule,
    series_attributes,
)

AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
SAGITTAL = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
# A series tilted 45° about x: the normal is (0, -0.71, 0.71), no axis within 37° of it.
OBLIQUE = [1.0, 0.0, 0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)]
# Tilted 30° (a gantry tilt): still axial.
TILTED = [1.0, 0.0, 0.0, 0.0, math.cos(math.radians(30)), math.sin(math.radians(30))]

SERIES = {"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SliceThickness": 2.5,
          "SeriesNumber": 3, "SeriesDescription": "Thorax 2.5 B30f", "PixelSpacing": [0.7, 0.7],
          "StudyDate": "20240101", "Orientation": "AXIAL"}


# --- operators ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "expected"), [
    # = on text: case-insensitive, any of a comma list
    ("Modality=CT", True), ("Modality=ct", True), ("Modality=MR", False), ("Modality=PT,CT", True),
    ("Modality = MR , ct", True), ("SeriesDescription=thorax 2.5 b30f", True), ("SeriesDescription=Thorax", False),
    # = on a multi-valued attribute: any value
    ("ImageType=PRIMARY", True), ("ImageType=localizer", False), ("ImageType=LOCALIZER,axial", True),
    # = on numbers: numerically, and ranges (inclusive, open ends), also inside comma lists
    ("SliceThickness=2.5", True), ("SliceThickness=2.50", True), ("SeriesNumber=03", True),
    ("SliceThickness=0.5..2.5", True), ("SliceThickness=2.5..5", True), ("SliceThickness=0.5..2.4", False),
    ("SliceThickness=..2.5", True), ("SliceThickness=..2", False), ("SliceThickness=2..", True),
    ("SliceThickness=3..", False), ("SliceThickness=5,1..3", True), ("PixelSpacing=0.5..0.8", True),
    ("SliceThickness=-1..0", False),
    # a range on text that is not a number never matches; text equality with ".." in it is plain text
    ("SeriesDescription=0..9", False), ("StudyDate=20230101..20241231", True),
    # !=: the negation
    ("Modality!=CT", False), ("Modality!=MR,PT", True), ("ImageType!=LOCALIZER", True),
    ("ImageType!=DERIVED,PRIMARY", False), ("SliceThickness!=0.5..2", True), ("SliceThickness!=2..3", False),
    # ~: regular expression search, case-insensitive; several values joined by "\"
    ("SeriesDescription~b30", True), ("SeriesDescription~^thorax", True), ("SeriesDescription~^2.5", False),
    ("SeriesDescription~b[0-9]+f$", True), (r"ImageType~^ORIGINAL\\PRIMARY", True), ("ImageType~AX", True),
    ("SliceThickness~^2\\.5$", True), ("SeriesNumber~^3$", True),
    # !~
    ("SeriesDescription!~scout|topo", True), ("SeriesDescription!~B30", False), ("ImageType!~LOCAL", True),
    # numeric comparisons; multi-valued: any value
    ("SliceThickness<=2.5", True), ("SliceThickness<2.5", False), ("SliceThickness>=2.5", True),
    ("SliceThickness>2.5", False), ("SliceThickness<5", True), ("SliceThickness > 1e-3", True),
    ("SeriesNumber>2", True), ("PixelSpacing<0.8", True), ("PixelSpacing>0.8", False),
    ("StudyDate>20231231", True),  # text that reads as a number compares as one
    # numeric comparison on text that is not a number never matches
    ("SeriesDescription<5", False), ("SeriesDescription>=0", False), ("Modality>0", False),
    # computed
    ("Orientation=AXIAL", True), ("Orientation!=CORONAL,SAGITTAL", True),
])
def test_operators_on_present_attributes(expression, expected):
    assert parse_rule(expression).matches(SERIES) is expected


@pytest.mark.parametrize("expression", [
    "BodyPartExamined=CHEST", "BodyPartExamined~.*", "KVP<=120", "KVP<120", "KVP>=0", "KVP>0",
    "KVP=100..140", "KVP=..140", "KVP=0..", "ContrastBolusAgent=none", "ContrastBolusAgent~^$",
])
def test_positive_conditions_on_a_missing_attribute_do_not_match(expression):
    assert not parse_rule(expression).matches(SERIES)
    assert not parse_rule(expression).matches({})


@pytest.mark.parametrize("expression", ["BodyPartExamined!=CHEST", "BodyPartExamined!~.*", "KVP!=120",
                                        "KVP!=100..140", "Orientation!=CORONAL,SAGITTAL,OBLIQUE"])
def test_negative_conditions_on_a_missing_attribute_match(expression):
    assert parse_rule(expression).matches(SERIES)
    assert parse_rule(expression).matches({"BodyPartExamined": "", "KVP": []})  # empty counts as missing


def test_a_non_numeric_value_in_a_multi_valued_attribute_does_not_stop_another_matching():
    attributes = {"PixelSpacing": ["n/a", "0.5"]}
    assert parse_rule("PixelSpacing<1").matches(attributes)
    assert not parse_rule("PixelSpacing>1").matches(attributes)
    assert parse_rule("PixelSpacing=0.4..0.6").matches(attributes)


def test_parse_keeps_what_was_written_and_canonicalises_the_keyword():
    rule = parse_rule("  slicethickness <= 2.5 ", exclude=True, origin="--exclude")
    assert rule == Rule(keyword="SliceThickness", op="<=", value="2.5", text="slicethickness <= 2.5",
                        exclude=True, origin="--exclude")
    assert parse_rule("SeriesDescription~a=b").value == "a=b"  # the first operator splits
    assert parse_rule("SeriesDescription = Chest 5 mm").value == "Chest 5 mm"


# --- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "message"), [
    ("SliceThikness<=5", "unknown attribute 'SliceThikness'; did you mean SliceThickness, "),
    ("Orientaton=AXIAL", "did you mean Orientation, "),
    ("Colour=red", "unknown attribute 'Colour'"),
    ("SeriesDescription~scout(", "bad regular expression 'scout(': missing ), unterminated subpattern"),
    ("SeriesDescription!~[a-", "bad regular expression '[a-'"),
    ("SliceThickness", "not a rule; a rule is KEYWORD OP VALUE"),
    ("SliceThickness 5", "not a rule"),
    ("=CT", "not a rule"),
    ("", "not a rule"),
    ("Modality=", "no value after '='"),
    ("Modality=,", "no value after '='"),
    ("Modality~", "no value after '~'"),
    ("Modality==CT", "'==' is not an operator"),
    ("SliceThickness=>5", "'=>' is not an operator"),
    ("SliceThickness<=thin", "'<=' compares numbers, and 'thin' is not one"),
    ("SliceThickness>nan", "is not one"),
    ("SliceThickness=5..1", "empty range '5..1'"),
    ("PixelData=0", "PixelData holds binary data"),
    ("ReferencedImageSequence~x", "ReferencedImageSequence holds a sequence (SQ)"),
])
def test_bad_rules_say_what_is_wrong(expression, message):
    with pytest.raises(InputError, match="^--select ") as info:
        parse_rule(expression, origin="--select")
    assert message in str(info.value)
    assert repr(expression) in str(info.value)


def test_errors_name_where_the_rule_came_from(tmp_path):
    with pytest.raises(InputError, match=r"^exclude rule 'Foo=1'"):
        parse_rule("Foo=1", exclude=True)
    with pytest.raises(InputError, match=r"^select rule in rules.json 'Foo=1'"):
        parse_rule("Foo=1", origin="rules.json")


# --- selection and its reasons --------------------------------------------------------------------------

LOCALIZER = {"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"], "Orientation": "CORONAL"}
MPR = {"Modality": "CT", "ImageType": ["DERIVED", "SECONDARY", "MPR"], "Orientation": "AXIAL"}
CORONAL_RECON = {"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "Orientation": "CORONAL"}


@pytest.mark.parametrize(("attributes", "reason"), [
    (SERIES, None),
    ({}, None),  # an image folder: no DICOM attributes at all
    ({"ImageType": ["ORIGINAL", "PRIMARY"]}, None),  # no ImageOrientationPatient: not evidence of a reformat
    (LOCALIZER, "set aside by the default rule ImageType!=LOCALIZER (ImageType is ORIGINAL\\PRIMARY\\LOCALIZER)"),
    (MPR, "set aside by the default rule ImageType!=DERIVED,SECONDARY (ImageType is DERIVED\\SECONDARY\\MPR)"),
    (CORONAL_RECON, "set aside by the default rule Orientation!=CORONAL,SAGITTAL,OBLIQUE "
                    "(Orientation is 'CORONAL')"),
    ({"Orientation": "OBLIQUE"}, "set aside by the default rule Orientation!=CORONAL,SAGITTAL,OBLIQUE "
                                 "(Orientation is 'OBLIQUE')"),
])
def test_defaults(attributes, reason):
    selection = Selection.parse()
    assert selection.defaults and [r.text for r in selection.include] == list(DEFAULT_RULES)
    assert selection.verdict(attributes) == reason


@pytest.mark.parametrize("attributes", [SERIES, {}, LOCALIZER, MPR, CORONAL_RECON])
def test_without_defaults_every_series_is_kept(attributes):
    selection = Selection.parse(defaults=False)
    assert selection.include == selection.exclude == () and not selection.defaults
    assert selection.verdict(attributes) is None
    assert selection.describe() == ["every series (no selection rules)"]


def test_select_and_exclude_reasons_name_the_rule_and_the_value():
    selection = Selection.parse(select=["SliceThickness<=5"], exclude=["SeriesDescription~scout"])
    assert selection.verdict({**SERIES, "SliceThickness": 10.0}) == \
        "set aside by --select SliceThickness<=5 (SliceThickness is 10)"
    assert selection.verdict({"SliceThickness": 1.25}) is None
    assert selection.verdict({}) == "set aside by --select SliceThickness<=5 (SliceThickness is absent)"
    assert selection.verdict({"SliceThickness": 1, "SeriesDescription": "Scout"}) == \
        "set aside by --exclude SeriesDescription~scout (SeriesDescription is 'Scout')"
    # include rules are AND-ed, exclude rules OR-ed, defaults first
    selection = Selection.parse(select=["Modality=CT", "SeriesNumber>1"], exclude=["SeriesNumber=7", "KVP<90"])
    assert selection.verdict(SERIES) is None
    assert "--select SeriesNumber>1 (SeriesNumber is 1)" in selection.verdict({**SERIES, "SeriesNumber": 1})
    assert "--exclude SeriesNumber=7" in selection.verdict({**SERIES, "SeriesNumber": 7})
    assert "--exclude KVP<90 (KVP is 80)" in selection.verdict({**SERIES, "KVP": 80})
    assert "the default rule ImageType!=LOCALIZER" in selection.verdict({**LOCALIZER, "SeriesNumber": 7})
    assert Selection.parse(select="Modality=MR").verdict(SERIES) == \
        "set aside by --select Modality=MR (Modality is 'CT')"  # one expression passed bare


def test_keywords_describe_and_to_dict():
    selection = Selection.parse(select=["slicethickness<=5", "Orientation=AXIAL"], exclude=["SeriesDescription~x"])
    assert selection.keywords == ("ImageOrientationPatient", "ImageType", "SeriesDescription", "SliceThickness")
    assert selection.describe() == [
        "include ImageType!=LOCALIZER  (default)", "include ImageType!=DERIVED,SECONDARY  (default)",
        "include Orientation!=CORONAL,SAGITTAL,OBLIQUE  (default)", "include slicethickness<=5  (--select)",
        "include Orientation=AXIAL  (--select)", "exclude SeriesDescription~x  (--exclude)"]
    record = selection.to_dict()
    assert json.loads(json.dumps(record)) == record and record["defaults"] is True
    assert record["exclude"] == [{"rule": "SeriesDescription~x", "keyword": "SeriesDescription", "op": "~",
                                  "value": "x", "exclude": True, "origin": "--exclude"}]
    assert Selection.parse(defaults=False).keywords == ()
    assert hash(selection) == hash(Selection.parse(select=["slicethickness<=5", "Orientation=AXIAL"],
                                                   exclude=["SeriesDescription~x"]))


# --- rules files ----------------------------------------------------------------------------------------

def _rules(tmp_path, content) -> str:
    path = tmp_path / "rules.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(path)


def test_a_rules_file_combines_with_the_command_line(tmp_path):
    path = _rules(tmp_path, {"select": ["SliceThickness<=5", "Modality=CT"], "exclude": ["SeriesDescription~scout"]})
    selection = Selection.parse(select=["KVP>=100"], exclude=["SeriesNumber=99"], rules_file=path)
    assert [r.text for r in selection.include] == [*DEFAULT_RULES, "SliceThickness<=5", "Modality=CT", "KVP>=100"]
    assert [(r.text, r.origin) for r in selection.exclude] == [("SeriesDescription~scout", path),
                                                              ("SeriesNumber=99", "--exclude")]
    assert selection.verdict({**SERIES, "KVP": 120}) is None
    assert selection.verdict({**SERIES, "SliceThickness": 10}) == \
        f"set aside by the select rule SliceThickness<=5 in {path} (SliceThickness is 10)"
    assert selection.verdict({**SERIES, "KVP": 120, "SeriesDescription": "SCOUT"}) == \
        f"set aside by the exclude rule SeriesDescription~scout in {path} (SeriesDescription is 'SCOUT')"
    assert f"include SliceThickness<=5  ({path})" in selection.describe()


@pytest.mark.parametrize(("file_defaults", "cli_defaults", "expected"), [
    (None, True, True), (True, True, True), (False, True, False), (True, False, False), (None, False, False)])
def test_defaults_can_be_dropped_by_the_file_or_the_command_line(tmp_path, file_defaults, cli_defaults, expected):
    content = {"select": ["Modality=CT"]} if file_defaults is None else {"defaults": file_defaults}
    selection = Selection.parse(rules_file=_rules(tmp_path, content), defaults=cli_defaults)
    assert selection.defaults is expected
    assert (selection.verdict(LOCALIZER) is None) is not expected


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("", "is not valid JSON"),
    ('["Modality=CT"]', "must hold a JSON object"),
    ({"select": "Modality=CT"}, "'select' must be a list of rule strings"),
    ({"exclude": [1]}, "'exclude' must be a list of rule strings"),
    ({"defaults": "no"}, "'defaults' must be true or false, not \"no\""),
    ({"selct": ["Modality=CT"]}, "unknown key(s) 'selct' ('selct': did you mean 'select'?)"),
    ({"select": [], "rules": []}, "unknown key(s) 'rules'"),
    ({"select": ["Modality=CT", "Foo=1"]}, "select rule in {path} 'Foo=1': unknown attribute 'Foo'"),
    ({"exclude": ["SeriesDescription~("]}, "exclude rule in {path} 'SeriesDescription~(': bad regular expression"),
])
def test_bad_rules_files_are_named(tmp_path, content, message):
    path = _rules(tmp_path, content)
    with pytest.raises(InputError) as info:
        Selection.parse(rules_file=path)
    assert path in str(info.value) and message.format(path=path) in str(info.value)


def test_unreadable_rules_files_are_named(tmp_path):
    with pytest.raises(InputError, match="cannot read the rules file .*missing.json: No such file"):
        Selection.parse(rules_file=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_bytes(b'{"select": ["SeriesDescription=\xff"]}')
    with pytest.raises(InputError, match="rules file .*bad.json is not UTF-8 text"):
        Selection.parse(rules_file=tmp_path / "bad.json")


# --- Orientation and attributes from a Dataset ----------------------------------------------------------

@pytest.mark.parametrize(("iop", "expected"), [
    (AXIAL, "AXIAL"), (TILTED, "AXIAL"), (CORONAL, "CORONAL"), (SAGITTAL, "SAGITTAL"), (OBLIQUE, "OBLIQUE"),
    ([0.0, 1.0, 0.0, 1.0, 0.0, 0.0], "AXIAL"),  # a flipped axial series is still axial
    ([2.0, 0.0, 0.0, 0.0, 2.0, 0.0], "AXIAL"),  # unnormalised cosines still give a direction
    ([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], None),  # parallel: no plane
    ([0.0] * 6, None), (AXIAL[:5], None), ([*AXIAL, 0.0], None), ([1.0, 0.0, 0.0, 0.0, math.nan, 1.0], None),
    ("AXIAL", None), (["1", "0", "0", "0", "1", "0"], None), (None, None),
])
def test_orientation(iop, expected):
    assert COMPUTED["Orientation"].compute({"ImageOrientationPatient": iop}) == expected
    ds = Dataset()
    if isinstance(iop, list) and all(isinstance(v, float) and math.isfinite(v) for v in iop):
        ds.ImageOrientationPatient = iop
        assert series_attributes(ds, ["ImageOrientationPatient"]).get("Orientation") == expected


def _raw(keyword: str, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(keyword), vr, len(value), value, 0, False, True)


def test_series_attributes_from_a_dataset():
    ds = Dataset()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "1.25"
    ds.SeriesNumber = "4"
    ds.ImageOrientationPatient = AXIAL
    ds.PixelSpacing = [0.5, 0.5]
    ds.SeriesDescription = "  Thorax\n1.25 "
    ds.ConvolutionKernel = "B30f"
    ds.PatientName = "Doe^Jane"
    ds.Rows = 512
    ds.StudyDescription = ""
    attributes = series_attributes(ds, [*SELECTION_TAGS, "PatientName", "Rows", "PatientAge"])
    assert attributes == {"Modality": "CT", "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "SliceThickness": 1.25,
                          "SeriesNumber": 4, "ImageOrientationPatient": AXIAL, "PixelSpacing": [0.5, 0.5],
                          "SeriesDescription": "Thorax\\u000a1.25", "ConvolutionKernel": ["B30f"],
                          "PatientName": "Doe^Jane", "Rows": 512, "Orientation": "AXIAL"}
    assert type(attributes["SeriesNumber"]) is int and type(attributes["SliceThickness"]) is float
    assert json.loads(json.dumps(attributes)) == attributes
    # Orientation is computed even when ImageOrientationPatient is not asked for
    assert series_attributes(ds, ["Modality"]) == {"Modality": "CT", "Orientation": "AXIAL"}
    assert series_attributes(Dataset(), SELECTION_TAGS) == {}


@pytest.mark.parametrize(("keyword", "vr", "raw"), [
    ("SliceThickness", "DS", b"thin"), ("SliceThickness", "DS", b"nan "), ("SliceThickness", "DS", b"inf "),
    ("SeriesNumber", "IS", b"1.5 "), ("SeriesNumber", "IS", b"x "), ("PixelSpacing", "DS", b"0.5\\abc "),
    ("PixelSpacing", "DS", b"0.5\\"), ("ImageOrientationPatient", "DS", b"1\\0\\0\\0\\1\\zero"),
    ("KVP", "DS", b""), ("Modality", "CS", b"  "), ("SeriesDescription", "LO", b"\0\0"),
    ("Rows", "US", b"\x01"),  # 1 byte for a 2-byte number
    ("KVP", "DS", b"\xff\xfe"),  # not ASCII: pydicom's conversion, which gives no number
    ("SliceThickness", "OB", b"\x00\x01"),  # binary where a number belongs
])
def test_malformed_values_are_skipped_never_raised(keyword, vr, raw):
    ds = Dataset()
    ds.Modality = "CT"
    ds[Tag(keyword)] = _raw(keyword, vr, raw)
    attributes = series_attributes(ds, [*SELECTION_TAGS, "Rows"])
    assert keyword not in attributes or keyword == "Modality" and "Modality" not in attributes
    assert "Orientation" not in attributes


def test_raw_values_read_like_pydicom_converts_them():
    ds = Dataset()
    ds[Tag("ImageType")] = _raw("ImageType", "CS", b"ORIGINAL\\PRIMARY\\AXIAL ")
    ds[Tag("StudyInstanceUID")] = _raw("StudyInstanceUID", "UI", b"1.2.3\0")
    ds[Tag("SliceThickness")] = _raw("SliceThickness", "DS", b"5.000000")
    ds[Tag("ImageOrientationPatient")] = _raw("ImageOrientationPatient", None, b"1\\0\\0\\0\\0\\-1 ")  # implicit VR
    ds[Tag("SeriesDescription")] = _raw("SeriesDescription", "LO", b"a\\b ")
    ds[Tag("ImageComments")] = _raw("ImageComments", "LT", b"a\\b ")  # single-valued text keeps its backslash
    assert series_attributes(ds, [*SELECTION_TAGS, "ImageComments"]) == {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "StudyInstanceUID": "1.2.3", "SliceThickness": 5.0,
        "ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 0.0, -1.0], "SeriesDescription": ["a", "b"],
        "ImageComments": "a\\b", "Orientation": "CORONAL"}


def test_enhanced_ct_attributes_come_from_the_shared_functional_groups():
    measures, plane, shared = Dataset(), Dataset(), Dataset()
    measures.SliceThickness = "0.625"
    measures.PixelSpacing = [0.4, 0.4]
    plane.ImageOrientationPatient = SAGITTAL
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.SliceThickness = ""  # empty at the top level: the functional group's value counts
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    attributes = series_attributes(ds, SELECTION_TAGS)
    assert attributes["SliceThickness"] == 0.625 and attributes["PixelSpacing"] == [0.4, 0.4]
    assert attributes["Orientation"] == "SAGITTAL"


# --- read_header ----------------------------------------------------------------------------------------

def test_read_header_returns_selection_attributes():
    header = read_header(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert not isinstance(header, str)
    assert header.attributes["Modality"] == "CT" and header.attributes["Orientation"] == "AXIAL"
    assert header.attributes["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert header.attributes["SliceThickness"] == 5.0 and header.attributes["SeriesNumber"] == 1
    assert set(header.attributes) <= {*SELECTION_TAGS, *COMPUTED}
    assert Selection.parse().verdict(header.attributes) is None
    json.dumps(header.attributes)
    hash(header)
    more = read_header(pydicom.data.get_testdata_file("CT_small.dcm"), tags=("Rows", "PatientName", "Orientation"))
    assert more.attributes["Rows"] == 128 and more.attributes["PatientName"] == "CompressedSamples^CT1"
    assert more.attributes["Orientation"] == "AXIAL"
    with pytest.raises(InputError, match="'SliceThikness' is not a DICOM keyword; did you mean SliceThickness, "):
        read_header(pydicom.data.get_testdata_file("CT_small.dcm"), tags=("SliceThikness",))


def test_read_header_decodes_text_in_its_character_set(tmp_path):
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SeriesDescription = "Thorax nativ ä"
    ds.ImageType = ["DERIVED", "SECONDARY", "MPR"]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "mpr.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = read_header(path)
    assert header.attributes["SeriesDescription"] == "Thorax nativ ä" and header.description == "Thorax nativ ä"
    assert Selection.parse().verdict(header.attributes) == \
        "set aside by the default rule ImageType!=DERIVED,SECONDARY (ImageType is DERIVED\\SECONDARY\\MPR)"
