"""Records as extract hands them to harmonise and `rtw check`: each row with its line in its file and the file."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def records_of(rows: Sequence[dict[str, str]], file_name: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["_line"] = range(2, 2 + len(frame))  # line 1 is the header
    frame["source_file"] = file_name
    frame["source_file_sha256"] = "f" * 64
    return frame
