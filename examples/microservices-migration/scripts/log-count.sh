#!/bin/sh
# The seed's "Ver errores": `docker-compose logs --since 5m | grep -i error`, as a
# number: how many lines of the logs in the last SINCE match PATTERN, ignoring
# case. `all`: every container of the project, stopped ones included, as
# `docker-compose logs` shows them; SERVICE: that service's running container
# (a service that was stopped is not failing now).
# Usage: scripts/log-count.sh SERVICE|all SINCE PATTERN PROJECT
#   "3 line(s) match 'rate limit' since 1m"
set -u
service=$1 since=$2 pattern=$3 project=$4
filter="label=com.docker.compose.project=$project"
if [ "$service" = all ]; then which=-a; else filter2="label=com.docker.compose.service=$service"; fi
n=0
for id in $(docker ps ${which:-} -q --filter "$filter" ${filter2:+--filter "$filter2"}); do
  k=$(docker logs --since "$since" "$id" 2>&1 | grep -ci -- "$pattern")
  n=$((n + ${k:-0}))
done
echo "$n line(s) match '$pattern' since $since"
