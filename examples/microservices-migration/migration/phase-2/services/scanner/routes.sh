# scanner v2 (phase 2): routes/ added, the latest rankings exposed over REST.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"scanner","version":"2"}' ;;
    /api/rankings/gappers_up)
      if [ -s /srv/snapshot.json ]; then respond "200 OK" "$(cat /srv/snapshot.json)"
      else respond "503 Service Unavailable" '{"error":"no rankings yet"}'; fi ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
