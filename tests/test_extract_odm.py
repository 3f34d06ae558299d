"""The ODM reader on the public reference corpus, hand-made edge cases, XML attacks and a large export."""

from __future__ import annotations

import csv
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import reference_corpus

from etl.extract.errors import ExtractError
from etl.extract.odm import (
    ODM_ROW_COLUMNS,
    ItemDef,
    OdmFormatError,
    OdmItem,
    iter_odm_items,
    odm_record_tables,
    read_odm_metadata,
    stage_odm,
)

REPO = Path(__file__).resolve().parents[1]
REFERENCE = reference_corpus.REFERENCE / "odm"
ODM13 = "http://www.cdisc.org/ns/odm/v1.3"
ODM20 = "http://www.cdisc.org/ns/odm/v2.0"


def _manifest() -> dict[str, dict[str, str]]:
    if not REFERENCE.is_dir():
        return {}
    with (REFERENCE / "MANIFEST.csv").open(encoding="utf-8", newline="") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


MANIFEST = _manifest()
READABLE = sorted(p for p, row in MANIFEST.items() if row["deliberately_invalid"] == "no")


def _read(path: Path) -> tuple[list[OdmItem], list[str]]:
    notices: list[str] = []
    return list(iter_odm_items(path, notices=notices)), notices


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the reference corpus -------------------------------------------------------------------

def test_the_manifest_lists_every_corpus_file():
    on_disk = sorted(p.relative_to(REFERENCE).as_posix() for p in REFERENCE.rglob("*.xml"))
    assert on_disk == sorted(MANIFEST)
    assert len(READABLE) == 39


@pytest.mark.parametrize("name", READABLE)
def test_every_itemdata_of_the_corpus_is_read_with_its_keys(name):
    # The manifest counts ItemData (and typed ItemDataXXX) anywhere in the file; in this corpus they
    # all sit in ClinicalData, so the counts must match exactly (ReferenceData items would be skipped).
    entry = MANIFEST[name]
    rows, notices = _read(REFERENCE / name)
    assert len(rows) == int(entry["n_itemdata"]) + int(entry["n_itemdata_typed"])
    dataset_xml = "Dataset-XML" in entry["vendor_namespaces"]
    for row in rows:
        assert row.item_oid and row.study_oid and row.metadata_version_oid
        assert row.item_group_oid is not None  # REDCap writes ItemGroupOID="" for some section headers
        assert (row.subject_key is None) if dataset_xml else row.subject_key
        assert 0 <= row.clinical_data_index < int(entry["n_clinicaldata"])
        assert row.line > 0 and isinstance(row.is_null, bool)
    assert len({row.subject_key for row in rows} - {None}) <= int(entry["n_subjectdata"])
    assert all(name.split("/")[-1] in notice for notice in notices)


def test_redcap_checkbox_items_come_one_per_code():
    rows, _ = _read(REFERENCE / "redcapr/checkboxes-1.xml")
    first = {r.item_oid: r.value for r in rows if r.subject_key == "1" and r.item_oid.startswith("check_two___")}
    assert first == {"check_two___a": "1", "check_two___b": "0", "check_two___c": "1", "check_two___d": "0",
                     "check_two___e": "0"}


def test_cyrillic_values_round_trip():
    rows, _ = _read(REFERENCE / "redcapr/russian.xml")
    by_subject = {r.subject_key: r for r in rows if r.item_oid == "recruitment_other"}
    assert by_subject["AAAA"].value == "от сотрудницы"
    assert by_subject["CCCC"].value == "подруга по общежитию"
    assert by_subject["AAAA"].line == 5479


def test_line_breaks_in_attribute_values_become_spaces_and_line_is_where_the_tag_ends():
    rows, _ = _read(REFERENCE / "redcap-etl/RepeatingForms.REDCap.xml")
    address = next(r for r in rows if r.item_oid == "address" and r.subject_key == "1001")
    assert (address.value, address.line) == ("3334 Mavis Alley Apt. 674 Mrazmouth, NH 88814", 314)
    assert address.study_event_oid is None  # classic REDCap project: FormData straight under SubjectData


def test_redcap_repeating_forms_events_and_file_uploads():
    rows, _ = _read(REFERENCE / "redcapr/repeating-instruments.xml")
    assert Counter((r.form_oid, r.form_repeat_key) for r in rows)[("Form.bp", "3")] == 4
    rows, _ = _read(REFERENCE / "redcapr/longitudinal.xml")
    assert {r.study_event_oid for r in rows} >= {"Event.enrollment_arm_1", "Event.final_visit_arm_1"}
    rows, _ = _read(REFERENCE / "redcapr/simple.xml")
    uploads = [r for r in rows if r.item_data_type is not None]
    assert [(r.item_oid, r.item_data_type) for r in uploads] == [("mugshot", "base64binary")] * 5
    assert all(r.value.startswith("/9j/4AAQSkZJRgABAQ") for r in uploads)  # CDATA text, a JPEG


