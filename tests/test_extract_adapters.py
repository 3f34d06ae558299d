"""Every source adapter behind the one interface: found by the registry, the same staged contract, and a clear
refusal of a file of another format."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pandas as pd
import pyreadstat
import pytest
from pydantic import BaseModel

from etl.extract.adapter import LINE_COLUMN, LINEAGE_COLUMNS, SourceAdapter, adapter_for, adapter_for_file, adapters
from etl.extract.errors import ExtractError

LINEAGE = {"source_file": "export", "source_file_sha256": "0" * 64}

ODM = """<?xml version="1.0" encoding="UTF-8"?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" FileOID="F.1" FileType="Snapshot" ODMVersion="1.3.2"
     CreationDateTime="2026-11-30T02:00:00">
  <ClinicalData StudyOID="IMT" MetaDataVersionOID="v1">
    <SubjectData SubjectKey="IMT-001">
      <StudyEventData StudyEventOID="SE.BASELINE">
        <FormData FormOID="F.ELIG">
          <ItemGroupData ItemGroupOID="IG.ELIG">
            <ItemData ItemOID="LVEF" Value="64"/>
          </ItemGroupData>
        </FormData>
      </StudyEventData>
    </SubjectData>
  </ClinicalData>
</ODM>
"""


def _csv(folder: Path) -> Path:
    path = folder / "ELIG.csv"
    path.write_text("patient;lvef\nIMT-001;64\n", encoding="utf-8")
    return path


def _odm(folder: Path) -> Path:
    path = folder / "imt.xml"
    path.write_text(ODM, encoding="utf-8")
    return path


def _xpt(folder: Path) -> Path:
    path = folder / "elig.xpt"
    pyreadstat.write_xport(pd.DataFrame({"PATIENT": ["IMT-001"], "LVEF": [64.0]}), str(path), file_format_version=5)
    return path


def _sas7bdat(folder: Path) -> Path:
    path = folder / "elig.sas7bdat"
    pyreadstat.write_sas7bdat(pd.DataFrame({"PATIENT": ["IMT-001"], "LVEF": [64.0]}), str(path))
    return path


def _sav(folder: Path) -> Path:
    path = folder / "elig.sav"
    pyreadstat.write_sav(pd.DataFrame({"PATIENT": ["IMT-001"], "LVEF": [64.0]}), str(path))
    return path


def _dta(folder: Path) -> Path:
    path = folder / "elig.dta"
    pyreadstat.write_dta(pd.DataFrame({"PATIENT": ["IMT-001"], "LVEF": [64.0]}), str(path))
    return path


def _xlsx(folder: Path) -> Path:
    workbook = openpyxl.Workbook()
    workbook.active.title = "Eligibility"
    workbook.active.append(["patient", "lvef"])
    workbook.active.append(["IMT-001", 64])
    path = folder / "imt.xlsx"
    workbook.save(path)
    return path


def _zip(folder: Path) -> Path:
    path = folder / "export.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ELIG.csv", "patient;lvef\nIMT-001;64\n")
    return path


# One small file per format, with the record set and the values it must give.
OWN_FILES: dict[str, tuple[Callable[[Path], Path], str, dict[str, str]]] = {
    "csv": (_csv, "ELIG", {"patient": "IMT-001", "lvef": "64"}),
    "odm": (_odm, "IG.ELIG", {"LVEF": "64", "_subject_key": "IMT-001"}),
    "sas": (_xpt, "elig", {"PATIENT": "IMT-001", "LVEF": "64"}),
    "spss": (_sav, "elig", {"PATIENT": "IMT-001", "LVEF": "64"}),
    "stata": (_dta, "elig", {"PATIENT": "IMT-001", "LVEF": "64"}),
    "excel": (_xlsx, "Eligibility", {"patient": "IMT-001", "lvef": "64"}),
}


def test_every_adapter_is_found_by_the_registry() -> None:
    found = adapters()
    assert {"csv", "odm", "sas", "spss", "stata", "excel"} <= set(found)
    for name, adapter in found.items():
        assert isinstance(adapter, SourceAdapter)
        assert adapter.format == name
        assert adapter_for(name) is adapter
        assert adapter.description and adapter.suffixes
        assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in adapter.suffixes)
        assert issubclass(adapter.Options, BaseModel)
        assert adapter.Options.model_config.get("extra") == "forbid"
        adapter.Options()  # every option has a default: a file can be read before any mapping exists


def test_no_two_adapters_claim_a_suffix() -> None:
    suffixes = [suffix for adapter in adapters().values() for suffix in adapter.suffixes]
    assert len(suffixes) == len(set(suffixes))


@pytest.mark.parametrize(("name", "format_name"), [
    ("DM.xpt", "sas"), ("ae.SAS7BDAT", "sas"), ("imt.xlsx", "excel"), ("imt.XLS", "excel"), ("registry.ods", "excel"),
    ("ELIG.csv", "csv"), ("sacha.xml", "odm"), ("registry.sav", "spss"), ("registry.ZSAV", "spss"),
    ("registry.dta", "stata"),
])
def test_adapter_for_file_by_suffix(name: str, format_name: str) -> None:
    assert adapter_for_file(Path(name)).format == format_name


def test_unknown_suffix_lists_the_known_ones() -> None:
    with pytest.raises(ExtractError, match=r"export\.json: unknown file type; expected one of .*\.sas7bdat.*\.xlsx"):
        adapter_for_file(Path("export.json"))


@pytest.mark.parametrize("format_name", sorted(OWN_FILES))
def test_staged_contract(tmp_path: Path, format_name: str) -> None:
    """Strings as delivered, `_line` int64, lineage columns; the artefact at `out` and nothing beside it."""
    adapter = adapters()[format_name]
    make, record_set, expected = OWN_FILES[format_name]
    source = make(tmp_path)
    staging = tmp_path / "staging"
    out = staging / adapter.staged_name("ab" * 32)
    result = adapter.stage(source, out, adapter.Options(), LINEAGE)
    assert result.rows >= 1
    assert all(isinstance(notice, str) for notice in result.notices)
    assert [p.name for p in staging.iterdir()] == [out.name]
    record_sets = adapter.record_sets(out, source.stem)
    assert record_set in record_sets
    frame = record_sets[record_set]
    assert frame[LINE_COLUMN].dtype == "int64"
    for column in LINEAGE_COLUMNS:
        assert (frame[column] == LINEAGE[column]).all()
    data_columns = [c for c in frame.columns if c not in (LINE_COLUMN, *LINEAGE_COLUMNS)]
    assert all(isinstance(value, str) for column in data_columns for value in frame[column])
    row = frame.iloc[0]
    assert {key: row[key] for key in expected} == expected


# What each adapter says a foreign file is: (adapter, file maker, the message it must give).
REFUSALS = [
    ("csv", _xlsx, r"imt\.xlsx: this is not a delimited text \(CSV\) file: its first bytes are those of a zip archive"),
    ("csv", _xpt, r"elig\.xpt: this is not a delimited text \(CSV\) file: .* a SAS transport file \(\.xpt\)"),
    ("csv", _sas7bdat, r"elig\.sas7bdat: this is not a delimited text \(CSV\) file: .* a SAS dataset \(\.sas7bdat\)"),
    ("csv", _zip, r"export\.zip: this is not a delimited text \(CSV\) file: its first bytes are those of a zip"),
    ("sas", _xlsx, r"imt\.xlsx: not a SAS dataset \(\.xpt or \.sas7bdat\): its first bytes are those of a zip"),
    ("sas", _zip, r"export\.zip: not a SAS dataset .*: its first bytes are those of a zip archive"),
    ("sas", _csv, r"ELIG\.csv: not a SAS dataset .*: it is plain text \(a CSV"),
    ("sas", _odm, r"imt\.xml: not a SAS dataset .*: it is an XML document"),
    ("sas", _sav, r"elig\.sav: not a SAS dataset .*: its first bytes are those of an SPSS data file \(\.sav\)"),
    ("csv", _sav, r"elig\.sav: this is not a delimited text \(CSV\) file: .* an SPSS data file \(\.sav\)"),
    ("csv", _dta, r"elig\.dta: this is not a delimited text \(CSV\) file: .* a Stata dataset \(\.dta\)"),
    ("spss", _dta, r"elig\.dta: not an SPSS data file \(\.sav, \.zsav\): its first bytes are those of a Stata"),
    ("spss", _xpt, r"elig\.xpt: not an SPSS data file .*: its first bytes are those of a SAS transport file"),
    ("spss", _xlsx, r"imt\.xlsx: not an SPSS data file .*: its first bytes are those of a zip archive"),
    ("spss", _csv, r"ELIG\.csv: not an SPSS data file .*: it is plain text \(a CSV"),
    ("stata", _sav, r"elig\.sav: not a Stata dataset \(\.dta\): its first bytes are those of an SPSS data file"),
    ("stata", _sas7bdat, r"elig\.sas7bdat: not a Stata dataset .*: its first bytes are those of a SAS dataset"),
    ("stata", _xlsx, r"imt\.xlsx: not a Stata dataset .*: its first bytes are those of a zip archive"),
    ("stata", _odm, r"imt\.xml: not a Stata dataset .*: it is an XML document"),
    ("excel", _xpt, r"elig\.xpt: not an Excel or OpenDocument workbook: .* a SAS transport file \(\.xpt\)"),
    ("excel", _sas7bdat, r"elig\.sas7bdat: not an Excel or OpenDocument workbook: .* a SAS dataset"),
    ("excel", _csv, r"ELIG\.csv: not an Excel or OpenDocument workbook: it is plain text"),
    ("excel", _odm, r"imt\.xml: not an Excel or OpenDocument workbook: it is an XML document"),
    ("excel", _zip, r"export\.zip: not a readable workbook: a zip archive that calamine cannot read as one"),
    ("odm", _xlsx, r"imt\.xlsx"),
    ("odm", _xpt, r"elig\.xpt"),
    ("odm", _csv, r"ELIG\.csv"),
]


@pytest.mark.parametrize(("format_name", "make", "message"), REFUSALS,
                         ids=[f"{f}-{m.__name__.lstrip('_')}" for f, m, _ in REFUSALS])
def test_a_file_of_another_format_is_refused_saying_what_it_is(
        tmp_path: Path, format_name: str, make: Callable[[Path], Path], message: str) -> None:
    adapter = adapters()[format_name]
    staging = tmp_path / "staging"
    with pytest.raises(ExtractError, match=message):
        adapter.stage(make(tmp_path), staging / adapter.staged_name("ab" * 32), adapter.Options(), LINEAGE)
    assert not staging.exists() or list(staging.iterdir()) == []
