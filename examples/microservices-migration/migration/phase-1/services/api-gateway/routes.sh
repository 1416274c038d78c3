# api-gateway v2 (phase 1): metadata from ticker-metadata-service; when that
# service is not there at all (degraded mode), the direct query as before.
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
    /api/v1/scanner/gappers_up)
      if body="$(fetch http://scanner:8001/cache/gappers_up)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"scanner cache unavailable"}'; fi ;;
    /api/v1/analytics/rvol)
      if body="$(fetch http://analytics:8003/cache/rvol)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"analytics cache unavailable"}'; fi ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
metadata_direct() {
  sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
  if [ -f "/srv/data/metadata/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/metadata/$sym.json")"
  else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi
}
