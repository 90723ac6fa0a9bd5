#!/usr/bin/env bash
# System packages the test suite needs beyond Python, from Debian: Dovecot (a real POP3/IMAP server for the
# mailbox scanner tests), Prometheus and promtool (the alert-rule and monitoring tests), and npm if the
# machine has none (scripts/install-helm.sh fetches the real helm from the npm registry with it).
# Idempotent and quiet: installs only what is missing, and does nothing when everything is there. The
# packages' own services are not started by us; the tests run their own servers on free ports.
set -euo pipefail

missing=()
[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ] && [ -x /usr/lib/dovecot/imap ] \
    || missing+=(dovecot-pop3d dovecot-imapd)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get; install by hand: ${missing[*]} (Dovecot 2.3, Prometheus 2.x)" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

install() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# A fresh machine may have stale or empty package lists: refresh them only when the install needs it.
install 2>/dev/null || { $sudo apt-get update -qq >/dev/null && install; }
