"""Whether a process the tests started, or one it started, still runs."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Whether the process runs: not gone (reaped between two looks too) and not a zombie (an orphan's stays one
    where the container's PID 1 reaps none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # the state follows the command's name
