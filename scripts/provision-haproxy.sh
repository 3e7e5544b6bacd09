#!/usr/bin/env bash
# Install HAProxy from Debian: Ray Serve's HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1, the API's
# `serve_ingress = "haproxy"` setting) runs it in place of Serve's Python HTTP proxy, and
# finds it on PATH. Installed without starting Debian's own haproxy service (policy-rc.d): Ray
# starts its own haproxy process per cluster.
#
# Idempotent: when haproxy is present it costs nothing.
set -euo pipefail
log() { printf '[provision-haproxy] %s\n' "$*" >&2; }

if command -v haproxy >/dev/null; then
  log "haproxy is installed ($(haproxy -v 2>/dev/null | head -1))"
  exit 0
fi

log "installing haproxy"
bash "$(dirname "$0")/apt-install-no-services.sh" haproxy
log "installed $(haproxy -v | head -1)"
