# data-maintenance (phase 1): enrich_metadata moved into ticker-metadata-service;
# every 2 s the job asks it (GET /api/enrich/SYMBOL) and stores the answer in the
# cache (`metadata:enriched:SYMBOL`).
. /srv/lib/cache.sh
enrich_metadata() {
  ip="$(resolve ticker-metadata-service)"
  [ -n "$ip" ] || return 2
  answer="$(printf 'GET /api/enrich/%s HTTP/1.0\r\nHost: ticker-metadata-service\r\n\r\n' "$1" | timeout 2 nc -w 2 "$ip" 8010 2>/dev/null)" || return 2
  case "$(printf %s "$answer" | head -1)" in
    "HTTP/1."?" 200"*) printf %s "$answer" | sed '1,/^\r*$/d' ;;
    *) return 1 ;;
  esac
}
while :; do
  for sym in AAPL TSLA NVDA; do
    if json="$(enrich_metadata "$sym")"; then redis SET "metadata:enriched:$sym" "$json" >/dev/null
    else echo "ERROR data-maintenance: enrich_metadata failed for $sym" >&2; fi
  done
  sleep 2
done
