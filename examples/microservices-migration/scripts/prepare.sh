#!/bin/sh
# Puts the static busybox every image is built from into bin/ (no registry is
# needed: the images are FROM scratch). Debian: apt-get install busybox-static.
set -eu
cd "$(dirname "$0")/.."
mkdir -p bin
cp "${BUSYBOX:-/bin/busybox}" bin/busybox
