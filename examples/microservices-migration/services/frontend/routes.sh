# frontend (port 3000): the page with the scanner table, filled from the
# gateway, and each symbol's metadata modal; when the gateway fails the page
# still loads and says so (graceful).
# The page's script connects to the WebSocket server (port 9000) for prices.
route() {
  case "$1" in
    /health) respond "200 OK" '{"status":"healthy","service":"frontend"}' ;;
    /)
      if body="$(fetch http://api-gateway:8000/api/v1/scanner/gappers_up)"; then
        rows="$(printf %s "$body" | sed -n 's/.*"tickers":\[\([^]]*\)\].*/\1/p' | tr -d '"' | tr ',' '\n' |
          sed 's|.*|<tr><td>&</td></tr>|' | tr -d '\n')"
        table="<table id=\"scanner\">$rows</table>"
      else
        table='<p class="error">scanner unavailable, retrying</p>'
      fi
      respond "200 OK" "<!doctype html><html><head><title>Tradeul</title></head><body><h1>Scanner</h1>$table<span id=\"ws\" data-url=\"ws://localhost:9000/prices\"></span></body></html>" "text/html" ;;
    /ticker/*)
      # The metadata modal (a click on a symbol): the gateway's metadata, or a
      # graceful error in its place.
      sym="${1#/ticker/}"
      if body="$(fetch "http://api-gateway:8000/api/v1/ticker/$sym/metadata")"; then
        modal="<div id=\"metadata-modal\"><pre>$body</pre></div>"
      else
        modal='<div id="metadata-modal"><p class="error">metadata unavailable</p></div>'
      fi
      respond "200 OK" "<!doctype html><html><head><title>Tradeul: $sym</title></head><body><h1>$sym</h1>$modal</body></html>" "text/html" ;;
    *) respond "404 Not Found" '{"error":"not found"}' ;;
  esac
}
