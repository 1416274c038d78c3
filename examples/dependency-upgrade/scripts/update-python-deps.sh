#!/bin/sh
# The seed's update script: back up requirements.txt, pin Flask 3.x, install.
# Usage: scripts/update-python-deps.sh [WHEELS_DIR]   (default: wheels)
set -eu
wheels="${1:-wheels}"
if grep -q '^Flask==3\.' requirements.txt; then
  # Re-run after a fix forward: the backup keeps the last Flask 2 pins.
  echo "requirements.txt already pins Flask 3: requirements.txt.backup kept"
else
  cp requirements.txt requirements.txt.backup
  sed -i -e 's/^Flask==.*/Flask==3.0.3/' -e 's/^Werkzeug==.*/Werkzeug==3.0.6/' \
    -e 's/^# Core Framework.*/# Core Framework - Flask 3.x/' requirements.txt
fi
venv/bin/pip install -q --no-index --find-links "$wheels" -r requirements.txt
venv/bin/pip list 2>/dev/null | grep -E '^(Flask|Werkzeug) '
