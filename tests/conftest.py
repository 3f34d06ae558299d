"""Settings every test shares."""

import os

# Tests write export files and run at once: the landing quiet period (a file must be unchanged for
# that long before it is read) is off, except in the tests of it, which pass their own.
os.environ.setdefault("RTW_QUIET_SECONDS", "0")
