# fundamental-data-service (phase 3): financials, dilution, filings. Financials
# come from Polygon (POLYGON_URL, with the key's POLYGON_API_KEY); a 429 there
# is logged (the seed's "Polygon API rate limit") and answered as a 503.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"fundamental-data-service","version":"1"}' ;;
    /api/financials/*) financials "${1#/api/financials/}" ;;
    /api/dilution/*) respond "200 OK" "{\"symbol\":\"${1#/api/dilution/}\",\"events\":[]}" ;;
    /api/filings/*) respond "200 OK" "{\"symbol\":\"${1#/api/filings/}\",\"filings\":[]}" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
# GET /v3/reference/financials?ticker=SYM from Polygon.
financials() {
  rest="${POLYGON_URL#http://}"; host="${rest%:*}"; port="${rest##*:}"
  ip="$(resolve "$host")"
  answer="$([ -n "$ip" ] && printf 'GET /v3/reference/financials?ticker=%s&apiKey=%s HTTP/1.0\r\nHost: api.polygon.io\r\n\r\n' "$1" "$POLYGON_API_KEY" | timeout 2 nc -w 2 "$ip" "$port" 2>/dev/null)"
  status="$(printf %s "$answer" | head -1 | cut -d' ' -f2)"
  case "$status" in
    200) respond "200 OK" "{\"symbol\":\"$1\",\"statements\":$(printf %s "$answer" | sed '1,/^\r*$/d' | sed -n 's/.*"results":\(.*\)}$/\1/p')}" ;;
    429)
      echo "ERROR polygon: 429 Too Many Requests for financials of $1: rate limit of the plan exceeded" >&2
      respond "503 Service Unavailable" "{\"error\":\"Polygon API rate limit\",\"symbol\":\"$1\"}" ;;
    *)
      echo "ERROR polygon: no answer for financials of $1 (${status:-unreachable})" >&2
      respond "502 Bad Gateway" "{\"error\":\"Polygon unreachable\",\"symbol\":\"$1\"}" ;;
  esac
}
