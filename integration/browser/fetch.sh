#!/usr/bin/env bash
# Makes a headless Chromium available to the status page test and prints its path on stdout.
# Order: $CHROMIUM_BIN, `chromium` on PATH, /usr/bin/chromium; otherwise Debian's `chromium` package is
# installed with apt-get (non-interactive; needs root). Chromium needs shared libraries from its
# dependencies, so unlike Consul/etcd it cannot simply be unpacked into .cache/. Idempotent: a second
# run finds the binary and installs nothing. Everything but the path goes to stderr.
set -euo pipefail

found() {
  "$1" --version >&2 || { echo "browser/fetch.sh: $1 is there but does not run" >&2; exit 1; }
  printf '%s\n' "$1"
  exit 0
}

if [ -n "${CHROMIUM_BIN:-}" ]; then
  [ -x "$CHROMIUM_BIN" ] || { echo "browser/fetch.sh: CHROMIUM_BIN=$CHROMIUM_BIN is not an executable file" >&2; exit 1; }
  found "$CHROMIUM_BIN"
fi
on_path=$(command -v chromium || true)
[ -n "$on_path" ] && found "$on_path"
[ -x /usr/bin/chromium ] && found /usr/bin/chromium

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<'MSG'
browser/fetch.sh: no Chromium found and not running as root, so it cannot be installed here.
Install Debian's chromium package (sudo apt-get install --no-install-recommends chromium),
or point CHROMIUM_BIN at a Chromium or Chrome binary, then run the tests again.
MSG
  exit 1
fi
command -v apt-get > /dev/null || { echo "browser/fetch.sh: no Chromium and no apt-get; install Chromium and set CHROMIUM_BIN" >&2; exit 1; }

echo "browser/fetch.sh: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300 -qq update >&2
apt-get -o Acquire::Retries=3 -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -qq install -y --no-install-recommends chromium < /dev/null >&2
[ -x /usr/bin/chromium ] || { echo "browser/fetch.sh: apt-get installed chromium but /usr/bin/chromium is missing" >&2; exit 1; }
found /usr/bin/chromium
