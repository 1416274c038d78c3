# fundamental-data-service (phase 3): financials, dilution, filings.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"fundamental-data-service","version":"1"}' ;;
    /api/financials/*) respond "200 OK" "{\"symbol\":\"${1#/api/financials/}\",\"statements\":[]}" ;;
    /api/dilution/*) respond "200 OK" "{\"symbol\":\"${1#/api/dilution/}\",\"events\":[]}" ;;
    /api/filings/*) respond "200 OK" "{\"symbol\":\"${1#/api/filings/}\",\"filings\":[]}" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
