"""`rtw forget --not-loaded`: a patient who withdraws consent before their first load (only in the
centre's new export waiting in landing/) is recorded ahead, and no run loads them."""

from __future__ import annotations

from pathlib import Path

import duckdb
from conftest import SMALL_RUN_KEY
from shared_build import copy_of
from typer.testing import CliRunner

from etl import pipeline
from etl.cli import app
from etl.config import Home
from etl.transform.pseudonym import PseudonymKey, source_pseudonym

KEY = SMALL_RUN_KEY
NEWCOMER = "TREP-009999"


def _deliver_newcomer(home: Home) -> None:
    """The registry's next export: the last one plus a patient never delivered before."""
    export = next((home.landing / "registry_it").glob("*.csv"))
    data = export.read_bytes()
    last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[1].split(b";")
    newcomer = b";".join([b"9999", NEWCOMER.encode(), *last[2:16], b"", *last[17:]])
    (home.landing / "registry_it" / "TREP_export_20261201.csv").write_bytes(data + newcomer + b"\r\n")
    export.unlink()


def _loaded(home: Home, pseudonym: str) -> int:
    con = duckdb.connect(str(home.warehouse), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM stage.record WHERE source_id = 'registry_it' "
                          "AND starts_with(source_record_key, ?)", [f"{pseudonym}|"]).fetchone()
    finally:
        con.close()
    return row[0] if row else 0


def test_a_patient_not_loaded_yet_can_be_forgotten_ahead(small_run: Home, tmp_path: Path) -> None:
    home = copy_of(small_run, tmp_path)
    _deliver_newcomer(home)
    pseudonym = source_pseudonym(PseudonymKey(KEY.encode()), "registry_it", NEWCOMER)
    runner, env = CliRunner(), {"RTW_PSEUDONYM_KEY": KEY}
    command = ["forget", "--source", "registry_it", "--patient", NEWCOMER, "--home", str(home.root), "--yes"]

    refused = runner.invoke(app, command, env=env)
    assert refused.exit_code == 1
    said = " ".join(refused.output.split())
    assert "no patient with this key is loaded from registry_it" in said and "--not-loaded" in said
    assert NEWCOMER not in refused.output

    ahead = runner.invoke(app, [*command, "--not-loaded"], env=env)
    assert ahead.exit_code == 0, ahead.output
    said = " ".join(ahead.output.split())
    assert "not loaded in the warehouse; the erasure is recorded ahead" in said and NEWCOMER not in said

    summary = pipeline.run(home, key_value=KEY)
    assert summary.status == "completed", summary.message
    assert "registry_it" in summary.sources_changed
    assert _loaded(home, pseudonym) == 0
    # The export's archive copy and staged file lose the patient as the run reads them.
    for path in [*home.archive.rglob("*"), *home.staging.rglob("*")]:
        assert not path.is_file() or NEWCOMER.encode() not in path.read_bytes(), path
