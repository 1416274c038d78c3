#!/bin/sh
# Applies one phase of the migration to the working tree and commits it, as the
# team would: copy migration/phase-N/ over the project ("CAMBIOS QUE SE HARÁN").
# Usage: scripts/migrate.sh N
set -eu
cd "$(dirname "$0")/.."
cp -R "migration/phase-$1/." .
# What the phase moved elsewhere goes (its REMOVED lists it, one path a line).
if [ -f REMOVED ]; then
  grep -v '^#' REMOVED | while read -r gone; do
    [ -z "$gone" ] || git rm -q -r --ignore-unmatch -- "$gone"
  done
  rm REMOVED
fi
git add -A
git commit -q -m "migration phase $1"
git log --oneline -1
