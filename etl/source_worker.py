"""A worker process of `rtw run` (etl/pipeline.py): extract and harmonise one source.

Told what to do as one JSON object on stdin (home, run id, source, key, mappings folder, log level);
answers with one JSON line on stdout (the source's outcome and the steps it took). Its log lines go
to stderr, the run's. A crash or a kill leaves no answer: the run fails the source with the reason.

It ends with the run, however the run ends: the kernel ends it when the run's thread that started it (one
of the run's pool threads, alive until every worker has answered) ends, the run killed with SIGKILL
included (etl/extract/isolated.py, `die_with`). Ctrl-C, which the terminal sends to the run and each of
its workers, is the run's to act on: a worker ignores it and is ended by the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from pathlib import Path

from etl import crash, fsio, timing
from etl.config import Home
from etl.extract.isolated import die_with


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # else each worker's KeyboardInterrupt traceback in the run's stderr
    die_with(int(sys.argv[1]))  # before the import that takes time: a run gone meanwhile waits for nothing
    crash.crash_point("preparing")
    from etl.pipeline import prepare_source

    job = json.loads(sys.stdin.read())
    logging.basicConfig(level=job["log_level"], format="%(levelname)s %(message)s", stream=sys.stderr)
    timing.measure_memory = job["measure_memory"]
    with fsio.private_umask():
        outcome, steps = prepare_source(Home(Path(job["home"])), job["run_id"], job["source_id"], job["key_value"],
                                        Path(job["sources_dir"]))
    print(json.dumps({"outcome": outcome.model_dump(mode="json"), "steps": [dataclasses.asdict(s) for s in steps]}))


if __name__ == "__main__":
    main()
