# scanner v1: ranks the tickers once a second and publishes the snapshot to the
# cache (`scanner:gappers_up`), where the gateway and the WebSocket server read it.
. /srv/lib/cache.sh
tick=0
while :; do
  tick=$((tick + 1))
  redis SET scanner:gappers_up "{\"category\":\"gappers_up\",\"tick\":$tick,\"tickers\":$(cat /srv/data/gappers_up.json),\"source\":\"redis\"}" >/dev/null
  sleep 1
done
