"""A pull of a drop zone holding many files: its message names the first `LISTED` of those pulled, failed and
left for later, then how many more (4,000 files waiting made a message of 1.1 MB, an Airflow XCom and a log
line); its counts and the outcome's lists stay exact, and each file failed or left for later is logged."""

from __future__ import annotations

import logging

from drop_zone import registry_sources, send

from etl.pull import PullPolicy, PullStatus, pull_source
from etl.pull.deliveries import LISTED

FAST = PullPolicy(attempts=2, backoff_seconds=0.01)
EXPORT = b"codice_paziente;version\n1;A\n"


def test_the_message_names_the_first_files_then_how_many_more(tmp_path, home, drop, caplog):
    sources = registry_sources(tmp_path, drop)
    pulled = [f"TREP_export_20261102_{i:02d}.csv" for i in range(LISTED + 10)]
    waiting = [f"TREP_export_20261103_{i:02d}.csv" for i in range(LISTED + 5)]
    refused = [f"TREP_export_20261104_{i:02d}\x07.csv" for i in range(LISTED + 2)]  # a control character
    for i, name in enumerate(pulled + refused):
        send(drop / name, EXPORT + f"{i};B\n".encode())
    for i, name in enumerate(waiting):
        send(drop / name, EXPORT + f"{i};C\n".encode(), age=5)  # within the quiet period
    caplog.set_level(logging.WARNING)
    outcome = pull_source(home, "registry_it", sources_dir=sources, policy=FAST)

    assert outcome.status is PullStatus.FAILED
    assert sorted(outcome.pulled) == pulled and [s.name for s in outcome.skipped] == waiting
    assert len(outcome.failures) == len(refused)  # the lists keep them all
    message = outcome.message
    assert f"pulled {len(pulled)} file(s) from {drop}: {', '.join(pulled[:LISTED])}, and 10 more; " in message
    assert pulled[LISTED] not in message
    said = [name.replace("\x07", "\\x07") for name in refused]  # as a message writes a control character
    named = [name for name in said if name in message]
    assert len(named) == LISTED and "; and 2 more not pulled; " in message
    left = message.split("; left for later: ")[1]
    assert [w for w in waiting if w in left] == waiting[:LISTED] and left.endswith("; and 5 more")
    # What the message leaves out is in the log: each file refused and each left for later, a line each.
    logged = [r.getMessage() for r in caplog.records]
    assert all(any(f"{name} from {drop} not pulled" in line for line in logged) for name in said)
    assert all(any(f"{name} in {drop} left for later" in line for line in logged) for name in waiting)
    # What the DAG's pull task hands over (an XCom): the first of each list, and how many each holds.
    handed = outcome.handed_over()
    assert handed["pulled"] == outcome.pulled[:LISTED] and handed["failures"] == outcome.failures[:LISTED]
    assert handed["counts"] == {"pulled": len(pulled), "skipped": len(waiting), "failures": len(refused),
                                "left_for_later": len(waiting)}
    assert [s["name"] for s in handed["left_for_later"]] == waiting[:LISTED] and handed["message"] == message
