"""Benchmark: each source adapter's throughput against its library's own raw read of the same file.

    .venv/bin/python benchmarks/adapters.py --rows 100000

Writes one file per format holding the same records (`--rows` records of 20 columns: identifiers,
codes, whole numbers, decimals, dates), then times, each in its own process:

- the adapter: `stage` (file -> staged Parquet of strings with `_line` and lineage) plus
  `record_sets` (staged Parquet -> one frame per record set), as the nightly run does;
- the raw read: the library alone, into memory, with no conversion to text, no lineage and no
  Parquet: `pandas.read_csv(dtype=str)` for CSV, `lxml.etree.iterparse` collecting ItemData values for
  ODM, `pyreadstat.read_xport` / `read_sas7bdat` for SAS, python-calamine `iter_rows` for Excel
  (and, with `--openpyxl`, openpyxl read-only, the library calamine was chosen over).

It prints records/s for both, the adapter's time as a multiple of the raw read's, and each
process's peak resident memory (ru_maxrss, including the ~170 MiB of imported libraries); for the
adapter also the peak while staging ("stage"), before `record_sets` holds every record in memory.
Files are written by a separate process: a child inherits the peak memory of its parent.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

COLUMNS = 20
ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"


# -- the records, and one writer per format -----------------------------------------------------------
def _records(rows: int, seed: int) -> tuple[list[str], list[list[object]]]:
    """`rows` records of 20 columns: 2 identifiers, 4 dates, 4 whole numbers, 4 decimals, 6 codes or text."""
    rnd = random.Random(seed)
    names = (["PATIENT", "CENTRE"] + [f"DATE{i}" for i in range(1, 5)] + [f"COUNT{i}" for i in range(1, 5)]
             + [f"VALUE{i}" for i in range(1, 5)] + [f"CODE{i}" for i in range(1, 7)])
    first = dt.date(2000, 1, 1)
    codes = ["CR", "PR", "SD", "PD", "NE", "", "not evaluable", "Grade 2 nausea"]
    records: list[list[object]] = []
    for number in range(rows):
        records.append(
            [f"P-{number:07d}", f"C{rnd.randint(1, 31):02d}"]
            + [first + dt.timedelta(days=rnd.randint(0, 9000)) for _ in range(4)]
            + [rnd.randint(0, 5000) for _ in range(4)]
            + [round(rnd.uniform(0, 200), 2) for _ in range(4)]
            + [rnd.choice(codes) for _ in range(6)])
    return names, records


def write_csv(path: Path, names: list[str], records: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(names)
        for record in records:
            writer.writerow([v.strftime("%d/%m/%Y") if isinstance(v, dt.date) else v for v in record])


def write_odm(path: Path, names: list[str], records: list[list[object]]) -> None:
    # One SubjectData per record, the record one ItemGroupData: the staged rows are one per ItemData.
    with path.open("w", encoding="utf-8") as handle:
        handle.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<ODM xmlns="{ODM_NS}" FileOID="BENCH" '
                     'FileType="Snapshot" ODMVersion="1.3.2" CreationDateTime="2026-12-01T02:00:00">\n'
                     '<ClinicalData StudyOID="BENCH" MetaDataVersionOID="v1">\n')
        for record in records:
            items = "".join(f'<ItemData ItemOID="{name}" Value={quoteattr(_text(value))}/>'
                            for name, value in zip(names[1:], record[1:]))
            handle.write(f'<SubjectData SubjectKey="{record[0]}"><StudyEventData StudyEventOID="SE.1">'
                         f'<FormData FormOID="F.1"><ItemGroupData ItemGroupOID="IG.1">{items}'
                         "</ItemGroupData></FormData></StudyEventData></SubjectData>\n")
        handle.write("</ClinicalData>\n</ODM>\n")


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _sas_frame(names: list[str], records: list[list[object]]) -> tuple[object, dict[str, str]]:
    import pandas as pd

    frame = pd.DataFrame(records, columns=names)
    epoch = dt.date(1960, 1, 1)
    formats = {}
    for name in names:
        if name.startswith("DATE"):
            frame[name] = [(d - epoch).days for d in frame[name]]
            formats[name] = "DATE9."
        elif name.startswith(("COUNT", "VALUE")):
            frame[name] = frame[name].astype(float)
    return frame, formats


def write_xpt(path: Path, names: list[str], records: list[list[object]]) -> None:
    import pyreadstat

    frame, formats = _sas_frame(names, records)
    pyreadstat.write_xport(frame, str(path), file_format_version=5, table_name="BENCH", variable_format=formats)


def write_sas7bdat(path: Path, names: list[str], records: list[list[object]]) -> None:
    import pyreadstat

    frame, formats = _sas_frame(names, records)
    pyreadstat.write_sas7bdat(frame, str(path), variable_format=formats)


def _dated_frame(names: list[str], records: list[list[object]], epoch: dt.date,
                 seconds: bool) -> tuple[object, list[str]]:
    """The records with dates as counts since `epoch` (days, or seconds), numbers as doubles."""
    import pandas as pd

    frame = pd.DataFrame(records, columns=names)
    dates = [name for name in names if name.startswith("DATE")]
    for name in dates:
        frame[name] = [(d - epoch).days * (86_400 if seconds else 1) for d in frame[name]]
    for name in names:
        if name.startswith(("DATE", "COUNT", "VALUE")):
            frame[name] = frame[name].astype(float)
    return frame, dates


def write_sav(path: Path, names: list[str], records: list[list[object]]) -> None:
    """Bytecode-compressed, as SPSS saves by default."""
    import pyreadstat

    frame, dates = _dated_frame(names, records, dt.date(1582, 10, 14), seconds=True)
    pyreadstat.write_sav(frame, str(path), row_compress=True, variable_format=dict.fromkeys(dates, "DATE11"))


def write_zsav(path: Path, names: list[str], records: list[list[object]]) -> None:
    import pyreadstat

    frame, dates = _dated_frame(names, records, dt.date(1582, 10, 14), seconds=True)
    pyreadstat.write_sav(frame, str(path), compress=True, variable_format=dict.fromkeys(dates, "DATE11"))


def write_dta(path: Path, names: list[str], records: list[list[object]]) -> None:
    import pyreadstat

    frame, dates = _dated_frame(names, records, dt.date(1960, 1, 1), seconds=False)
    pyreadstat.write_dta(frame, str(path), variable_format=dict.fromkeys(dates, "%td"))


def write_xlsx(path: Path, names: list[str], records: list[list[object]]) -> None:
    import openpyxl

    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("BENCH")
    sheet.append(names)
    for record in records:
        sheet.append([None if value == "" else value for value in record])
    workbook.save(path)


# (label, adapter format, file suffix, writer, raw reader name)
CASES = [
    ("CSV", "csv", ".csv", write_csv, "pandas.read_csv"),
    ("ODM", "odm", ".xml", write_odm, "lxml.iterparse"),
    ("SAS xpt", "sas", ".xpt", write_xpt, "pyreadstat.read_xport"),
    ("SAS sas7bdat", "sas", ".sas7bdat", write_sas7bdat, "pyreadstat.read_sas7bdat"),
    ("SPSS sav", "spss", ".sav", write_sav, "pyreadstat.read_sav"),
    ("SPSS zsav", "spss", ".zsav", write_zsav, "pyreadstat.read_sav"),
    ("Stata dta", "stata", ".dta", write_dta, "pyreadstat.read_dta"),
    ("Excel xlsx", "excel", ".xlsx", write_xlsx, "calamine.iter_rows"),
]


# -- what a measuring process runs --------------------------------------------------------------------
def _raw_read(reader: str, path: Path) -> int:
    """Read the file with the library alone; the number of records read."""
    if reader == "pandas.read_csv":
        import pandas as pd

        return len(pd.read_csv(path, sep=";", dtype=str, keep_default_na=False))
    if reader == "lxml.iterparse":
        from lxml import etree

        values = []
        item, subject = f"{{{ODM_NS}}}ItemData", f"{{{ODM_NS}}}SubjectData"
        for _event, element in etree.iterparse(str(path), events=("end",), tag=(item, subject)):
            if element.tag == item:
                values.append(element.get("Value"))
            else:  # drop each finished subject, as a streaming reader does
                element.clear()
                while element.getprevious() is not None:
                    del element.getparent()[0]
        return len(values) // (COLUMNS - 1)
    if reader.startswith("pyreadstat"):
        import pyreadstat

        frame, _meta = getattr(pyreadstat, reader.split(".")[1])(str(path))
        return len(frame)
    if reader == "calamine.iter_rows":
        import python_calamine

        workbook = python_calamine.CalamineWorkbook.from_path(str(path))
        return sum(1 for _row in workbook.get_sheet_by_index(0).iter_rows()) - 1
    if reader == "openpyxl.read_only":
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        return sum(1 for _row in workbook.worksheets[0].iter_rows(values_only=True)) - 1
    raise ValueError(reader)


def _adapter_read(format_name: str, path: Path, scratch: Path) -> tuple[int, float]:
    """Stage the file and read its record sets back; the records, and the peak RSS (MiB) of staging alone."""
    from etl.extract.adapter import adapter_for

    adapter = adapter_for(format_name)
    out = scratch / adapter.staged_name("0" * 64)
    adapter.stage(path, out, adapter.Options(), {"source_file": path.name, "source_file_sha256": "0" * 64})
    stage_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return sum(len(frame) for frame in adapter.record_sets(out, path.stem).values()), stage_peak


def _child(kind: str, name: str, path: Path) -> None:
    # Import the libraries before the clock starts: a nightly run has them loaded already.
    import lxml.etree  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pyreadstat  # noqa: F401
    import python_calamine  # noqa: F401

    import etl.extract.adapter as registry

    registry.adapters()
    with tempfile.TemporaryDirectory(prefix="rtw-bench-") as scratch:
        started = time.perf_counter()
        if kind == "adapter":
            rows, stage_peak = _adapter_read(name, path, Path(scratch))
        else:
            rows, stage_peak = _raw_read(name, path), 0.0
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mib": peak_kib / 1024, "stage_peak_mib": stage_peak}))


def _measure(kind: str, name: str, path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", kind, name, str(path)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="records per file (20 columns each)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--openpyxl", action="store_true", help="also time openpyxl read-only on the .xlsx")
    parser.add_argument("--formats", default="csv,odm,sas,spss,stata,excel", help="adapters to time, comma-separated")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "NAME", "PATH"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        kind, name, path = options.child
        if kind == "write":
            names, records = _records(options.rows, options.seed)
            next(case[3] for case in CASES if case[2] == name)(Path(path), names, records)
        else:
            _child(kind, name, Path(path))
        return
    print(f"{options.rows} records x {COLUMNS} columns per file; records/s, peak RSS per process\n")
    print(f"{'format':<13} {'file MiB':>8}  {'adapter rec/s':>13} {'s':>6} {'MiB':>5} {'stage':>5}  "
          f"{'raw read':<26} {'rec/s':>9} {'s':>6} {'MiB':>5}  {'adapter/raw':>11}")
    with tempfile.TemporaryDirectory(prefix="rtw-bench-files-") as folder:
        for label, format_name, suffix, _write, reader in CASES:
            if format_name not in options.formats.split(","):
                continue
            path = Path(folder) / f"bench{suffix}"
            # Written by another process: a child inherits the peak memory of the process it forks from.
            subprocess.run([sys.executable, __file__, "--child", "write", suffix, str(path), "--rows",
                            str(options.rows), "--seed", str(options.seed)], check=True)
            adapter = _measure("adapter", format_name, path)
            raws = [reader, "openpyxl.read_only"] if format_name == "excel" and options.openpyxl else [reader]
            for index, raw_reader in enumerate(raws):
                raw = _measure("raw", raw_reader, path)
                if adapter["rows"] != options.rows or raw["rows"] != options.rows:
                    raise SystemExit(f"{label}: read {adapter['rows']} / {raw['rows']} records, "
                                     f"expected {options.rows}")
                head = (f"{label:<13} {path.stat().st_size / 2**20:8.1f}  "
                        f"{options.rows / adapter['seconds']:13,.0f} {adapter['seconds']:6.2f} "
                        f"{adapter['peak_mib']:5.0f} {adapter['stage_peak_mib']:5.0f}") if index == 0 else " " * 56
                print(f"{head}  {raw_reader:<26} {options.rows / raw['seconds']:9,.0f} {raw['seconds']:6.2f} "
                      f"{raw['peak_mib']:5.0f}  {adapter['seconds'] / raw['seconds']:10.1f}x", flush=True)


if __name__ == "__main__":
    main()
