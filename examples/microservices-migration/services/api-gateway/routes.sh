# api-gateway v1 (before the migration): metadata by a direct query; scanner
# rankings and RVOL from the Redis cache the scanner and analytics publish to.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"api-gateway","version":"1"}' ;;
    /api/v1/ticker/*/metadata) metadata_direct "$1" ;;
    /api/v1/scanner/gappers_up) from_cache scanner:gappers_up ;;
    /api/v1/analytics/rvol) from_cache analytics:rvol ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
# The fallback every gateway version keeps: metadata straight from its own data.
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
