"""Onboarding a registry with the mapping language's newer forms: `rtw check` tries each `first_of` alternative's
values on the records the nightly run reads it for, `rtw scaffold` keys a record set of one record per patient by
its name written out (a key that survives a change of the export's format), and counts of one are singular."""

from __future__ import annotations

import pandas as pd
import yaml
from reg_mapping import reg_mapping

from etl.onboard.check import check_record_sets, check_source
from etl.onboard.scaffold import choose_record_keys, draft_mapping, read_sources, validate_draft

_MAPPING = reg_mapping("""
patient:
  from: REG
  fields:
    birth_date:
      type: date
      required: true
      first_of:
        - {column: dob, format: "%d/%m/%Y"}
        - {template: "{anio}-{mes}", format: "%Y-%m"}
    sex:
      first_of:
        - {column: sexo, codes: {H: male, M: female}}
        - {column: sex, codes: {M: male, F: female}}
""")


def _registry() -> pd.DataFrame:
    """A full birth date for a few patients, a year and month for most; sex in Spanish codes for some."""
    rows = 14
    frame = pd.DataFrame({
        "pid": [f"P{i}" for i in range(rows)], "rec": [str(i) for i in range(rows)],
        # P0's full date is impossible (read, not passed over for its year and month); P1 and P2 are read whole.
        "dob": ["31/02/2011", "03/04/2011", "05/06/2011"] + [""] * (rows - 3),
        # P0's month 13 is never read (its full date is); P3's is: the night quarantines it; P13 gives none.
        "anio": ["2011"] * (rows - 1) + [""], "mes": ["13", "04", "06", "13"] + ["07"] * (rows - 5) + [""],
        "sexo": ["X"] * 6 + [""] * (rows - 6),
        "sex": ["Q"] * 3 + ["F"] * (rows - 3)})
    return frame.assign(_line=range(2, rows + 2), source_file="REG_1.csv", source_file_sha256="0" * 64)


def _by_where(findings) -> dict[str, str]:
    return {f.where: f.message for f in findings}


def test_check_tries_each_first_of_alternative_on_the_records_it_gives_a_value():
    mapping = _MAPPING
    found = _by_where(check_record_sets(mapping, {"REG": _registry()}))
    # Named as the nightly run's message names the alternative: birth_date (first_of.0: dob): ...
    full = found["record set REG, first_of.0: dob (patient.fields.birth_date)"]
    assert full.startswith("1 of 3 values is a date no declared format reads") and "REG_1.csv:2" in full
    assert "31/02" not in full and "shape '99/99/9999' ×1" in full  # a birth date: its shape only
    # P0's month 13 is behind its full date: not read, not counted; P3's is.
    month = found["record set REG, first_of.1: {anio}-{mes} (patient.fields.birth_date)"]
    assert month.startswith("1 of 10 values is a date no declared format reads") and "REG_1.csv:5" in month
    assert "REG_1.csv:2" not in month
    required = found["record set REG, first_of: dob, {anio}-{mes} (patient.fields.birth_date)"]
    assert required.startswith("required but empty in 1 of 14 records") and "REG_1.csv:15" in required
    # Six codes X in the first alternative; the second reads the eight left, none of P0-P2's Q (their sexo is X).
    assert found["record set REG, first_of.0: sexo (patient.fields.sex)"].startswith(
        "6 of 6 values are codes the code list misses: 'X' ×6")
    assert "record set REG, first_of.1: sex (patient.fields.sex)" not in found


def test_check_finds_a_first_of_alternative_s_wrong_format_most_values_fail(tmp_path):
    frame = _registry().assign(dob=[f"{d:02d}.03.2011" for d in range(1, 15)])  # written with dots
    mapping = _MAPPING
    (finding,) = [f for f in check_record_sets(mapping, {"REG": frame}) if "first_of.0: dob" in f.where]
    assert finding.severity == "error" and finding.message.startswith("14 of 14 values are dates")
    assert "declare the format the file uses" in finding.message


def test_check_counts_one_record_and_one_value_in_the_singular():
    mapping = _MAPPING
    one = _registry().head(1)  # its full birth date impossible
    found = _by_where(check_record_sets(mapping, {"REG": one, "NOTES": one}))
    assert found["record set NOTES"].startswith("1 record neither mapped nor ignored")
    assert found["record set REG, first_of.0: dob (patient.fields.birth_date)"].startswith(
        "1 of 1 value is a date no declared format reads")
    twice = pd.concat([one, one.assign(_line=3)], ignore_index=True)
    (repeat,) = [f for f in check_record_sets(mapping, {"REG": twice}) if "record_key" in f.where]
    assert repeat.message.startswith("1 of 2 records repeats the key of an earlier record")


