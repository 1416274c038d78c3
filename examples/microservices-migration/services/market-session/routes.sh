# market-session: the seed's pre-change health test (/api/session/current).
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"market-session"}' ;;
    /api/session/current) respond "200 OK" '{"session":"MARKET_OPEN"}' ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
