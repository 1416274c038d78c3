#!/bin/sh
# The seed's `docker stats`, one reading of every running container of a compose
# project: prints the largest CPU share or memory use and whose it is.
# Usage: scripts/container-stats.sh cpu|memory PROJECT
#   cpu     "max cpu 97.31% (tradeul_analytics_1)"
#   memory  "max memory 2.1 MB (tradeul_redis_1)"
set -eu
what=$1 project=$2
ids=$(docker ps -q --filter "label=com.docker.compose.project=$project")
[ -n "$ids" ] || { echo "no running container of project $project" >&2; exit 1; }
# shellcheck disable=SC2086 # one argument per container id
docker stats --no-stream --format '{{.Name}} {{.CPUPerc}} {{.MemUsage}}' $ids | awk -v what="$what" '
  function mb(v,   n) {
    n = v + 0
    if (v ~ /GiB$/) return n * 1024 * 1.048576
    if (v ~ /MiB$/) return n * 1.048576
    if (v ~ /KiB$/) return n / 1024 * 1.048576
    if (v ~ /kB$/) return n / 1000
    if (v ~ /MB$/) return n
    if (v ~ /GB$/) return n * 1000
    return n / 1000000
  }
  { cpu = $2 + 0; mem = mb($3)
    if (what == "cpu" && (best == "" || cpu > best)) { best = cpu; who = $1 }
    if (what == "memory" && (best == "" || mem > best)) { best = mem; who = $1 } }
  END {
    if (what == "cpu") printf "max cpu %.2f%% (%s)\n", best, who
    else printf "max memory %.1f MB (%s)\n", best, who
  }'
