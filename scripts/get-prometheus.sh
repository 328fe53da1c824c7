#!/usr/bin/env bash
# Installs the reference Prometheus (3.5, the semantics Strata follows) into
# DIR (default: .cache/prometheus under the repository) and prints the
# binary's path. Debian's unstable archive carries Prometheus 3.5; its Go
# binary is static and runs on Debian stable, so the .deb is fetched with
# apt from this machine's configured mirror and unpacked, without
# installing anything system-wide. If that fails, Debian stable's
# `prometheus` package is installed instead (older, 2.x).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.cache/prometheus}
if [ -x "$dest/prometheus" ]; then
  echo "$dest/prometheus"
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $1}')
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi

fetch_unstable() {
  [ -n "$mirror" ] || return 1
  mkdir -p "$tmp/state/lists/partial" "$tmp/cache/archives/partial"
  echo "deb $mirror sid main" > "$tmp/sid.list"
  local opts=(-o "Dir::Etc::SourceList=$tmp/sid.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$tmp/state/lists" -o "Dir::Cache=$tmp/cache"
              -o APT::Sandbox::User=root -qq)
  apt-get "${opts[@]}" update >/dev/null 2>&1 || return 1
  (cd "$tmp" && apt-get "${opts[@]}" download prometheus >/dev/null 2>&1) || return 1
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/unpacked" || return 1
  cp "$tmp/unpacked/usr/bin/prometheus" "$dest/prometheus"
}

if ! fetch_unstable; then
  echo "get-prometheus: Prometheus 3.5 from Debian unstable unavailable, installing Debian's package" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  ln -sf "$(command -v prometheus)" "$dest/prometheus"
fi
echo "$dest/prometheus"
