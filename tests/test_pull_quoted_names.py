"""The file names a pull's message quotes, shown without their patient numbers (`QuotedNames`): one name
inside another is shown as when each name, the longest first, was replaced in turn, and a message listing
thousands of names is read once, not once per name (a pull of 4,000 files waiting took seconds in it)."""

from __future__ import annotations

from etl.extract.file_names import PatientNumbers, QuotedNames

NAMES = ["P0012.csv", "P0012.csv.sha256", "StepP0012.csv", "Fall_123456.csv", "Fall_123456.csv.sha256",
         "x_Fall_123456.csv", "TREP_export_20261101.csv"]


def test_a_name_inside_another_is_shown_as_each_replaced_in_turn_the_longest_first():
    numbers = PatientNumbers.of(["P0001", "P0002"])
    quoted = QuotedNames(NAMES)
    text = ("pulled 4 file(s): P0012.csv, StepP0012.csv, x_Fall_123456.csv, TREP_export_20261101.csv; left for "
            "later: P0012.csv.sha256 (a sidecar of P0012.csv), Fall_123456.csv.sha256 (Fall_123456.csv); P0099.csv")
    # A prefix (P0012.csv of P0012.csv.sha256) and a suffix (Fall_123456.csv of x_Fall_123456.csv) are cut
    # nowhere; StepP0012.csv is shown as it is (the key's letter runs into a word there), and P0012.csv inside it,
    # quoted too, is shown without its number as ever; a date stays, and a name not quoted (P0099.csv) too.
    assert quoted.shown(text, numbers) == (
        "pulled 4 file(s): {patient}.csv, Step{patient}.csv, x_Fall_{patient}.csv, TREP_export_20261101.csv; left "
        "for later: {patient}.csv.sha256 (a sidecar of {patient}.csv), Fall_{patient}.csv.sha256 "
        "(Fall_{patient}.csv); P0099.csv")
    assert QuotedNames(["StepP0012.csv"]).shown("StepP0012.csv", numbers) == "StepP0012.csv"
    # Two names overlapping, the later longer: each shown without its number (read once from the start, the first
    # was taken and the second, cut, left ILTB-00013 in the text)
    overlapping = QuotedNames(["ILTB-00012_v", "v_ILTB-00013_DIAGX.csv"])
    assert overlapping.shown("cannot read ILTB-00012_v_ILTB-00013_DIAGX.csv", PatientNumbers.of(["ILTB-00001"])) == \
        "cannot read {patient}_v_{patient}_DIAGX.csv"
    assert quoted.shown("no name here", numbers) == "no name here"
    learnt = QuotedNames(["P0012.csv"])  # the pull tells its matcher the names it learns as it goes
    assert learnt.shown("P0013.csv", numbers) == "P0013.csv"
    learnt.add(["P0013.csv"])
    assert learnt.shown("P0012.csv, P0013.csv", numbers) == "{patient}.csv, {patient}.csv"


def test_a_message_naming_twenty_thousand_files_shows_none_of_their_numbers():
    """Each name looked for in the whole message took 24 s here; read once, 0.2 s (measured, not asserted)."""
    names = [f"Fall_{100000 + i}_Verlauf.csv" for i in range(20_000)]
    text = f"pulled {len(names)} file(s): {', '.join(names)}; left for later: {'; '.join(names)}"  # 1.2 MB
    shown = QuotedNames(names).shown(text, PatientNumbers.of(["100000"]))
    assert shown.count("Fall_{patient}_Verlauf.csv") == 2 * len(names) and "1000" not in shown