def test_odm2_values_are_child_elements_and_the_outer_group_is_the_form():
    rows, _ = _read(REFERENCE / "cdisc-dataexchange-odm/Atlas_QS_ODMv2.xml")
    total = next(r for r in rows if r.item_oid == "IT.TOTAL_SCORE")
    assert (total.value, total.form_oid, total.item_group_oid, total.item_data_type) == (
        "7", "IG.ATLAS_FORM", "IG.ATLAS_SCORE", None)
    rows, _ = _read(REFERENCE / "cdisc-dataexchange-odm/RepeatingIG-UC-D-Example.xml")
    assert [(r.item_group_repeat_key, r.value) for r in rows if r.item_oid == "I.MH.ACTIVE"] == [
        ("1", None), ("2", "2"), ("3", "2"), ("4", "2")]  # an ItemData with no <Value> has no value
    rows, notices = _read(REFERENCE / "cdisc-dataexchange-odm/Data_Retrieval_From_FHIR_in_ODM.xml")
    assert "IT.ONGOING" in {r.item_oid for r in rows}  # read on past the embedded FHIR Condition
    assert any("http://hl7.org/fhir" in notice for notice in notices)


def test_typed_itemdata_text_and_several_clinical_data_blocks():
    rows, _ = _read(REFERENCE / "odmxmltools-jl/test.xml")
    first = rows[2]
    assert (first.study_oid, first.subject_key, first.form_oid, first.item_oid, first.value, first.item_data_type,
            first.line, first.clinical_data_index) == ("ST_1_1", "001", "FORM_VD_1", "I_1", "120", "integer", 250, 0)
    assert Counter((r.clinical_data_index, r.study_oid, r.metadata_version_oid) for r in rows) == {
        (0, "ST_1_1", "mdv_1"): 10, (1, "ST_2_1", "mdv_1"): 14, (2, "ST_2_1", "mdv_2"): 14}
    assert {r.audit_user for r in rows} == {None}  # its AuditRecord is in ReferenceData, not on data
    rows, _ = _read(REFERENCE / "odmlib/test_clinical_data_01.xml")
    assert [(r.clinical_data_index, r.item_oid, r.value) for r in rows if r.item_oid == "LBORRES"] == [
        (0, "LBORRES", "245"), (1, "LBORRES", "300")]
    assert {r.transaction_type for r in rows} == {"Insert"}


def test_odm11_transactions_and_audit_records_are_inherited():
    # No namespace, ISO-8859-1, a DOCTYPE whose DTD is not shipped (and must not be fetched).
    rows, notices = _read(REFERENCE / "cdisc-dataexchange-odm/odm1_1_0_example.xml")
    assert notices == []
    assert Counter(r.transaction_type for r in rows) == {"Insert": 62, "Update": 1}
    (update,) = [r for r in rows if r.transaction_type == "Update"]
    assert update == OdmItem(
        "123-456-789", "MetaDataVersion.001", "P001", None, "VISIT_1", None, "Page 1", None, "VITALS", "1",
        "SBP", "130", False, None, "Update", "User.002", "2001-05-31T08:47:07-05:00",
        "Error in initial data entry", 233, 0, 5)  # P001's sixth ItemGroupData
    first = rows[0]
    # The AuditRecord is on FormData; its DateTimeStamp is malformed in the source and kept as written.
    assert (first.subject_key, first.item_oid, first.audit_user, first.audit_datetime, first.audit_reason) == (
        "P001", "PT", "User.002", "2001-05-31-T10:08:40-05:00", None)
    assert {r.item_group_repeat_key for r in rows if r.item_group_oid == "VITALS" and r.study_event_oid == "VISIT_1"
            and r.transaction_type == "Insert"} == {""}  # ItemGroupRepeatKey="" stays ""


def test_dataset_xml_has_no_subject_and_numbers_records_by_sequence():
    rows, _ = _read(REFERENCE / "odmlib/ae.xml")
    assert {r.subject_key for r in rows} == {None}
    assert {r.form_oid for r in rows} == {None} and {r.item_group_oid for r in rows} == {"IG.AE"}
    assert sorted({r.item_group_repeat_key for r in rows}, key=int) == [str(i) for i in range(1, 17)]
    first = {r.item_oid: r.value for r in rows if r.item_group_repeat_key == "1"}
    assert (first["IT.USUBJID"], first["IT.AE.AETERM"]) == ("CDISC01.100008", "AGITATED")


# --- invalid inputs ---------------------------------------------------------------------------

