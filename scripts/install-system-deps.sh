#!/usr/bin/env bash
# System packages the test suite needs beyond Python: Dovecot (a real POP3/IMAP server for the mailbox
# scanner tests). Idempotent and quiet: does nothing when Dovecot's POP3 and IMAP servers are installed.
set -euo pipefail

[ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/pop3 ] && [ -x /usr/lib/dovecot/imap ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: no apt-get; install Dovecot 2.3 (POP3 + IMAP) by hand" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

install() {
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        dovecot-pop3d dovecot-imapd >/dev/null
}
# A fresh machine may have stale or empty package lists: refresh them only when the install needs it.
install 2>/dev/null || { $sudo apt-get update -qq >/dev/null && install; }
