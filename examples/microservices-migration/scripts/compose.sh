#!/bin/sh
# `docker compose` (the plugin) when it is there, else `docker-compose`; the
# project name from COMPOSE_PROJECT_NAME, as the plan's steps set it.
# Usage: scripts/compose.sh up -d --build
if docker compose version >/dev/null 2>&1; then exec docker compose "$@"; fi
exec docker-compose "$@"
