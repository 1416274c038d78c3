# api-gateway v3 (phase 2): as v2, and rankings and RVOL from the new REST APIs
# of scanner and analytics instead of their cache snapshots.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"api-gateway","version":"3"}' ;;
    /api/v1/ticker/*/metadata)
      sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
      body="$(fetch "$(cat /srv/metadata_url)/$sym")"
      case $? in
        0) respond "200 OK" "$body" ;;
        2) metadata_direct "$1" ;;
        *) respond "502 Bad Gateway" '{"error":"ticker-metadata-service failed"}' ;;
      esac ;;
    /api/v1/scanner/gappers_up)
      if body="$(fetch http://scanner:8001/api/rankings/gappers_up)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"scanner API unavailable"}'; fi ;;
    /api/v1/analytics/rvol)
      if body="$(fetch http://analytics:8003/api/rvol)"; then respond "200 OK" "$body"
      else respond "503 Service Unavailable" '{"error":"analytics API unavailable"}'; fi ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
metadata_direct() {
  sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
  if [ -f "/srv/data/metadata/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/metadata/$sym.json")"
  else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi
}
