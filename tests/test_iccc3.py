"""ICCC-3 classification against the 40 derived cases of the shared reference corpus."""

import csv
import shutil

import pandas as pd
import pytest
import reference_corpus

from etl.transform import iccc3
from etl.transform.icdo3 import IcdO3Error, parse_topography

ICCC3_DIR = reference_corpus.REFERENCE / "iccc3"


def _known_pairs() -> list[dict[str, str]]:
    with (ICCC3_DIR / "known_pairs.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_packaged_table_is_the_reference_table_byte_for_byte():
    reference = ICCC3_DIR / "iccc-data-third-edition-iarc-2017.csv"
    assert iccc3.DEFAULT_TABLE_PATH.read_bytes() == reference.read_bytes()
    assert len(_known_pairs()) == 40


@pytest.mark.parametrize("case", _known_pairs(), ids=lambda case: f"{case['case_id']}-{case['icdo3_morphology']}")
def test_known_pairs_classify_as_derived(case):
    cls = iccc3.classify(case["icdo3_histology"], case["icdo3_behaviour"], case["icdo3_topography"])
    assert (cls.code, cls.extended, cls.group or "", cls.subgroup or "", cls.name) == (
        case["iccc_recode"], case["iccc_extended"], case["iccc_main_group"], case["iccc_site_group"],
        case["iccc_group_name"])


def test_the_spreadsheet_corrupted_table_is_refused_naming_line_and_cell():
    corrupted = ICCC3_DIR / "historical" / "iccc-data-third-edition-iarc-2017.CORRUPTED-04f7305.csv"
    with pytest.raises(ValueError, match=r"line 5, column 'Hist IN': '98' in '98,359,836' is not dddd or dddd-dddd"):
        iccc3.load_iccc3_table(corrupted)


def test_any_other_malformed_cell_is_refused(tmp_path):
    lines = iccc3.DEFAULT_TABLE_PATH.read_text(encoding="utf-8").split("\n")
    lines[76] = lines[76].replace('"9210,9220,9240,"', '"9210,,9220,9240"')  # line 77: the tolerated comma, moved
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.csv: line 77, column 'Hist IN': empty item"):
        iccc3.load_iccc3_table(broken)

    lines = iccc3.DEFAULT_TABLE_PATH.read_text(encoding="utf-8").split("\n")
    lines[57] = lines[57].replace(",C000-C809,", ",C000-809,")  # retinoblastoma, the who-2008 typo
    broken.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 58, column 'Sites IN': 'C000-809' .* is not Cddd or Cddd-Cddd"):
        iccc3.load_iccc3_table(broken)


def test_overlapping_rules_of_different_codes_are_refused(tmp_path):
    lines = iccc3.DEFAULT_TABLE_PATH.read_text(encoding="utf-8").split("\n")
    lines.insert(5, '4,Precursor cell leukemias,2,C420,,9836,,012,,005,3')  # 9836 at C42.0 is already 011/001
    overlapping = tmp_path / "overlapping.csv"
    overlapping.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match="lines 5 and 6 both classify histology 9836"):
        iccc3.load_iccc3_table(overlapping)


def test_a_copy_of_the_table_loads_like_the_packaged_one(tmp_path):
    copy = tmp_path / "copy.csv"
    shutil.copy(iccc3.DEFAULT_TABLE_PATH, copy)
    table = iccc3.load_iccc3_table(copy)
    assert iccc3.classify("9510/3", None, "C692", table) == iccc3.classify("9510", "3", "C69.2")
    assert table.group_names["V"] == "Retinoblastoma"
    assert table.group_names["VIII(a)"] == "Osteosarcomas"


def test_unmatched_and_in_situ_tumours_are_not_classified():
    assert iccc3.classify("8960", "1", "C64.9").code == "999"
    assert iccc3.classify("8500", "2", "C50.9") == iccc3.Iccc3Class("999", "999", None, None,
                                                                     "Not classified by SEER or in situ")


