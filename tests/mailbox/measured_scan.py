"""`bounce-service scan` that says, on its last line of stderr, how far its memory rose during the run above
where it stood once everything was loaded: the peak resident set (VmHWM, reset at the start through
/proc/self/clear_refs) minus the resident set then. Run as a script by the tests."""

import sys
from pathlib import Path

from bounce_service import cli
# Loaded before the starting point is taken: code, not growth (the config imports the schema only to
# validate, the CLI the providers only to check their keys).
from bounce_service import providers, schema  # noqa: F401
from bounce_service.mailbox import scanner  # noqa: F401


def kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


Path("/proc/self/clear_refs").write_text("5")  # the peak so far (imports) is forgotten
start = kib("VmRSS")
status = cli.main(sys.argv[1:])
print(f"peak memory growth: {kib('VmHWM') - start} KiB", file=sys.stderr)
sys.exit(status)
