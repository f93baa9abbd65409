#!/usr/bin/env bash
# Makes real Consul and etcd binaries available to the integration tests, without root and without
# touching the system's apt setup: Debian's own packages (consul from bullseye, etcd-server from
# trixie) are downloaded with a private sources list and unpacked into .cache/registries/.
# Binaries named by CONSUL_BIN / ETCD_BIN, or already on PATH, are used instead. Prints the two paths.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache/registries"
mkdir -p "$cache/bin"

need=()
consul=${CONSUL_BIN:-$(command -v consul || true)}
etcd=${ETCD_BIN:-$(command -v etcd || true)}
[ -n "$consul" ] || { [ -x "$cache/bin/consul" ] && consul="$cache/bin/consul"; } || need+=(consul/bullseye)
[ -n "$etcd" ] || { [ -x "$cache/bin/etcd" ] && etcd="$cache/bin/etcd"; } || need+=(etcd-server/trixie)

if [ ${#need[@]} -gt 0 ]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$cache/root"
  printf 'deb [signed-by=%s] %s bullseye main\ndeb [signed-by=%s] %s trixie main\n' "$keyring" "$mirror" "$keyring" "$mirror" > "$cache/apt/sources.list"
  opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1
        -o APT::Sandbox::User=root -o Acquire::Retries=3)
  echo "fetching ${need[*]} from $mirror" >&2
  apt-get "${opts[@]}" -qq update >&2
  (cd "$cache/debs" && apt-get "${opts[@]}" -qq download "${need[@]}" >&2)
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done
  [ -n "$consul" ] || { ln -sf "$cache/root/usr/bin/consul" "$cache/bin/consul"; consul="$cache/bin/consul"; }
  [ -n "$etcd" ] || { ln -sf "$cache/root/usr/bin/etcd" "$cache/bin/etcd"; etcd="$cache/bin/etcd"; }
fi

"$consul" version | sed -n 1p >&2
"$etcd" --version | sed -n 1p >&2
printf '%s\n%s\n' "$consul" "$etcd"