@pytest.mark.parametrize(("morphology", "topography", "codes"), [
    ("9530/0", "C70.0", ("035", "031")),   # meningioma of the cerebral meninges
    ("9394/1", "C72.0", ("031", "017")),   # myxopapillary ependymoma of the spinal cord
    ("8272/0", "C75.1", ("035", "027")),   # pituitary adenoma
    ("9350/1", "C75.2", ("035", "028")),   # craniopharyngioma
    ("9080/0", "C75.3", ("101", "073")),   # mature teratoma of the pineal gland
    ("9421/1", "C72.3", ("032", "019")),   # pilocytic astrocytoma of the optic nerve
    ("9505/1", "C71.0", ("035", "030")),   # ganglioglioma
    ("9530/0", "C41.0", ("999", "999")),   # meningioma of the skull bone: not intracranial
    ("9394/1", "C49.5", ("999", "999")),   # sacrococcygeal myxopapillary ependymoma: not intraspinal
    ("9505/1", "C80.9", ("999", "999")),   # unknown site
    ("9383/1", "C72.5", ("031", "017")),   # subependymoma, cranial nerve (C72.9 is the range's last site)
    ("9394/3", "C49.5", ("031", "017")),   # malignant: the table's C00.0-C80.9 stands
])
def test_benign_and_borderline_tumours_are_classified_only_inside_the_skull_and_spinal_canal(
        morphology, topography, codes):
    """The table's group III rows take /0-/1 at C00.0-C80.9 (SEER registers them at CNS sites only)."""
    cls = iccc3.classify(morphology, None, topography)
    assert (cls.code, cls.extended) == codes
    assert iccc3.classify(morphology, None, topography, extensions=False) == cls


def test_classify_needs_a_behaviour():
    with pytest.raises(IcdO3Error, match="a behaviour"):
        iccc3.classify("9510", None, "C69.2")


def test_group_of_reads_the_recode():
    assert iccc3.group_of("081") == ("VIII", "VIII(a)")
    assert iccc3.group_of("050") == ("V", "V")
    assert iccc3.group_of("122") == ("XII", "XII(b)")
    with pytest.raises(ValueError, match="not a main group"):
        iccc3.group_of("130")


def test_classify_frame_keeps_the_index_and_leaves_missing_inputs_empty():
    diagnosis = pd.DataFrame({
        "icdo3_morphology": ["9510", None, "8370/3", "8960"],
        "icdo3_behaviour": ["3", "3", None, 1.0],
        "icdo3_topography": ["C69.2", "C64.9", "C740", "C64.9"],
    }, index=[10, 11, 12, 13])
    derived = iccc3.classify_frame(diagnosis)
    assert list(derived.columns) == iccc3.FRAME_COLUMNS
    assert list(derived.index) == [10, 11, 12, 13]
    assert derived.loc[10].tolist() == ["050", "035", "V", "V", False, None]
    assert derived.loc[11, ["iccc3_code", "iccc3_group"]].isna().all() and pd.isna(derived.loc[11, "is_very_rare"])
    assert derived.loc[12].tolist() == ["111", "093", "XI", "XI(a)", True, None]
    assert derived.loc[13].tolist() == ["999", "999", None, None, False, None]
    assert str(derived["is_very_rare"].dtype) == "boolean"


def test_classify_frame_names_the_row_of_an_invalid_code():
    diagnosis = pd.DataFrame({"icdo3_morphology": ["9510"], "icdo3_behaviour": ["3"], "icdo3_topography": ["C43.1"]},
                             index=["D7"])
    with pytest.raises(IcdO3Error, match=r"row 'D7': topography 'C43\.1'"):
        iccc3.classify_frame(diagnosis)


