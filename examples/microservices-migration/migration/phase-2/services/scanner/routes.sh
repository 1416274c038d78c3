# scanner v2 (phase 2): routes/ added, the rankings exposed over REST.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"scanner","version":"2"}' ;;
    /cache/gappers_up|/api/rankings/gappers_up) respond "200 OK" "$(cat /srv/data/gappers_up.json)" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
