"""Option A of seed 000: insert the missing `session = get_session()` line.

Inserts it after `exchange_factory = ExchangeFactory(encryption_service)` in
add_user_exchange, checks the syntax (py_compile) and commits. Idempotent: when
the line is there already, it does nothing.
"""

import py_compile
import subprocess
import sys

PATH = "backend/routes/exchanges.py"
ANCHOR = "    exchange_factory = ExchangeFactory(encryption_service)\n"
FIX = "    session = get_session()\n"

lines = open(PATH).readlines()
if ANCHOR not in lines:
    sys.exit(f"{PATH}: anchor line not found: {ANCHOR.strip()!r}")
at = lines.index(ANCHOR) + 1
if lines[at] == FIX:
    print(f"{PATH}:{at + 1}: `session = get_session()` already present; nothing to do")
    sys.exit(0)
lines.insert(at, FIX)
open(PATH, "w").writelines(lines)
py_compile.compile(PATH, doraise=True)
subprocess.run(["git", "add", PATH], check=True)
subprocess.run(
    ["git", "commit", "-q", "-m", "fix: DL-034 Add missing session variable in exchanges.py add_user_exchange"],
    check=True,
)
print(f"{PATH}:{at + 1}: inserted `session = get_session()`; committed")
