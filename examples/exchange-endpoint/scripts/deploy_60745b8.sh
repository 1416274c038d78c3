#!/bin/sh
# The change of seed 000: commit 60745b8 (manipulation_risk for the Smart
# Scalper, plus an exchanges.py cleanup that lost `session = get_session()`).
set -eu
cp changes/60745b8/backend/routes/exchanges.py backend/routes/exchanges.py
cp changes/60745b8/backend/services/institutional_analysis.py backend/services/institutional_analysis.py
git add backend
git commit -q -F changes/60745b8/COMMIT_MSG
