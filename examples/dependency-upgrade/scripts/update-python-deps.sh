#!/bin/sh
# The seed's update script: back up requirements.txt, pin Flask 3.x, pandas 2.x
# and NumPy 2.x (pandas 2 needs tzdata too), install.
# Usage: scripts/update-python-deps.sh [WHEELS_DIR]   (default: wheels)
set -eu
wheels="${1:-wheels}"
if grep -q '^Flask==3\.' requirements.txt; then
  # Re-run after a fix forward: the backup keeps the last Flask 2 pins.
  echo "requirements.txt already pins Flask 3: requirements.txt.backup kept"
else
  cp requirements.txt requirements.txt.backup
  sed -i -e 's/^Flask==.*/Flask==3.0.3/' -e 's/^Werkzeug==.*/Werkzeug==3.0.6/' \
    -e 's/^numpy==.*/numpy==2.0.2/' -e 's/^pandas==.*/pandas==2.2.3/' \
    -e 's/^# Core Framework.*/# Core Framework - Flask 3.x/' \
    -e 's/^# Data Processing.*/# Data Processing - pandas 2.x, NumPy 2.x/' requirements.txt
  echo 'tzdata==2026.6' >>requirements.txt
fi
# --no-compile: modules are compiled when first imported, which for NumPy and
# pandas is a fraction of compiling all of them here.
venv/bin/pip install -q --no-compile --no-index --find-links "$wheels" -r requirements.txt
venv/bin/pip list 2>/dev/null | grep -E '^(Flask|Werkzeug|numpy|pandas) '
