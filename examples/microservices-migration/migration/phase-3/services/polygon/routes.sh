# A stand-in for Polygon's REST API (api.polygon.io is not reachable here):
# /v3/reference/financials?ticker=SYM answers as Polygon does, within the
# per-minute request quota of the key's plan (PLAN_REQUESTS_PER_MINUTE). Over it,
# 429 with Polygon's own message, as the seed's "Polygon API rate limit" fears.
route() {
  minute=$(($(date +%s) / 60))
  count="/tmp/requests.$minute"
  n=$(($(cat "$count" 2>/dev/null || echo 0) + 1))
  echo "$n" > "$count"
  if [ "$n" -gt "${PLAN_REQUESTS_PER_MINUTE:-100}" ]; then
    respond "429 Too Many Requests" '{"status":"ERROR","error":"You'"'"'ve exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. https://polygon.io/pricing"}'
    return
  fi
  ticker="$(printf %s "$path" | sed -n 's/.*[?&]ticker=\([A-Z.]*\).*/\1/p')"
  case "$1" in
    /v3/reference/financials) respond "200 OK" "{\"status\":\"OK\",\"results\":[{\"tickers\":[\"$ticker\"],\"fiscal_period\":\"Q3\",\"fiscal_year\":\"2025\",\"financials\":{\"income_statement\":{\"revenues\":{\"value\":94930000000,\"unit\":\"USD\"}}}}]}" ;;
    *) respond "404 Not Found" '{"status":"NOT_FOUND","message":"Data not found."}' ;;
  esac
}