_PATIENTS = "".join(f"NRX-{100 + i};{'HM'[i % 2]};2010;0{1 + i % 9}\r\n" for i in range(12))
_VISITS = "".join(f"NRX-{100 + p};{v};0{v}/06/2024\r\n" for p in range(12) for v in range(1, 4))


def test_scaffold_keys_a_record_set_of_one_record_per_patient_by_its_name_written_out():
    patients = pd.DataFrame({"pat_nr": ["NRX-1", "NRX-2"], "sexo": ["H", "M"]})
    visits = pd.DataFrame({"pat_nr": ["NRX-1", "NRX-1", "NRX-2"], "VISITSEQ": ["1", "2", "1"]})
    # Where a patient has several records, a column tells them apart, as before.
    assert choose_record_keys({"PAC": patients, "SEG": visits}, "pat_nr") == {"PAC": "PAC",
                                                                              "SEG": "{record_set}[{VISITSEQ}]"}
    # A patient key repeated: the profile cannot tell one record per patient, and drafts no key.
    assert choose_record_keys({"PAC": pd.concat([patients, patients])}, "pat_nr") == {"PAC": None}
    # A hunt: a clinical column whose name holds rec, num or line numbered one record per patient (recidiva si/no,
    # baseline_ecog 0-4, numero_figli): the key changed, and the record's issues with it, when the value did.
    six = pd.DataFrame({"pat_nr": [f"NRX-{i}" for i in range(6)], "recidiva": ["si", "no"] * 3,
                        "baseline_ecog": ["0", "2", "1"] * 2, "numero_figli": ["2", "0", "1"] * 2})
    assert choose_record_keys({"TRV": six}, "pat_nr") == {"TRV": "TRV"}
    numbered = six.assign(record_id=[f"R-{i}" for i in range(6)])  # a record's own number: its key
    assert choose_record_keys({"TRV": numbered}, "pat_nr") == {"TRV": "{record_set}[{record_id}]"}
    assert choose_record_keys({"TRV": six.assign(record_id="")}, "pat_nr") == {"TRV": "TRV"}  # an empty one: none


def test_a_drafted_one_record_per_patient_key_is_the_record_set_s_and_checks(tmp_path):
    landing = tmp_path / "landing" / "nrx"
    landing.mkdir(parents=True)
    export = landing / "NRX_PAC_20261101.csv"
    export.write_bytes(("pat_nr;sexo;anio_nacimiento;mes_nacimiento\r\n" + _PATIENTS).encode("utf-8"))
    draft = draft_mapping(read_sources([export], "nrx"))
    raw = yaml.safe_load(draft.text)
    # The key {record_set} gave, written out: a later export naming the record set otherwise keeps it.
    assert raw["record_key"] == "{record_set}" and raw["record_keys"] == {"NRX_PAC": "NRX_PAC"}
    assert "the keys survive a change of format or sheet name" in draft.text
    assert validate_draft(draft) == []
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "nrx.yaml").write_text(draft.text, encoding="utf-8")
    report = check_source("nrx", sources, tmp_path / "landing")
    assert not [f for f in report.findings if "record_key" in f.where], report.findings


def test_a_draft_with_visits_keys_them_by_their_number_and_the_patients_by_name(tmp_path):
    paths = [tmp_path / "NRX_PAC_20261101.csv", tmp_path / "NRX_SEG_20261101.csv"]
    paths[0].write_bytes(("pat_nr;sexo;anio_nacimiento;mes_nacimiento\r\n" + _PATIENTS).encode("utf-8"))
    paths[1].write_bytes(("pat_nr;VISITSEQ;fecha_visita\r\n" + _VISITS).encode("utf-8"))
    draft = draft_mapping(read_sources(paths, "nrx"))
    raw = yaml.safe_load(draft.text)
    # SEG's key, the default, names its column; PAC, mapped, has its own; the draft loads.
    assert raw["record_key"] == "{record_set}[{VISITSEQ}]" and raw["record_keys"] == {"PAC": "PAC"}
    assert validate_draft(draft) == []
