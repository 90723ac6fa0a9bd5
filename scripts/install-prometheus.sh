#!/usr/bin/env bash
# Debian's Prometheus server and promtool, for the alert-rule and monitoring tests (tests/monitoring/).
# Idempotent and quiet: does nothing when both are installed. The package's service is not started by
# us; the tests run their own `prometheus` process on a free port with a config they write.
set -euo pipefail

command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: no apt-get; install Prometheus 2.x (prometheus + promtool) by hand" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

install() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}
# A fresh machine may have stale or empty package lists: refresh them only when the install needs it.
install 2>/dev/null || { $sudo apt-get update -qq >/dev/null && install; }
