#!/bin/sh
# Called by the post-receive hook after checkout: stops the running backend
# (pidfile), starts the new one detached, waits until it listens.
# usage: restart.sh LIVE_DIR RUN_DIR PORT REVISION
set -eu
LIVE=$1 RUN=$2 PORT=$3 REV=$4
mkdir -p "$RUN"
if [ -f "$RUN/app.pid" ]; then
  pid=$(cat "$RUN/app.pid")
  if kill "$pid" 2>/dev/null; then
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
fi
touch "$RUN/support.log"   # the support desk's inbox, watched by the monitoring plan
cd "$LIVE"
APP_PORT=$PORT APP_DB="$RUN/app.db" APP_SUPPORT_LOG="$RUN/support.log" APP_REVISION=$REV \
  setsid python3 -m backend.server >>"$RUN/app.log" 2>&1 </dev/null &
echo $! >"$RUN/app.pid"
i=0
until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; do
  i=$((i + 1))
  [ $i -lt 100 ] || { echo "backend did not start; see $RUN/app.log" >&2; exit 1; }
  sleep 0.1
done
echo "backend $REV up on 127.0.0.1:$PORT (pid $(cat "$RUN/app.pid"))"
