#!/bin/sh
# A git-push PaaS on this machine: a bare repository whose post-receive hook
# checks out main into a live directory and restarts the backend there.
# usage: scripts/setup-paas.sh [PORT]   (default 8000; everything under .paas/)
set -eu
PORT=${1:-8000}
ROOT=$(pwd)/.paas
mkdir -p "$ROOT/live" "$ROOT/run"
git init -q --bare "$ROOT/app.git"
cat >"$ROOT/app.git/hooks/post-receive" <<HOOK
#!/bin/sh
set -eu
while read old new ref; do
  [ "\$ref" = refs/heads/main ] || continue
  echo "deploying \$(echo \$new | cut -c1-7)"
  git --git-dir="$ROOT/app.git" --work-tree="$ROOT/live" checkout -q -f main
  sh "$ROOT/live/deploy/restart.sh" "$ROOT/live" "$ROOT/run" "$PORT" "\$new"
done
HOOK
chmod +x "$ROOT/app.git/hooks/post-receive"
git remote remove paas 2>/dev/null || true
git remote add paas "$ROOT/app.git"
echo "paas: git push paas main deploys to 127.0.0.1:$PORT"
