# Helpers every service sources: the project's DNS and its Redis cache.
# (Busybox's own resolver and nc: a static glibc's wget cannot resolve names.)

# The IP of a service of the compose project, from Docker's DNS.
resolve() {
  nslookup "$1" 127.0.0.11 2>/dev/null | sed -n 's/^Address: //p' | tail -1
}

# redis CMD [ARG...]: one command to the `redis` service (RESP over nc, then
# QUIT so the server closes the connection). Prints the reply's value; exit 2
# when the cache cannot be reached (tried twice: on a loaded machine a DNS
# answer or a connection can miss its 2 s once), 1 for a nil or an error reply.
redis() {
  redis_once "$@"
  rc=$?
  [ "$rc" -eq 2 ] || return "$rc"
  redis_once "$@"
}
redis_once() {
  ip="$(resolve redis)"
  [ -n "$ip" ] || return 2
  reply="$({
    printf '*%d\r\n' "$#"
    for a in "$@"; do printf '$%d\r\n%s\r\n' "${#a}" "$a"; done
    printf '*1\r\n$4\r\nQUIT\r\n'
  } | timeout 2 nc -w 2 "$ip" 6379 2>/dev/null)" || return 2
  [ -n "$reply" ] || return 2
  first="$(printf %s "$reply" | head -1 | tr -d '\r')"
  case "$first" in
    '$-1' | -*) return 1 ;;
    '$'*) printf %s "$reply" | sed -n 2p | tr -d '\r' ;;
    +* | :*) printf %s "${first#?}" ;;
    *) return 1 ;;
  esac
}
