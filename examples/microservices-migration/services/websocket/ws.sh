#!/bin/sh
# The WebSocket server (port 9000), one connection per run (busybox `nc -ll -e`):
# the RFC 6455 handshake, then a text frame a second with the scanner's latest
# snapshot from the cache (the frontend's real-time prices and rankings). A
# plain GET (the seed's `curl http://localhost:9000`) gets its health.
. /srv/lib/cache.sh
read -r method path proto
key=""
while read -r line; do
  line="$(printf %s "$line" | tr -d '\r')"
  [ -z "$line" ] && break
  case "$line" in [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key="$(printf %s "${line#*:}" | tr -d ' ')" ;; esac
done
if [ -z "$key" ]; then
  body='{"status":"healthy","service":"websocket"}'
  printf 'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#body}" "$body"
  exit 0
fi
accept="$(printf %s "${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | sha1sum | cut -c1-40 | xxd -r -p | base64)"
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
# One unmasked text frame (FIN + opcode 1); 16-bit length past 125 bytes.
frame() {
  n=${#1}
  if [ "$n" -le 125 ]; then printf "\\x81\\x$(printf %02x "$n")%s" "$1"
  else printf "\\x81\\x7e\\x$(printf %02x $((n / 256)))\\x$(printf %02x $((n % 256)))%s" "$1"; fi
}
while :; do
  snapshot="$(redis GET scanner:gappers_up)" || snapshot=null
  frame "{\"type\":\"scanner\",\"at\":$(date +%s),\"snapshot\":$snapshot}" || exit 0
  sleep 1
done
