"""`first_of` and what a value may not show of the source's patients, whichever part or night harmonises it
(etl/transform/parts.py `source_screen`, etl/transform/carry_over.py)."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.transform.mapping import SourceMapping
from etl.transform.parts import harmonise_to_folder, source_births
from etl.transform.pseudonym import PseudonymKey

KEY = PseudonymKey(b"k")


def _mapping(fmt: str, **fields: object) -> SourceMapping:
    return SourceMapping.model_validate({
        "source_id": "registry_es", "title": "RETI-ES", "format": fmt, "files": "*", "record_set": "REG",
        "patient_key": "id_paciente", "record_key": "{record_set}", "date_format": "%d/%m/%Y",
        "patient": {"from": "REG", "fields": {"birth_date": {"type": "date", "first_of": [
            {"column": "fecha_nacimiento"}, {"template": "{anio}-{mes}-{dia}", "format": "%Y-%m-%d"}]}}},
        "tables": {"tumour_board_review": {"from": "REG", "fields": {"reason_not_followed": fields.get(
            "reason", {"column": "motivo"})}}}})


def _export(rows: list[dict[str, str]], sha: str = "f") -> dict[str, pa.Table]:
    return {"REG": pa.Table.from_pylist([row | {"source_file": "reti", "_line": str(line),
                                                "source_file_sha256": sha * 64}
                                         for line, row in enumerate(rows, start=2)])}


def _notes(folder: Path) -> list[str]:
    return sorted(filter(None, pq.read_table(folder / "tumour_board_review.parquet")
                         .column("reason_not_followed").to_pylist()))


def test_a_birth_date_read_by_first_of_s_second_alternative_is_screened_when_odm_leaves_out_the_first(tmp_path):
    """ODM leaves out an item nobody filled in: a first_of whose full date no child has gave the screen no
    birth date at all, and a note naming a patient's birth date was published as written."""
    mapping = _mapping("odm")
    rows = [{"id_paciente": "ES0001", "anio": "2010", "mes": "05", "dia": "03", "motivo": "sibling born 15/07/2011"},
            {"id_paciente": "ES0009", "anio": "2011", "mes": "07", "dia": "15", "motivo": ""}]
    assert [b.value.isoformat() for b in source_births(mapping, _export(rows))] == ["2010-05-03", "2011-07-15"]

    night1, night2 = tmp_path / "1", tmp_path / "2"
    night1.mkdir()
    night2.mkdir()
    harmonise_to_folder(mapping, _export(rows), KEY, "run-1", night1)
    said = harmonise_to_folder(mapping, _export(rows, "e"), KEY, "run-2", night2, previous=night1)
    assert said.carried == 2
    for night in (night1, night2):  # harmonised, then carried over
        assert _notes(night) == ["sibling born {date}"]
        assert "15/07/2011" not in (night / "tumour_board_review.parquet").read_bytes().decode("latin-1")


def test_a_first_of_field_is_screened_whole_as_a_carried_over_one_is(tmp_path):
    """carry_over.py screens a carried first_of field anew whole (which alternative gave a value is not kept):
    a fresh load screens it whole too, a code list's value among it, so a carried row is what a fresh load
    writes."""
    reason = {"first_of": [{"column": "motivo_codigo", "codes": {"H": "as for sibling ES0009"}},
                           {"column": "motivo"}]}
    mapping = _mapping("csv", reason=reason)
    first = [{"id_paciente": "ES0001", "fecha_nacimiento": "03/05/2010", "anio": "", "mes": "", "dia": "",
              "motivo_codigo": "H", "motivo": ""}]
    arrived = [*first, {**first[0], "id_paciente": "ES0009", "fecha_nacimiento": "04/05/2010", "motivo_codigo": ""}]
    night1, night2, fresh = tmp_path / "1", tmp_path / "2", tmp_path / "fresh"
    for folder in (night1, night2, fresh):
        folder.mkdir()
    harmonise_to_folder(mapping, _export(first), KEY, "run-1", night1)
    harmonise_to_folder(mapping, _export(arrived, "e"), KEY, "run-2", night2, previous=night1)
    harmonise_to_folder(mapping, _export(arrived, "e"), KEY, "run-2", fresh)

    assert _notes(night2) == _notes(fresh) == ["as for sibling {patient}"]
