"""The reading process of etl/extract/isolated.py, as the process around it meets it: a run killed while its
reader reads leaves the home free, a reader stopped by a signal is not said to have crashed on the file, a
reader that fails is never tried again in the run's process, a fork that fails reads in the run's process,
the child imports nothing, a staged file's name may hold brackets, and a reader that never finishes is stopped
past its time limit."""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyreadstat
import pytest
import reads_apart
from processes import alive

from etl.config import Home
from etl.extract import isolated
from etl.extract.adapter import adapter_for
from etl.extract.errors import ExtractError
from etl.extract.isolated import read_apart
from etl.runlock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
CASES = pd.DataFrame({"pid": [f"P{n:03d}" for n in range(1, 21)], "age": [float(n) for n in range(1, 21)]})

# A run holding the home's lock reads a file apart, slowly: it says the reader's pid, then is killed.
_HOLDING_RUN = """
import os, sys, time
from pathlib import Path
from etl import runlock
from etl.config import Home
from etl.extract.isolated import read_apart

home, said = Home(Path(sys.argv[1])), Path(sys.argv[2])

def slow_read():
    said.write_text(str(os.getpid()))
    time.sleep(120)

with runlock.run_lock(home, "killed-run"):
    read_apart(home.root / "cases.sav", slow_read, what="SPSS data file")
"""


