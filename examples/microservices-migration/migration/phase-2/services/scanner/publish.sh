# scanner v2: as v1, and the snapshot kept for the REST API; the cache also gets
# the rankings in the new per-category format (`scanner:rankings:v2:*`).
. /srv/lib/cache.sh
tick=0
while :; do
  tick=$((tick + 1))
  tickers="$(cat /srv/data/gappers_up.json)"
  printf '{"category":"gappers_up","tick":%s,"tickers":%s,"source":"scanner-api"}' "$tick" "$tickers" >/srv/snapshot.json.new
  mv /srv/snapshot.json.new /srv/snapshot.json
  redis SET scanner:gappers_up "{\"category\":\"gappers_up\",\"tick\":$tick,\"tickers\":$tickers,\"source\":\"redis\"}" >/dev/null
  redis SET scanner:rankings:v2:gappers_up "{\"tick\":$tick,\"tickers\":$tickers}" >/dev/null
  sleep 1
done
