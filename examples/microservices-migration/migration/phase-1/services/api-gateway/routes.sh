# api-gateway v2 (phase 1): metadata from ticker-metadata-service; when that
# service is not there at all (degraded mode), the direct query as before.
# Rankings and RVOL from the Redis cache, as in v1.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"api-gateway","version":"2"}' ;;
    /api/v1/ticker/*/metadata)
      sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
      body="$(fetch "$(cat /srv/metadata_url)/$sym")"
      case $? in
        0) respond "200 OK" "$body" ;;
        2) metadata_direct "$1" ;;
        *) respond "502 Bad Gateway" '{"error":"ticker-metadata-service failed"}' ;;
      esac ;;
    /api/v1/scanner/gappers_up) from_cache scanner:gappers_up ;;
    /api/v1/analytics/rvol) from_cache analytics:rvol ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
metadata_direct() {
  sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
  if [ -f "/srv/data/metadata/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/metadata/$sym.json")"
  else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi
}
# response = await redis_client.get(KEY)
from_cache() {
  if body="$(redis GET "$1")"; then respond "200 OK" "$body"
  else respond "503 Service Unavailable" "{\"error\":\"$1 not in the cache\"}"; fi
}
