#!/bin/sh
# What the images are built from, all from this machine (no registry: every
# image is FROM scratch):
#   bin/busybox              the static busybox of the services (Debian: busybox-static)
#   services/redis/root/     redis-server and the shared libraries it links (ldd),
#                            laid out as a root file system (Debian: redis-server)
set -eu
cd "$(dirname "$0")/.."
mkdir -p bin
cp "${BUSYBOX:-/bin/busybox}" bin/busybox
server="$(command -v redis-server)"
root=services/redis/root
rm -rf "$root"
mkdir -p "$root/usr/bin"
cp -L "$server" "$root/usr/bin/redis-server"
ldd "$server" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
