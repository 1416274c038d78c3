# data-maintenance v1: every 2 s, enriches each ticker's metadata and stores it
# in the cache (`metadata:enriched:SYMBOL`).
. /srv/lib/cache.sh
# (Like Python's import: without the module, the job does not start.)
[ -f /srv/enrich_metadata.sh ] || { echo "ERROR data-maintenance: cannot import enrich_metadata (/srv/enrich_metadata.sh: not found)" >&2; exit 1; }
. /srv/enrich_metadata.sh
while :; do
  for sym in AAPL TSLA NVDA; do
    if json="$(enrich_metadata "$sym")"; then redis SET "metadata:enriched:$sym" "$json" >/dev/null
    else echo "ERROR data-maintenance: enrich_metadata failed for $sym" >&2; fi
  done
  sleep 2
done
