# scanner v1: publishes its rankings snapshot (what it writes to Redis).
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"scanner","version":"1"}' ;;
    /cache/gappers_up) respond "200 OK" "$(cat /srv/data/gappers_up.json)" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
