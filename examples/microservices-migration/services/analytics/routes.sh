# analytics v1: publishes relative volume (RVOL) to the cache.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"analytics","version":"1"}' ;;
    /cache/rvol) respond "200 OK" "$(cat /srv/data/rvol.json)" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
