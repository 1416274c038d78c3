# scanner v1: no API of its own; its rankings go to the cache (publish.sh).
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"scanner","version":"1"}' ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
