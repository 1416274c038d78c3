# ticker-metadata-service (phase 1): enrich_metadata moved out of
# data-maintenance, served over REST on port 8010.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"ticker-metadata-service","version":"1"}' ;;
    /api/metadata/*)
      sym="${1#/api/metadata/}"
      if [ -f "/srv/data/$sym.json" ]; then respond "200 OK" "$(cat "/srv/data/$sym.json")"
      else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi ;;
    /api/enrich/*)
      . /srv/enrich_metadata.sh
      sym="${1#/api/enrich/}"
      if json="$(enrich_metadata "$sym")"; then respond "200 OK" "$json"
      else respond "404 Not Found" "{\"error\":\"unknown symbol $sym\"}"; fi ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
