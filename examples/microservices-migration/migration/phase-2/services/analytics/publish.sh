# analytics v2 (phase 2): RVOL to the cache once a second as in v1 (`analytics:rvol`);
# the REST API is new (routes.sh).
. /srv/lib/cache.sh
tick=0
while :; do
  tick=$((tick + 1))
  redis SET analytics:rvol "{\"rvol\":$(cat /srv/data/rvol.json),\"tick\":$tick,\"source\":\"redis\"}" >/dev/null
  sleep 1
done
