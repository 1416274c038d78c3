# enrich_metadata SYMBOL: the ticker's metadata, enriched (sector, exchange) for
# the cache. Moved here from data-maintenance in phase 1.
enrich_metadata() {
  case "$1" in
    AAPL) printf '{"symbol":"AAPL","sector":"Technology","exchange":"XNAS","enriched_by":"ticker-metadata-service"}' ;;
    TSLA) printf '{"symbol":"TSLA","sector":"Consumer Cyclical","exchange":"XNAS","enriched_by":"ticker-metadata-service"}' ;;
    NVDA) printf '{"symbol":"NVDA","sector":"Technology","exchange":"XNAS","enriched_by":"ticker-metadata-service"}' ;;
    *) return 1 ;;
  esac
}
