# analytics v1: computes relative volume (RVOL) once a second and publishes it
# to the cache (`analytics:rvol`).
. /srv/lib/cache.sh
tick=0
while :; do
  tick=$((tick + 1))
  redis SET analytics:rvol "{\"rvol\":$(cat /srv/data/rvol.json),\"tick\":$tick,\"source\":\"redis\"}" >/dev/null
  sleep 1
done
