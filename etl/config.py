"""Where a warehouse lives: the runtime home and its folders.

The home is chosen by `--home`, else env `RTW_HOME`, else `./var`. Everything the pipeline
writes lives under it, so a data manager can point two homes at two projects safely.
What the pipeline reads (mappings, SQL, suites) is found by etl/resources.py, installed or not.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.resources import REPO_ROOT, chosen_sources_dir, warehouse_sql_dir

if TYPE_CHECKING:
    import duckdb

__all__ = ["DEFAULT_HOME", "DUCKDB_MEMORY_LIMIT", "DUCKDB_THREADS_SETTING", "LEFT_FOR_LATER_PULLS",
           "LEFT_FOR_LATER_PULLS_SETTING", "LINKAGE_MEMORY_LIMIT", "READ_SECONDS", "READ_SECONDS_PER_MB",
           "READ_SECONDS_SETTING", "REPO_ROOT", "SOURCES_DIR", "WAREHOUSE_SQL_DIR", "Home", "SettingError",
           "bytes_setting", "connect_duckdb", "count_setting", "duckdb_threads", "read_time_limit", "resolve_home",
           "seconds_setting", "set_memory_limit"]

DEFAULT_HOME = Path("var")
# Read once at import, as before: the shipped mappings, or env RTW_SOURCES_DIR.
SOURCES_DIR = chosen_sources_dir()
WAREHOUSE_SQL_DIR = warehouse_sql_dir()
# What one DuckDB database of a run may hold in memory before it spills to disk (the publish's
# warehouse, linkage's scoring). DuckDB's default, 80% of the machine, lets memory grow with the data.
DUCKDB_MEMORY_LIMIT = os.environ.get("RTW_DUCKDB_MEMORY_LIMIT", "512MB")
# How many threads each DuckDB of a run may use; unset, DuckDB's own choice (one a core). A machine whose cores
# are shared (Airflow's other tasks, a test session's workers) is better served by fewer: on the tests' 40-person
# homes, four pytest workers on two cores, one thread each took a fifth less CPU than two (the threads' hand-offs
# cost more than small queries gain). Read at each connection.
DUCKDB_THREADS_SETTING = "RTW_DUCKDB_THREADS"
# Linkage scores in a DuckDB of its own while the warehouse's stays open: the two limits add up.
LINKAGE_MEMORY_LIMIT = os.environ.get("RTW_LINKAGE_MEMORY_LIMIT", "384MB")
# How long a native reader (ReadStat, calamine) may read one file in its process of its own
# (etl/extract/isolated.py) before it is stopped: a damaged file can make a C parser loop, which would hold
# the night's run, every source, and the home's lock. A floor, env RTW_READ_SECONDS, plus seconds a MB of
# the file. Measured: at 100,000 persons the largest workbook (2.4 MB) stages in 1.6 s and the largest XPORT
# file (5.1 MB) in 0.4 s; the slowest a MB, an .ods of 200,000 rows that compresses well, 1.7 s a MB (an
# .xlsx 0.8, XPORT 0.1). Ten seconds a MB leaves a slower or busier machine six times that.
READ_SECONDS_SETTING = "RTW_READ_SECONDS"
READ_SECONDS = 600.0
READ_SECONDS_PER_MB = 10.0
# How many pulls in a row may leave a file in a drop zone for later (still uploading, no checksum yet, declared
# but not delivered) before each pull logs it as an error (etl/pull/nights.py): a night or two is an upload
# that ends late; more, a sender that never finishes. Read by each pull that leaves one.
LEFT_FOR_LATER_PULLS_SETTING = "RTW_LEFT_FOR_LATER_PULLS"
LEFT_FOR_LATER_PULLS = 3


class SettingError(ValueError):
    """A setting of the environment the run cannot use: the message names it and what it expects."""


def set_memory_limit(con: Any, limit: str, setting: str) -> None:
    """DuckDB's memory limit on `con` (a DuckDBPyConnection), a limit it cannot read named by its setting."""
    import duckdb

    try:
        con.execute("SET memory_limit = ?", [limit])
    except duckdb.Error as exc:
        raise SettingError(f"{setting}={limit!r} is not a memory size DuckDB reads (e.g. 512MB, 2GB): {exc}") from None


