# analytics v2 (phase 2): routes/ added, RVOL exposed over REST.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"analytics","version":"2"}' ;;
    /api/rvol) respond "200 OK" "{\"rvol\":$(cat /srv/data/rvol.json),\"source\":\"analytics-api\"}" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
