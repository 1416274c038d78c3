#!/bin/sh
# One HTTP/1.0 exchange on stdin/stdout (busybox `nc -ll -e` runs this per
# connection): reads the request line and headers, then calls the service's
# `route PATH` from /srv/routes.sh, which answers with `respond STATUS BODY`.
. /srv/lib/cache.sh
respond() {
  printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$1" "${3:-application/json}" "${#2}" "$2"
}
# GET http://HOST:PORT/PATH from another service: the body on stdout; exit 2 when
# nothing listens there or no answer comes within 2 s (the caller may fall back),
# 1 on any other answer than 2xx.
fetch() {
  rest="${1#http://}"; hostport="${rest%%/*}"; path="/${rest#*/}"
  host="${hostport%:*}"; port="${hostport##*:}"
  ip="$(resolve "$host")"
  [ -n "$ip" ] || return 2
  answer="$(printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" | timeout 2 nc -w 2 "$ip" "$port" 2>/dev/null)" || return 2
  [ -n "$answer" ] || return 2
  case "$(printf %s "$answer" | head -1)" in
    "HTTP/1."?" 2"*) printf %s "$answer" | sed '1,/^\r*$/d' ;;
    *) return 1 ;;
  esac
}
read -r method path proto
HEADERS=""
while read -r line; do
  line="$(printf %s "$line" | tr -d '\r')"
  [ -z "$line" ] && break
  HEADERS="$HEADERS$line
"
done
. /srv/routes.sh
route "${path%%\?*}"
