# api-gateway v1 (before the migration): metadata by a direct query, scanner
# rankings from the snapshot the scanner publishes (the "Redis" cache).
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"api-gateway","version":"1"}' ;;
    /api/v1/ticker/*/metadata) metadata_direct "$1" ;;
    /api/v1/scanner/gappers_up)
      if body="$(fetch http://scanner:8001/cache/gappers_up)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"scanner cache unavailable"}'; fi ;;
    /api/v1/analytics/rvol)
      if body="$(fetch http://analytics:8003/cache/rvol)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"analytics cache unavailable"}'; fi ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
# The fallback every gateway version keeps: metadata straight from its own data.
metadata_direct() {
  sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
  if [ -f "/srv/data/metadata/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/metadata/$sym.json")"
  else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi
}