def test_not_well_formed_file_names_file_line_and_column():
    with pytest.raises(OdmFormatError) as caught:
        list(iter_odm_items(REFERENCE / "odmlib/invalid/test_odm_001.xml"))
    assert str(caught.value) == ("test_odm_001.xml line 2, column 325: not well-formed XML: "
                                 "Namespace prefix xs for schemaLocation on ODM is not defined")
    assert isinstance(caught.value, ExtractError)


def test_metadata_only_file_gives_no_rows_and_says_so():
    rows, notices = _read(REFERENCE / "odmlib/invalid/cdash-odm-test-invalid.xml")
    assert rows == []
    assert notices == ["cdash-odm-test-invalid.xml: no ClinicalData (metadata-only file)"]


def test_schema_invalid_file_is_read_with_bad_values_as_raw_strings():
    rows, _ = _read(REFERENCE / "odmxmltools-jl/invalid/nvtest.xml")
    assert len(rows) == 9
    assert [(r.subject_key, r.value, r.item_data_type) for r in rows if r.item_oid == "I_1"] == [
        ("001", "x120", "integer"), ("002", "121", None)]


def test_truncated_file_is_a_format_error_citing_where_it_stops(tmp_path):
    path = _write(tmp_path, "cut.xml", f'<?xml version="1.0"?>\n<ODM xmlns="{ODM13}">\n<ClinicalData StudyOID="S"'
                                       ' MetaDataVersionOID="M">\n<SubjectData SubjectKey="1">\n<StudyEv')
    with pytest.raises(OdmFormatError, match=r"^cut\.xml line 5, column \d+: not well-formed XML: "):
        list(iter_odm_items(path))


@pytest.mark.parametrize(("text", "expected"), [
    ("", r"^empty\.xml line 1, column 1: not well-formed XML"),
    ('<?xml version="1.0"?>\n<html><body/></html>', r"^empty\.xml line 2: the root element is <html>, expected <ODM>"),
    ("id;name\n1;x\n", r"^empty\.xml line 1, column 1: not well-formed XML"),
])
def test_empty_and_foreign_files_are_format_errors(tmp_path, text, expected):
    with pytest.raises(OdmFormatError, match=expected):
        list(iter_odm_items(_write(tmp_path, "empty.xml", text)))


# --- hand-made cases the corpus lacks -----------------------------------------------------------

ODM13_EDGE_CASES = f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="{ODM13}" xmlns:redcap="https://projectredcap.org" FileType="Transactional" ODMVersion="1.3.2">
  <ReferenceData StudyOID="S" MetaDataVersionOID="M">
    <ItemGroupData ItemGroupOID="IG.RANGES"><ItemData ItemOID="IT.ULN" Value="40"/></ItemGroupData>
  </ReferenceData>
  <ClinicalData StudyOID="S" MetaDataVersionOID="M">
    <SubjectData SubjectKey="P1" TransactionType="Update">
      <SiteRef LocationOID="SITE.FR01"/>
      <StudyEventData StudyEventOID="SE.DIAG" StudyEventRepeatKey="2">
        <FormData FormOID="F.DIAG" FormRepeatKey="1">
          <AuditRecord><UserRef UserOID="U.form"/><LocationRef LocationOID="SITE.FR01"/>
            <DateTimeStamp>2024-01-02T10:00:00</DateTimeStamp></AuditRecord>
          <ItemGroupData ItemGroupOID="IG.DIAG" ItemGroupRepeatKey="3" TransactionType="Insert">
            <ItemData ItemOID="IT.MORPH" Value="9510/3"/>
            <ItemData ItemOID="IT.TOPO" IsNull="Yes"/>
            <ItemData ItemOID="IT.SIDE" Value="L" TransactionType="Remove">
              <AuditRecord><UserRef UserOID="U.item"/><LocationRef LocationOID="SITE.FR01"/>
                <DateTimeStamp>2024-03-04T11:00:00</DateTimeStamp>
                <ReasonForChange>entered on the wrong patient</ReasonForChange></AuditRecord>
            </ItemData>
            <redcap:Note><redcap:Text>not ODM data</redcap:Text></redcap:Note>
            <ItemDataString ItemOID="IT.NOTE"><![CDATA[a < b & c]]></ItemDataString>
          </ItemGroupData>
        </FormData>
      </StudyEventData>
    </SubjectData>
    <SubjectData SubjectKey="P2">
      <StudyEventData StudyEventOID="SE.DIAG"><FormData FormOID="F.DIAG"><ItemGroupData ItemGroupOID="IG.DIAG">
        <ItemData ItemOID="IT.MORPH" Value=""/>
      </ItemGroupData></FormData></StudyEventData>
      <SiteRef LocationOID="SITE.IT02"/>
    </SubjectData>
  </ClinicalData>