@pytest.mark.parametrize(("morphology", "topography", "very_rare"), [
    ("8370/3", "C74.0", True),   # adrenocortical carcinoma, XI(a)
    ("8720/3", "C44.5", True),   # melanoma, XI(d)
    ("8973/3", "C34.1", True),   # pleuropulmonary blastoma, XII(a)
    ("9370/3", "C41.2", True),   # chordoma, VIII(d)
    ("8620/3", "C56.9", True),   # granulosa cell tumour, X(e)
    ("8806/3", "C48.2", True),   # desmoplastic small round cell tumour, IX(d)
    ("9510/3", "C69.2", False),  # retinoblastoma
    ("8963/3", "C49.2", False),  # extrarenal rhabdoid: deliberately not on the list
    ("8973/1", "C34.1", False),  # not classified
])
def test_is_very_rare(morphology, topography, very_rare):
    cls = iccc3.classify(morphology, None, topography)
    assert iccc3.is_very_rare(cls, morphology) is very_rare


# -- inflammatory myofibroblastic tumour (the crizotinib trial) ----------------------------------

@pytest.mark.parametrize("topography", ["C34.1", "C48.1", "C49.4", "C67.9", "C49.0"])
def test_imt_8825_3_is_classified_by_the_iarc_table_itself(topography):
    cls = iccc3.classify("8825/3", None, topography)
    assert (cls.code, cls.extended, cls.group, cls.subgroup) == ("092", "056", "IX", "IX(b)")
    assert cls.name == "Fibroblastic and myofibroblastic tumors" and cls.extension is None
    assert iccc3.classify("8825/3", None, topography, extensions=False) == cls


@pytest.mark.parametrize("topography", ["C34.1", "C48.1", "C49.4", "C67.9", "C49.0"])
def test_imt_8825_1_gets_its_malignant_counterpart_class_flagged_as_an_extension(topography):
    assert iccc3.classify("8825", "1", topography, extensions=False).code == iccc3.NOT_CLASSIFIED
    cls = iccc3.classify("8825", "1", topography)
    assert (cls.code, cls.extended, cls.group, cls.subgroup) == ("092", "056", "IX", "IX(b)")
    assert cls.extension is not None and "8825/1" in cls.extension and "extension" in cls.extension
    assert not iccc3.is_very_rare(cls, "8825")


def test_only_listed_codes_are_extended():
    assert set(iccc3.EXTENSIONS) == {("8825", "1")}
    assert iccc3.classify("8960", "1", "C64.9").code == iccc3.NOT_CLASSIFIED  # other /1 codes stay out
    assert iccc3.classify("8825", "0", "C34.1").code == iccc3.NOT_CLASSIFIED  # a benign myofibroblastoma too


def test_classify_frame_applies_the_extension_unless_switched_off():
    diagnosis = pd.DataFrame({"icdo3_morphology": ["8825", "8825"], "icdo3_behaviour": ["1", "3"],
                              "icdo3_topography": ["C48.1", "C48.1"]})
    assert iccc3.classify_frame(diagnosis)["iccc3_code"].tolist() == ["092", "092"]
    assert iccc3.classify_frame(diagnosis, extensions=False)["iccc3_code"].tolist() == ["999", "092"]


def test_the_frame_says_which_diagnoses_an_extension_classified():
    frame = pd.DataFrame({"icdo3_morphology": ["8825", "8825", "9510"], "icdo3_behaviour": ["1", "3", "3"],
                          "icdo3_topography": ["C49.4", "C49.4", "C69.2"]})
    derived = iccc3.classify_frame(frame)
    assert derived.iccc3_code[0] == derived.iccc3_code[1] != iccc3.NOT_CLASSIFIED
    assert "8825/1" in derived.iccc3_extension[0]
    assert derived.iccc3_extension[1] is None and derived.iccc3_extension[2] is None


def test_every_site_the_iarc_table_names_is_an_icd_o_3_site_the_warehouse_accepts():
    """The subsite list of etl.transform.icdo3 against the table: each range's first and last site exists."""
    table = iccc3.default_table()
    ends = {site for rules in table.rules_by_histology.values() for rule in rules
            for first_last in rule.sites for site in first_last}
    assert len(ends) > 80  # 91 in the IARC 2017 table
    for site in sorted(ends):
        assert parse_topography(f"C{site:03d}") == f"C{site // 10:02d}.{site % 10}"
