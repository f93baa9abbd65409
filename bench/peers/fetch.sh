#!/usr/bin/env bash
# Makes the benchmark's peers and load generator available without root and without touching the
# system's apt setup: Debian bookworm's haproxy, nginx and wrk are downloaded with a private sources
# list and unpacked into .cache/bench/ (as integration/registries/fetch.sh does for the registries).
# Shared libraries those binaries need and the machine lacks (liblua5.3, libluajit...) are fetched
# the same way, following the packages' Depends one level at a time, and reached through
# LD_LIBRARY_PATH in small wrappers in .cache/bench/bin, which `exec` the real binary (so the pid the
# harness measures is the binary's own). Binaries named by HAPROXY_BIN / NGINX_BIN / WRK_BIN, or
# already on PATH, are used instead. Prints `name=path` for the three.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache="$root/.cache/bench"
mkdir -p "$cache/bin"

find_bin() { # name env-value -> path or empty
  local name=$1 env=$2
  if [ -n "$env" ]; then echo "$env"; return; fi
  command -v "$name" 2>/dev/null && return
  [ -x "/usr/sbin/$name" ] && { echo "/usr/sbin/$name"; return; }
  [ -x "$cache/bin/$name" ] && { echo "$cache/bin/$name"; return; }
  true
}
haproxy=$(find_bin haproxy "${HAPROXY_BIN:-}")
nginx=$(find_bin nginx "${NGINX_BIN:-}")
wrk=$(find_bin wrk "${WRK_BIN:-}")

need=()
[ -n "$haproxy" ] || need+=(haproxy)
[ -n "$nginx" ] || need+=(nginx)
[ -n "$wrk" ] || need+=(wrk)

if [ ${#need[@]} -gt 0 ]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial" "$cache/debs" "$cache/root"
  printf 'deb [signed-by=%s] %s bookworm main\n' "$keyring" "$mirror" > "$cache/apt/sources.list"
  opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$cache/apt/lists" -o "Dir::Cache=$cache/apt/cache" -o Debug::NoLocking=1
        -o APT::Sandbox::User=root -o Acquire::Retries=3)
  echo "fetching ${need[*]} from $mirror (bookworm)" >&2
  apt-get "${opts[@]}" -qq update >&2

  # The packages plus the library packages they depend on (first alternative, transitively) that are
  # not installed on this machine. Only lib* packages are followed: the rest (adduser, iproute2,
  # nginx-common...) are maintainer-script and config concerns the benchmark does not need.
  declare -A seen=()
  queue=("${need[@]}")
  fetch=()
  while [ ${#queue[@]} -gt 0 ]; do
    pkg=${queue[0]}; queue=("${queue[@]:1}")
    [ -z "${seen[$pkg]:-}" ] || continue
    seen[$pkg]=1
    fetch+=("$pkg")
    deps=$(apt-cache "${opts[@]}" show --no-all-versions "$pkg" | sed -n 's/^Depends: //p' | tr ',' '\n' \
             | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/[[:space:]]//g')
    for dep in $deps; do
      case "$dep" in lib*) ;; *) continue ;; esac
      if dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed'; then continue; fi
      queue+=("$dep")
    done
  done
  echo "downloading ${fetch[*]}" >&2
  (cd "$cache/debs" && apt-get "${opts[@]}" -qq download "${fetch[@]}" >&2)
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done

  libpath="$cache/root/usr/lib/x86_64-linux-gnu:$cache/root/lib/x86_64-linux-gnu:$cache/root/usr/lib"
  wrap() { # name real-path
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' "$libpath" "$2" > "$cache/bin/$1"
    chmod +x "$cache/bin/$1"
    if LD_LIBRARY_PATH="$libpath" ldd "$2" | grep -q 'not found'; then
      echo "$1: shared libraries still missing:" >&2
      LD_LIBRARY_PATH="$libpath" ldd "$2" | grep 'not found' >&2
      exit 1
    fi
  }
  [ -n "$haproxy" ] || { wrap haproxy "$cache/root/usr/sbin/haproxy"; haproxy="$cache/bin/haproxy"; }
  [ -n "$nginx" ] || { wrap nginx "$cache/root/usr/sbin/nginx"; nginx="$cache/bin/nginx"; }
  [ -n "$wrk" ] || { wrap wrk "$cache/root/usr/bin/wrk"; wrk="$cache/bin/wrk"; }
fi

"$haproxy" -v | sed -n 1p >&2
"$nginx" -v 2>&1 | sed -n 1p >&2
"$wrk" -v 2>&1 | sed -n 1p >&2 || true
printf 'haproxy=%s\nnginx=%s\nwrk=%s\n' "$haproxy" "$nginx" "$wrk"
