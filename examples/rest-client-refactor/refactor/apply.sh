#!/bin/sh
# Applies one phase of the client-injection conversion: copies refactor/phaseN/
# over the tree and commits it with refactor/phaseN/MESSAGE.
# usage: sh refactor/apply.sh N
set -eu
n=$1
dir=refactor/phase$n
[ -d "$dir" ] || { echo "no phase $n: $dir is missing" >&2; exit 2; }
(cd "$dir" && find . -type f ! -name MESSAGE) | while read -r f; do
  mkdir -p "$(dirname "$f")"
  cp "$dir/$f" "$f"
done
git add -A src tests
git commit -q -F "$dir/MESSAGE"
echo "$(git log -1 --format='%h %s')"
