"""Benchmark: wall time and peak memory of `rtw synth`, `rtw run` (and a no-change rerun) and `rtw demo`.

    .venv/bin/python benchmarks/nightly_run.py --patients 2000

Each step runs in its own process, which reports its own peak resident memory (ru_maxrss),
so the numbers are what a data manager's machine would see.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs `rtw <args>` and writes the peak RSS (KiB) of the process, or of the largest child it
# waited for (`rtw demo` runs Airflow in subprocesses), to the file named by argv[1].
_PROBE = """
import resource, sys
from pathlib import Path
from etl.cli import app
peak_file = Path(sys.argv.pop(1))
try:
    app(prog_name="rtw")
except SystemExit as done:
    if done.code:
        raise
finally:
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    peak_file.write_text(str(peak))
"""


def _measure(label: str, args: list[str], scratch: Path) -> None:
    peak_file = scratch / "peak"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _PROBE, str(peak_file), *args], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    print(f"{label:<28} {seconds:8.1f} s   peak RSS {int(peak_file.read_text()) / 1024:8.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        synth = ["synth", "--out", str(home), "--patients", str(options.patients), "--seed", str(options.seed)]
        _measure(f"synth {options.patients} persons", synth, scratch=home)
        _measure("run (first load)", ["run", "--home", str(home)], scratch=home)
        _measure("run (nothing changed)", ["run", "--home", str(home)], scratch=home)
        demo_home = home / "demo"
        demo = ["demo", "--home", str(demo_home), "--patients", str(options.patients), "--seed", str(options.seed)]
        _measure(f"demo {options.patients} persons (Airflow)", demo, scratch=home)


if __name__ == "__main__":
    main()