def duckdb_threads() -> int | None:
    """The threads env RTW_DUCKDB_THREADS gives each DuckDB connection, None when unset (DuckDB's default)."""
    given = os.environ.get(DUCKDB_THREADS_SETTING, "")
    return count_setting(DUCKDB_THREADS_SETTING, 1) if given.strip() else None


def connect_duckdb(database: str | Path = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the threads the setting allows. Set on the database, not
    given in the connection's config: DuckDB refuses a second connection to an open file with another config."""
    import duckdb  # not at import: `rtw --help` and the DAG file's parse need no DuckDB

    threads = duckdb_threads()
    con = duckdb.connect(str(database), read_only=read_only)
    if threads is not None:
        con.execute(f"SET threads = {threads}")
    return con


def read_time_limit(size: int) -> float:
    """Seconds a reader may take over a file of `size` bytes: env RTW_READ_SECONDS (default 600), plus
    READ_SECONDS_PER_MB a MB (10**6 bytes) of the file. The setting is read at each call, not at import."""
    return seconds_setting(READ_SECONDS_SETTING, READ_SECONDS) + READ_SECONDS_PER_MB * size / 1e6


def seconds_setting(setting: str, default: float, *, zero: bool = False) -> float:
    """Env `setting`, a number of seconds (`default` when unset or blank); SettingError naming it when it is not
    a finite number above 0 (or 0 itself, where `zero` allows it)."""
    given = os.environ.get(setting)
    if given is None or not given.strip():
        return default
    try:
        seconds = float(given)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and (seconds > 0 or (zero and seconds == 0))):
        least = "0 or more" if zero else "above 0"
        raise SettingError(f"{setting}={given!r} is not a number of seconds {least} (e.g. {default:g})")
    return seconds


def bytes_setting(setting: str, default: int) -> int:
    """Env `setting`, a whole number of bytes (`default` when unset or blank); SettingError naming it when not."""
    return _whole_setting(setting, default, least=0, what="a whole number of bytes")


def count_setting(setting: str, default: int) -> int:
    """Env `setting`, a whole number of 1 or more (`default` when unset or blank); SettingError naming it when not."""
    return _whole_setting(setting, default, least=1, what="a whole number of 1 or more")


def _whole_setting(setting: str, default: int, *, least: int, what: str) -> int:
    given = os.environ.get(setting)
    if given is None or not given.strip():
        return default
    # isdecimal: "²" is a digit to str.isdigit, not to int(); isascii: int() reads Arabic-Indic digits
    if not given.strip().isdecimal() or not given.strip().isascii() or int(given) < least:
        raise SettingError(f"{setting}={given!r} is not {what} (e.g. {default})")
    return int(given)


@dataclass(frozen=True)
class Home:
    """The runtime folders of one warehouse."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def marts(self) -> Path:
        return self.root / "marts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def public(self) -> Path:
        """Where `rtw export --public` writes the aggregates for publication by default."""
        return self.root / "public"

    @property
    def airflow(self) -> Path:
        return self.root / "airflow"

    @property
    def key_file(self) -> Path:
        return self.root / "secrets" / "pseudonym.key"

    def ensure(self) -> Home:
        """Create the home and its folders owner-only (0700), tightening them if they exist:
        archive and staging hold clear identifiers."""
        from etl.fsio import private_folder

        private_folder(self.root)
        for folder in (self.landing, self.archive, self.staging):
            private_folder(folder)
        for derived in (self.marts, self.reports):
            try:
                private_folder(derived)
            except OSError as exc:  # outputs derived after publish: their failure is noted then, not here
                logging.getLogger("rtw").warning("%s cannot be used (%s); the data still loads", derived, exc)
        return self


def resolve_home(home: str | os.PathLike[str] | None = None) -> Home:
    """The home given, else `RTW_HOME`, else `./var`, as an absolute path."""
    chosen = home or os.environ.get("RTW_HOME") or DEFAULT_HOME
    return Home(Path(chosen).expanduser().resolve())
