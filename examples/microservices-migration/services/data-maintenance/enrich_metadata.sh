# enrich_metadata SYMBOL: the ticker's metadata, enriched (sector, exchange) for
# the cache. Phase 1 moves it into ticker-metadata-service.
enrich_metadata() {
  case "$1" in
    AAPL) printf '{"symbol":"AAPL","sector":"Technology","exchange":"XNAS","enriched_by":"data-maintenance"}' ;;
    TSLA) printf '{"symbol":"TSLA","sector":"Consumer Cyclical","exchange":"XNAS","enriched_by":"data-maintenance"}' ;;
    NVDA) printf '{"symbol":"NVDA","sector":"Technology","exchange":"XNAS","enriched_by":"data-maintenance"}' ;;
    *) return 1 ;;
  esac
}
