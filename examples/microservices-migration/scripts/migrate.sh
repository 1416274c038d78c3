#!/bin/sh
# Applies one phase of the migration to the working tree and commits it, as the
# team would: copy migration/phase-N/ over the project ("CAMBIOS QUE SE HARÁN").
# Usage: scripts/migrate.sh N
set -eu
cd "$(dirname "$0")/.."
cp -R "migration/phase-$1/." .
git add -A
git commit -q -m "migration phase $1"
git log --oneline -1