</ODM>
"""


def test_odm13_keys_nulls_transactions_audit_and_sites(tmp_path):
    rows, notices = _read(_write(tmp_path, "edge13.xml", ODM13_EDGE_CASES))
    assert [r._replace(study_oid=None, metadata_version_oid=None) for r in rows] == [
        OdmItem(None, None, "P1", "SITE.FR01", "SE.DIAG", "2", "F.DIAG", "1", "IG.DIAG", "3",
                "IT.MORPH", "9510/3", False, None, "Insert", "U.form", "2024-01-02T10:00:00", None, 14, 0, 0),
        OdmItem(None, None, "P1", "SITE.FR01", "SE.DIAG", "2", "F.DIAG", "1", "IG.DIAG", "3",
                "IT.TOPO", None, True, None, "Insert", "U.form", "2024-01-02T10:00:00", None, 15, 0, 0),
        OdmItem(None, None, "P1", "SITE.FR01", "SE.DIAG", "2", "F.DIAG", "1", "IG.DIAG", "3",
                "IT.SIDE", "L", False, None, "Remove", "U.item", "2024-03-04T11:00:00",
                "entered on the wrong patient", 16, 0, 0),
        OdmItem(None, None, "P1", "SITE.FR01", "SE.DIAG", "2", "F.DIAG", "1", "IG.DIAG", "3",
                "IT.NOTE", "a < b & c", False, "string", "Insert", "U.form", "2024-01-02T10:00:00", None, 22, 0, 0),
        # SiteRef after the data (out of schema order) still applies: a subject's rows wait for its end.
        OdmItem(None, None, "P2", "SITE.IT02", "SE.DIAG", None, "F.DIAG", None, "IG.DIAG", None,
                "IT.MORPH", "", False, None, None, None, None, None, 29, 0, 0),
    ]
    assert notices == ["edge13.xml: 1 ItemData outside ClinicalData (e.g. ReferenceData) skipped",
                       "edge13.xml: 1 element(s) of namespace https://projectredcap.org inside ClinicalData ignored"]


ODM20_EDGE_CASES = f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="{ODM20}" ODMVersion="2.0" FileType="Snapshot">
  <ClinicalData StudyOID="S" MetaDataVersionOID="M">
    <SubjectData SubjectKey="P1">
      <SiteRef LocationOID="SITE.DE03"/>
      <StudyEventData StudyEventOID="SE.FU" StudyEventRepeatKey="1">
        <ItemGroupData ItemGroupOID="F.FOLLOWUP" ItemGroupRepeatKey="2">
          <ItemGroupData ItemGroupOID="IG.TREATMENT" ItemGroupRepeatKey="1">
            <ItemData ItemOID="IT.AGENTS"><Value>VCR</Value><Value>ACT-D</Value><Value/></ItemData>
            <ItemData ItemOID="IT.DOSE" IsNull="Yes"/>
          </ItemGroupData>
          <ItemData ItemOID="IT.STATUS"><Value>alive</Value></ItemData>
        </ItemGroupData>
        <AuditRecord><UserRef UserOID="U.event"/><LocationRef LocationOID="SITE.DE03"/>
          <DateTimeStamp>2025-05-06T07:08:09Z</DateTimeStamp></AuditRecord>
      </StudyEventData>
    </SubjectData>
  </ClinicalData>
</ODM>
"""


def test_odm20_values_nested_groups_and_a_trailing_audit_record(tmp_path):
    rows, notices = _read(_write(tmp_path, "edge20.xml", ODM20_EDGE_CASES))
    assert notices == []
    assert [(r.form_oid, r.form_repeat_key, r.item_group_oid, r.item_group_repeat_key, r.item_oid, r.value,
             r.is_null, r.site_oid, r.audit_user, r.audit_datetime) for r in rows] == [
        ("F.FOLLOWUP", "2", "IG.TREATMENT", "1", "IT.AGENTS", "VCR|ACT-D|", False, "SITE.DE03",
         "U.event", "2025-05-06T07:08:09Z"),
        ("F.FOLLOWUP", "2", "IG.TREATMENT", "1", "IT.DOSE", None, True, "SITE.DE03", "U.event",
         "2025-05-06T07:08:09Z"),
        ("F.FOLLOWUP", "2", "F.FOLLOWUP", "2", "IT.STATUS", "alive", False, "SITE.DE03", "U.event",
         "2025-05-06T07:08:09Z"),
    ]


# --- XML attacks -----------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE ODM [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""
EXTERNAL_ENTITY = '<?xml version="1.0"?>\n<!DOCTYPE ODM [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>\n'
PARAMETER_ENTITY = '<?xml version="1.0"?>\n<!DOCTYPE ODM [ <!ENTITY % xxe SYSTEM "file:///etc/passwd"> %xxe; ]>\n'


