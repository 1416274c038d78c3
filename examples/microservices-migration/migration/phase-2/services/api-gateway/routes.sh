# api-gateway v3 (phase 2): as v2, and rankings and RVOL from the new REST APIs
# of scanner and analytics instead of the cache:
#   response = await http_client.get("http://scanner-service:8001/api/...")
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
    /api/v1/scanner/gappers_up) from_api http://scanner:8001/api/rankings/gappers_up ;;
    /api/v1/analytics/rvol) from_api http://analytics:8003/api/rvol ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
metadata_direct() {
  sym="${1#/api/v1/ticker/}"; sym="${sym%/metadata}"
  if [ -f "/srv/data/metadata/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/metadata/$sym.json")"
  else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi
}
# A timeout (2 s) or an error of the service is a 504 of the gateway.
from_api() {
  if body="$(fetch "$1")"; then respond "200 OK" "$body"
  else respond "504 Gateway Timeout" "{\"error\":\"no answer from $1\"}"; fi
}
