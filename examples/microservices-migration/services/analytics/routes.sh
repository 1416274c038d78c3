# analytics v1: no API of its own; RVOL goes to the cache (publish.sh).
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"analytics","version":"1"}' ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