def _one_item_odm(prolog: str, value: str) -> str:
    return (f'{prolog}<ODM xmlns="{ODM13}">\n<ClinicalData StudyOID="S" MetaDataVersionOID="M">'
            '<SubjectData SubjectKey="1"><StudyEventData StudyEventOID="E"><FormData FormOID="F">'
            f'<ItemGroupData ItemGroupOID="G"><ItemData ItemOID="A" Value="{value}"/>'
            f'<ItemDataString ItemOID="B">{value}</ItemDataString>'
            '</ItemGroupData></FormData></StudyEventData></SubjectData></ClinicalData></ODM>\n')


@pytest.mark.parametrize(("prolog", "value"), [
    (BILLION_LAUGHS, "&lol9;"), (EXTERNAL_ENTITY, "&xxe;"), (PARAMETER_ENTITY, "x"),
], ids=["billion-laughs", "external-entity", "external-parameter-entity"])
def test_entity_declarations_are_refused_without_expansion_or_fetching(tmp_path, prolog, value):
    path = _write(tmp_path, "attack.xml", _one_item_odm(prolog, value))
    with pytest.raises(OdmFormatError) as caught:  # expanded, the billion laughs would not end, nor fit in memory
        list(iter_odm_items(path))
    message = str(caught.value)
    assert message.startswith("attack.xml line ") and "DOCTYPE declares entities" in message
    assert "root:" not in message and "lollol" not in message


def test_an_external_dtd_is_never_read(tmp_path):
    # If the DTD were loaded, its attribute default would fill the missing Value and its entity would resolve.
    dtd = _write(tmp_path, "odm.dtd", '<!ATTLIST ItemData Value CDATA "FROM-DTD">\n<!ENTITY secret "SECRET">\n')
    prolog = f'<?xml version="1.0"?>\n<!DOCTYPE ODM SYSTEM "{dtd.as_uri()}">\n'
    plain = _one_item_odm(prolog, "x").replace(' Value="x"', "")
    rows, _ = _read(_write(tmp_path, "plain.xml", plain))
    assert [(r.item_oid, r.value) for r in rows] == [("A", None), ("B", "x")]
    # An entity the unread DTD would declare would silently become "": refused instead.
    with pytest.raises(OdmFormatError, match=r"^secret\.xml line 4, column \d+: Entity 'secret' not defined"):
        list(iter_odm_items(_write(tmp_path, "secret.xml", _one_item_odm(prolog, "&secret;"))))


def test_an_entity_no_doctype_declares_is_refused_where_it_is(tmp_path):
    """A hunt: `caf&nbsp;e` (HTML's entity, as a web EDC writes it) in a file with no DOCTYPE stopped the parser's
    events, and the error said line 1, column 5, 'StartTag: invalid element name', not the line of the value."""
    lines = _one_item_odm("", "x").splitlines()
    text = "\n".join([*lines[:-1], *([""] * 50), lines[-1]]).replace(' Value="x"', ' Value="caf&nbsp;e"')
    entity_line = next(n for n, line in enumerate(text.splitlines(), 1) if "&nbsp;" in line)
    with pytest.raises(OdmFormatError, match=rf"^nbsp\.xml line {entity_line}, column \d+: Entity 'nbsp' not defined"):
        list(iter_odm_items(_write(tmp_path, "nbsp.xml", text)))


@pytest.mark.parametrize("declared", ["ISO-8859-1", "windows-1252", "ISO_8859-1", "ISO-LATIN-1", "l1"])
def test_utf8_text_declared_as_a_one_byte_encoding_is_refused_naming_its_first_line(tmp_path, declared):
    """A hunt: XML allows it, and it loaded 'Forlì' as 'ForlÃ¬'. Written as it declares, it loads as it says."""
    text = _one_item_odm(f'<?xml version="1.0" encoding="{declared}"?>' + "\n" * 20, "Forlì")
    (mixed := tmp_path / "mixed.xml").write_bytes(text.encode("utf-8"))
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "Forlì" in row)
    with pytest.raises(OdmFormatError, match=rf'^mixed\.xml line {line}: the file declares encoding="{declared}", '
                                             r"but its text is UTF-8 \(.*'é' as 'Ã©'\)"):
        stage_odm(mixed, tmp_path / "mixed.parquet")
    (as_said := tmp_path / "as_said.xml").write_bytes(text.encode("cp1252"))
    stage_odm(as_said, tmp_path / "as_said.parquet")
    assert "Forlì" in pq.read_table(tmp_path / "as_said.parquet").column("value").to_pylist()