def _lock_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _wait_for(condition: Callable[[], object], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_run_killed_while_its_reader_reads_leaves_the_home_free(tmp_path: Path) -> None:
    """The reader holds the lock's fd (forked from the run): it ends with the run, not with its read."""
    home, said = Home(tmp_path / "home"), tmp_path / "reader.pid"
    home.root.mkdir()
    run = subprocess.Popen([sys.executable, "-c", _HOLDING_RUN, str(home.root), str(said)],
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    reader = 0
    try:
        assert _wait_for(lambda: said.exists() and said.read_text(), 60), "the reader never started"
        reader = int(said.read_text())
        assert not _lock_free(home.root / LOCK_NAME)
        run.kill()
        run.wait()
        # generous: the reader reads on for 120 s when it outlives the run
        assert _wait_for(lambda: _lock_free(home.root / LOCK_NAME), 60), "the run's reader still holds the home"
        assert _wait_for(lambda: not alive(reader), 60)
    finally:
        run.kill()
        run.wait()
        if reader and alive(reader):
            os.kill(reader, signal.SIGKILL)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_reader_stopped_by_a_signal_does_not_blame_the_file(tmp_path: Path, number: signal.Signals) -> None:
    # Not ignored here, as a pytest started in the background from a script would have SIGINT (the reader keeps a
    # signal its run ignores).
    before = signal.signal(number, signal.SIG_DFL)
    try:
        with pytest.raises(ExtractError) as raised:
            read_apart(tmp_path / "cases.sav", functools.partial(reads_apart.stopped, number), what="SPSS data file")
    finally:
        signal.signal(number, before)
    message = str(raised.value)
    assert message.startswith(f"cases.sav: the process reading it was stopped ({number.name}:")
    assert "crashed" not in message and "damaged" not in message and "ask for it again" not in message


@pytest.mark.parametrize("number", [signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL])
def test_a_reader_that_crashes_blames_the_file(tmp_path: Path, number: signal.Signals) -> None:
    crashed = rf"^cases\.sav: the reader \(ReadStat\) crashed on the file \({number.name}\)"
    with pytest.raises(ExtractError, match=crashed):
        read_apart(tmp_path / "cases.sav", functools.partial(reads_apart.crash, number), what="SPSS data file")


@pytest.mark.parametrize(("ending", "said"), [
    ("crash", "the reader (ReadStat) crashed on the file (SIGSEGV)"),
    ("exit_3", "the process reading it ended without an answer (exit status 3)")], ids=["crash", "exit"])
def test_a_reader_that_fails_refuses_the_file_and_never_reads_it_again_in_this_process(
        tmp_path: Path, ending: str, said: str) -> None:
    """A read that crashed its process, or left it without an answer, is not tried again in the run's process,
    where the same file would crash the run (or hang it): the file is refused, saying how its reader ended."""
    readers, run = tmp_path / "readers", os.getpid()
    failing = functools.partial(reads_apart.noted_then, readers, run, ending)
    with pytest.raises(ExtractError) as raised:
        read_apart(tmp_path / "cases.sav", failing, what="SPSS data file")
    assert str(raised.value).startswith(f"cases.sav: {said}")
    pids = [int(pid) for pid in readers.read_text().split()]
    assert run not in pids
    assert len(set(pids)) == (2 if "crashed" in said else 1)  # a crash is read once more, in a new process


def test_a_crash_of_the_state_a_fork_inherits_does_not_refuse_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A good file whose reader crashes in every process forked from the run (a native library's state, half
    changed when it forked: make test met one, in both of a read's children) is read by a fresh interpreter."""
    monkeypatch.setitem(reads_apart.INHERITED, "broken", True)
    with caplog.at_level(logging.WARNING, logger="etl.extract.isolated"):
        assert read_apart(tmp_path / "cases.sav", reads_apart.crash_where_inherited, what="SPSS data file") == "read"
    assert "the reader (ReadStat) crashed (SIGBUS): the file is read once more, in a new interpreter" in caplog.text
    assert "the reader (ReadStat) crashed in: File" in caplog.text and "in crash_where_inherited" in caplog.text
    assert "cases.sav" not in caplog.text  # a delivered name may hold a patient number


def test_a_crash_s_second_read_has_what_the_first_left_of_the_file_s_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hunt: the second read had the whole limit again (a file crashing its reader at the end of its time had it
    twice)."""
    monkeypatch.setitem(reads_apart.INHERITED, "broken", True)
    monkeypatch.setenv("RTW_READ_SECONDS", "60")
    given: list[float] = []
    answer = isolated._answer

    def answering(answers: int, limit: float) -> bytes | None:
        given.append(limit)
        return answer(answers, limit)

    monkeypatch.setattr(isolated, "_answer", answering)
    read = functools.partial(reads_apart.slow_crash_where_inherited, 0.5)
    assert read_apart(tmp_path / "cases.sav", read, what="SPSS data file") == "read"
    first, second = given
    assert first <= 60 and second <= first - 0.5


@pytest.mark.parametrize("trouble", ["no process", "an interpreter that answers nothing", "not an OSError"])
def test_a_crash_whose_second_read_cannot_be_had_refuses_the_file_never_read_in_this_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, trouble: str) -> None:
    """A file that crashed a reader is never read in the run's process, where a second crash would end the run;
    a second read that cannot be had (no process, an interpreter that fails before it reads) refuses it on its
    first crash, saying why, and leaks no descriptor."""
    readers, run = tmp_path / "readers", os.getpid()

    def no_process(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    def not_an_os_error(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")

    if trouble == "no process":
        monkeypatch.setattr(subprocess, "Popen", no_process)
    elif trouble == "not an OSError":
        monkeypatch.setattr(subprocess, "Popen", not_an_os_error)
    else:
        monkeypatch.setattr(sys, "executable", "/bin/false")
    crashing = functools.partial(reads_apart.noted_then, readers, run, "crash")
    before = _open_fds()
    with caplog.at_level(logging.WARNING, logger="etl.extract.isolated"):
        if trouble == "not an OSError":  # a bug of ours: raised as it is
            with pytest.raises(TypeError, match="not NoneType"):
                read_apart(tmp_path / "cases.sav", crashing, what="SPSS data file")
        else:
            with pytest.raises(ExtractError, match=r"^cases\.sav: the reader \(ReadStat\) crashed on the file "
                                                   r"\(SIGSEGV\)"):
                read_apart(tmp_path / "cases.sav", crashing, what="SPSS data file")
    assert run not in [int(pid) for pid in readers.read_text().split()]
    assert _open_fds() == before
    said = {"no process": "no interpreter could be started for the second read (Resource temporarily unavailable)",
            "an interpreter that answers nothing": "the interpreter of the second read ended without an answer (exit "
                                                   "status 1): the file is refused on its first crash",
            "not an OSError": "the file is read once more"}[trouble]
    assert said in caplog.text and "cases.sav" not in caplog.text


def test_a_crash_s_second_read_finds_the_run_s_modules_wherever_it_runs(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fresh interpreter looks in no folder of its own first: run from a folder holding an `etl` package or a
    `pickle.py` of another version, it read them, and refused a good file for the trouble."""
    (tmp_path / "etl").mkdir()
    (tmp_path / "etl" / "__init__.py").write_text("raise SystemExit(7)\n")
    (tmp_path / "pickle.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(reads_apart.INHERITED, "broken", True)
    assert read_apart(tmp_path / "cases.sav", reads_apart.crash_where_inherited, what="SPSS data file") == "read"
    assert not (tmp_path / "ran").exists()


def test_the_reading_process_is_the_first_the_out_of_memory_killer_takes(tmp_path: Path) -> None:
    child, parent = read_apart(tmp_path / "cases.sav", reads_apart.scores, what="SPSS data file")
    assert child == "1000"
    assert parent == Path("/proc/self/oom_score_adj").read_text().strip() != "1000"


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_fork_that_fails_reads_in_this_process_and_leaks_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A run under a process limit (fork: EAGAIN) still reads the file, in its own process, saying so."""
    def no_process() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_process)
    before = _open_fds()
    with caplog.at_level(logging.WARNING, logger="etl.extract.isolated"):
        assert read_apart(tmp_path / "cases.sav", reads_apart.pid, what="SPSS data file") == os.getpid()
    assert _open_fds() == before
    assert "no process could be started to read a file" in caplog.text and "cases.sav" not in caplog.text


# In a fresh interpreter, as a run's: each format's first staging, the modules its reading process imported.
_FIRST_STAGINGS = """
import json, sys
from pathlib import Path
from etl.extract import isolated
from etl.extract.sas import stage_sas
from etl.extract.spss import stage_spss
from etl.extract.stata import stage_stata

reading = isolated._read_in_child
folder = Path(sys.argv[1])

def recording(read, *pipe_and_parent):
    def read_and_record():
        before = set(sys.modules)
        result = read()
        (folder / "imported.json").write_text(json.dumps(sorted(set(sys.modules) - before)))
        return result
    reading(read_and_record, *pipe_and_parent)

isolated._read_in_child = recording
imported = {}
for suffix, stage in (("xpt", stage_sas), ("sav", stage_spss), ("dta", stage_stata)):
    stage(folder / f"cases.{suffix}", folder / f"{suffix}.parquet")
    imported[suffix] = json.loads((folder / "imported.json").read_text())
print(json.dumps(imported))
"""


def test_the_reading_process_imports_nothing_on_a_first_staging(tmp_path: Path) -> None:
    """Another thread of the run may hold an import's lock when it forks: the child imports nothing."""
    for suffix, write in (("xpt", pyreadstat.write_xport), ("sav", pyreadstat.write_sav),
                          ("dta", pyreadstat.write_dta)):
        write(CASES, str(tmp_path / f"cases.{suffix}"))
    done = subprocess.run([sys.executable, "-c", _FIRST_STAGINGS, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert json.loads(done.stdout) == {"xpt": [], "sav": [], "dta": []}


def test_what_a_crash_leaves_beside_a_file_named_with_brackets_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "staged" / "cases[2024].parquet"
    out.parent.mkdir()

    with pytest.raises(ExtractError, match="crashed"):
        read_apart(tmp_path / "cases.sav", functools.partial(reads_apart.crash_writing, out), what="SPSS data file",
                   out=out)
    assert list(out.parent.iterdir()) == []


def test_a_reader_that_never_finishes_is_stopped_past_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """A damaged file can make a C parser loop: the run waited on its reader for ever, every source of the night
    and the home's lock with it. Past its limit the reader is killed and reaped, what it half wrote is removed,
    and the file fails, as for a crash."""
    monkeypatch.setenv("RTW_READ_SECONDS", "1")
    out = tmp_path / "staged" / "cases.parquet"
    out.parent.mkdir()
    forked, fork = [], os.fork

    def forking() -> int:  # the reader's pid, known here even if it never ran before its limit (a busy machine)
        child = fork()
        if child:
            forked.append(child)
        return child

    monkeypatch.setattr(os, "fork", forking)

    with pytest.raises(ExtractError) as stopped:
        read_apart(tmp_path / "cases.sav", functools.partial(reads_apart.looping, out), what="SPSS data file", out=out)
    assert str(stopped.value) == (
        "cases.sav: the reader (ReadStat) did not finish within 1 s: stopped; the file may be damaged (a reader in "
        "a loop) or too large for the limit, which is RTW_READ_SECONDS plus 10 s a MB of the file: raise "
        "RTW_READ_SECONDS for a file this large")
    [reader] = forked
    with pytest.raises(ChildProcessError):  # reaped: no zombie left
        os.waitpid(reader, os.WNOHANG)
    assert not Path(f"/proc/{reader}").exists()
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("suffix", ["xpt", "sav", "dta", "xlsx"])
def test_every_read_apart_pickles_for_a_crash_s_second_read(tmp_path: Path, suffix: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash's second read is a fresh interpreter's, to which the read is pickled: each format's staging and
    description give one that pickles, and read once unpickled, as there, give what they give here."""
    path = tmp_path / f"cases.{suffix}"
    if suffix == "xlsx":
        CASES.to_excel(path, index=False)
    else:
        getattr(pyreadstat, {"xpt": "write_xport", "sav": "write_sav", "dta": "write_dta"}[suffix])(CASES, str(path))
    reads: list[str] = []

    def unpickled(path: Path, read: Callable[[], object], **how: Any) -> object:
        reads.append(getattr(read, "func", read).__name__)
        return apart(path, pickle.loads(pickle.dumps(read)), **how)

    apart = isolated.read_apart
    monkeypatch.setattr(isolated, "read_apart", unpickled)
    adapter = adapter_for({"xpt": "sas", "sav": "spss", "dta": "stata", "xlsx": "excel"}[suffix])
    out = tmp_path / "staged" / adapter.staged_name("cases")
    adapter.stage(path, out, adapter.Options(), {"source_file": path.name})
    (frame,) = adapter.record_sets(out, "CASES").values()
    assert frame["pid"].tolist() == CASES["pid"].tolist()
    adapter.describe(path)
    assert len(reads) == (1 if suffix == "xlsx" else 2)  # staging; a ReadStat file's description (rtw profile)