def test_a_value_over_the_parser_limit_is_refused_not_truncated(tmp_path):
    path = _write(tmp_path, "upload.xml", _one_item_odm("", "QUFB" * 3_000_000))  # a 12 MB file upload
    with pytest.raises(OdmFormatError, match=r"^upload\.xml line 2, column \d+: over a parser safety limit: .*HUGE$"):
        list(iter_odm_items(path))


# --- metadata ----------------------------------------------------------------------------------

def test_metadata_item_defs_and_code_lists():
    odm11 = read_odm_metadata(REFERENCE / "cdisc-dataexchange-odm/odm1_1_0_example.xml")
    assert odm11.item_defs["SEX"] == ItemDef("SEX", "Sex", "text", "CodeList.001")
    assert odm11.code_lists == {"CodeList.001": {"m": "Male", "f": "Female"}}
    redcap = read_odm_metadata(REFERENCE / "redcapr/checkboxes-1.xml")
    assert redcap.item_defs["check_one___1"].data_type == "boolean"
    assert redcap.code_lists["check_one___1.choices"] == {"1": "Checked", "0": "Unchecked"}
    odm20 = read_odm_metadata(REFERENCE / "cdisc-dataexchange-odm/Demographics_RACE_check_all_that_apply.xml")
    assert odm20.code_lists["CL.SEX"] == {"1": "Male", "2": "Female"}
    assert odm20.item_defs["IT.RACE_CODE"].code_list_oid == "CL.RACE"
    several = REFERENCE / "odmxmltools-jl/test.xml"
    assert list(read_odm_metadata(several, metadata_version_oid="mdv_2").item_defs) == ["DE_1"]
    assert len(read_odm_metadata(several).item_defs) == 7


def test_metadata_prefers_the_english_decode_and_keeps_enumerated_items(tmp_path):
    path = _write(tmp_path, "meta.xml", f"""<?xml version="1.0"?>
<ODM xmlns="{ODM13}"><Study OID="S"><MetaDataVersion OID="M" Name="v1">
  <ItemDef OID="IT.SEX" Name="SEX" DataType="text"><CodeListRef CodeListOID="CL.SEX"/></ItemDef>
  <CodeList OID="CL.SEX" Name="Sex" DataType="text">
    <CodeListItem CodedValue="F"><Decode><TranslatedText xml:lang="fr">Féminin</TranslatedText>
      <TranslatedText xml:lang="en">Female</TranslatedText></Decode></CodeListItem>
    <CodeListItem CodedValue="M"><Decode><TranslatedText>Male</TranslatedText></Decode></CodeListItem>
  </CodeList>
  <CodeList OID="CL.YN" Name="YN" DataType="text"><EnumeratedItem CodedValue="Y"/></CodeList>
</MetaDataVersion></Study></ODM>
""")
    metadata = read_odm_metadata(path)
    assert metadata.item_defs == {"IT.SEX": ItemDef("IT.SEX", "SEX", "text", "CL.SEX")}
    assert metadata.code_lists == {"CL.SEX": {"F": "Female", "M": "Male"}, "CL.YN": {"Y": None}}


# --- staging to Parquet ---------------------------------------------------------------------------

LINEAGE = {"source_file": "edge13.xml", "source_file_sha256": "ab" * 32}


def test_stage_round_trip_schema_lineage_and_rows(tmp_path):
    source = _write(tmp_path, "edge13.xml", ODM13_EDGE_CASES)
    out = tmp_path / "staged" / "edge13.parquet"
    result = stage_odm(source, out, lineage=LINEAGE, batch_rows=2)  # several batches
    assert result.rows == 5 and len(result.notices) == 3  # the last: no ItemDef to tell a misspelt ItemOID
    assert result.notices[-1].startswith("edge13.xml: no ItemDef in a MetaDataVersion")
    assert sorted(p.name for p in out.parent.iterdir()) == ["edge13.parquet"]  # no .tmp left
    table = pq.read_table(out)
    assert table.schema.names == [*ODM_ROW_COLUMNS, *LINEAGE]
    types = dict(zip(table.schema.names, table.schema.types))
    numbers = ("line", "clinical_data_index", "container")
    assert (types["is_null"], *(types[name] for name in numbers)) == (pa.bool_(), pa.int64(), pa.int32(), pa.int32())
    assert {types[name] for name in table.schema.names if name not in ("is_null", *numbers)} == {pa.string()}
    assert [tuple(row.values())[:len(ODM_ROW_COLUMNS)] for row in table.to_pylist()] == list(iter_odm_items(source))
    assert set(table.column("source_file").to_pylist()) == {"edge13.xml"}


def test_stage_empty_clinical_data_writes_a_zero_row_file_with_the_schema(tmp_path):
    out = tmp_path / "empty.parquet"
    result = stage_odm(REFERENCE / "redcapr/empty-rows.xml", out, lineage=LINEAGE)
    assert result.rows == 0
    assert result.notices == ("empty-rows.xml: ClinicalData 0 (StudyOID 'Project.REDCapREmptyRows') holds no ItemData",)
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.schema.names == [*ODM_ROW_COLUMNS, *LINEAGE]


@pytest.mark.parametrize("name", ["redcapr/clinical-trial-1.xml", "odmlib/lb.xml", "odmxmltools-jl/test.xml"])
def test_stage_corpus_files(tmp_path, name):
    out = tmp_path / "staged.parquet"
    result = stage_odm(REFERENCE / name, out)
    entry = MANIFEST[name]
    assert result.rows == pq.read_metadata(out).num_rows == int(entry["n_itemdata"]) + int(entry["n_itemdata_typed"])


def test_a_failed_stage_leaves_no_file(tmp_path):
    source = _write(tmp_path, "cut.xml", ODM13_EDGE_CASES[: len(ODM13_EDGE_CASES) // 2])
    out = tmp_path / "cut.parquet"
    with pytest.raises(OdmFormatError, match=r"^cut\.xml line \d+, column \d+"):
        stage_odm(source, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.xml"]


def test_lineage_must_not_shadow_a_row_column(tmp_path):
    with pytest.raises(ValueError, match="value"):
        stage_odm(_write(tmp_path, "x.xml", ODM13_EDGE_CASES), tmp_path / "x.parquet", lineage={"value": "x"})


# --- memory: a large export is streamed ----------------------------------------------------------

def _write_large_odm(path: Path, subjects: int, groups: int = 10, items: int = 10) -> int:
    with path.open("w", encoding="utf-8") as out:
        out.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{ODM13}" xmlns:redcap="https://projectredcap.org">'
                  '\n<ClinicalData StudyOID="RTW" MetaDataVersionOID="v1">\n')
        for s in range(subjects):
            out.write(f'<SubjectData SubjectKey="P{s:06d}" redcap:RecordIdField="id"><SiteRef LocationOID="S{s % 7}"/>'
                      '\n<StudyEventData StudyEventOID="SE.DIAG"><FormData FormOID="F.DIAG">\n')
            for g in range(1, groups + 1):
                out.write(f'<ItemGroupData ItemGroupOID="IG.DIAG" ItemGroupRepeatKey="{g}">\n')
                out.writelines(f'<ItemData ItemOID="IT.{i}" Value="value {s}-{g}-{i} of a diagnosis"/>\n'
                               for i in range(items))
                out.write("</ItemGroupData>\n")
            out.write("</FormData></StudyEventData></SubjectData>\n")
        out.write("</ClinicalData>\n</ODM>\n")
    return subjects * groups * items


def test_a_large_export_streams_in_bounded_python_memory(tmp_path):
    source = tmp_path / "large.xml"
    expected = _write_large_odm(source, subjects=2_000)  # 200,000 ItemData, 16 MB
    stage_odm(_write(tmp_path, "small.xml", ODM13_EDGE_CASES), tmp_path / "warm.parquet")  # lazy imports done
    tracemalloc.start()
    try:
        result = stage_odm(source, tmp_path / "large.parquet")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.rows == expected
    assert peak < 60 * 2**20  # about 20 MB: one 50,000-row batch; all 200,000 rows would take ~80 MB
    last = pq.read_table(tmp_path / "large.parquet").slice(expected - 1).to_pylist()[0]
    assert (last["subject_key"], last["site_oid"], last["item_oid"], last["line"]) == (
        "P001999", "S4", "IT.9", 3 + 1_999 * 123 + 121)  # 123 lines a subject; lines past 65,535 stay exact


def test_parser_memory_does_not_grow_with_file_size(tmp_path):
    # tracemalloc cannot see libxml2's own allocations, so compare the peak RSS of two separate runs.
    code = ("import resource, sys; from pathlib import Path; from etl.extract.odm import stage_odm; "
            "r = stage_odm(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(r.rows, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    peaks = {}
    for subjects in (1_000, 2_000):
        source = tmp_path / f"large{subjects}.xml"
        expected = _write_large_odm(source, subjects)
        done = subprocess.run([sys.executable, "-c", code, str(source), str(tmp_path / f"{subjects}.parquet")],
                              cwd=REPO, capture_output=True, text=True, check=True)
        rows, peaks[subjects] = map(int, done.stdout.split())
        assert rows == expected
    # Holding the tree of the extra 100,000 ItemData would cost ~85 MB; streaming costs nothing extra.
    assert peaks[2_000] - peaks[1_000] < 30_000, peaks  # KiB


def test_an_item_group_sent_twice_is_two_records_each_with_only_its_own_values(tmp_path):
    # The copy sends an item the first sending lacks: it must not fill the first record.
    body = ('<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="A" Value="first"/></ItemGroupData>\n'
            '<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="A" Value="copy"/>'
            '<ItemData ItemOID="B" Value="copy-B"/></ItemGroupData>')
    path = _write(tmp_path, "twice.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="{ODM13}" FileType="Snapshot"><ClinicalData StudyOID="S" MetaDataVersionOID="M">
<SubjectData SubjectKey="P1"><StudyEventData StudyEventOID="SE"><FormData FormOID="F">
{body}
</FormData></StudyEventData></SubjectData></ClinicalData></ODM>
""")
    stage_odm(path, tmp_path / "twice.parquet", lineage={"source_file": "twice.xml", "source_file_sha256": "0" * 64})
    rows = odm_record_tables(tmp_path / "twice.parquet")["IG"].select(["A", "B", "_line"]).to_pylist()
    assert rows == [{"A": "first", "B": "", "_line": 4}, {"A": "copy", "B": "copy-B", "_line": 5}]
    increment = odm_record_tables(tmp_path / "twice.parquet", keep_absent=True)["IG"].select(["A", "B"]).to_pylist()
    assert increment == [{"A": "copy", "B": "copy-B"}]  # in an increment the later sending wins


@pytest.mark.parametrize("on_one_line", [False, True], ids=["lines", "one line"])
def test_a_copy_is_its_whole_item_group_whatever_the_order_of_its_items(tmp_path, on_one_line):
    # The copy sends B, which the first sending lacks, before A, which it repeats: B is the copy's.
    # A group sent in two parts with no item in common is one record; an item twice in one group is a copy.
    groups = ['<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="A" Value="first"/></ItemGroupData>',
              '<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="B" Value="copy-B"/>'
              '<ItemData ItemOID="A" Value="copy"/></ItemGroupData>',
              '<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="C" Value="copy-C"/></ItemGroupData>',
              '<ItemGroupData ItemGroupOID="IG"><ItemData ItemOID="C" Value="third-C"/>'
              '<ItemData ItemOID="C" Value="fourth-C"/></ItemGroupData>']
    forms = "".join(f'<SubjectData SubjectKey="{subject}"><StudyEventData StudyEventOID="SE"><FormData FormOID="F">'
                    + ("" if on_one_line else "\n").join(groups) + "</FormData></StudyEventData></SubjectData>"
                    for subject in ("P1", "P2"))
    path = _write(tmp_path, "twice.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="{ODM13}" FileType="Snapshot"><ClinicalData StudyOID="S" MetaDataVersionOID="M">{forms}</ClinicalData></ODM>
""")
    stage_odm(path, tmp_path / "twice.parquet", lineage={"source_file": "twice.xml", "source_file_sha256": "0" * 64})
    rows = odm_record_tables(tmp_path / "twice.parquet")["IG"].select(["_subject_key", "A", "B", "C"]).to_pylist()
    expected = [{"A": "first", "B": "", "C": ""}, {"A": "copy", "B": "copy-B", "C": "copy-C"},
                {"A": "", "B": "", "C": "third-C"}, {"A": "", "B": "", "C": "fourth-C"}]
    assert rows == [{"_subject_key": subject, **row} for subject in ("P1", "P2") for row in expected]


def test_a_subject_sent_twice_resends_its_item_groups_as_copies(tmp_path):
    def subject(key: str, items: str) -> str:
        return (f'<SubjectData SubjectKey="{key}"><StudyEventData StudyEventOID="SE"><FormData FormOID="F">'
                f'<ItemGroupData ItemGroupOID="IG">{items}</ItemGroupData></FormData></StudyEventData></SubjectData>\n')
    path = _write(tmp_path, "twice.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="{ODM13}" FileType="Snapshot"><ClinicalData StudyOID="S" MetaDataVersionOID="M">
{subject("P1", '<ItemData ItemOID="A" Value="first"/>')}{subject("P2", '<ItemData ItemOID="A" Value="other"/>')}\
{subject("P1", '<ItemData ItemOID="B" Value="copy-B"/><ItemData ItemOID="A" Value="copy"/>')}</ClinicalData></ODM>
""")
    stage_odm(path, tmp_path / "twice.parquet", lineage={"source_file": "twice.xml", "source_file_sha256": "0" * 64})
    rows = odm_record_tables(tmp_path / "twice.parquet")["IG"].select(["_subject_key", "A", "B"]).to_pylist()
    assert rows == [{"_subject_key": "P1", "A": "first", "B": ""}, {"_subject_key": "P2", "A": "other", "B": ""},
                    {"_subject_key": "P1", "A": "copy", "B": "copy-B"}]
