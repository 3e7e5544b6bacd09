#!/usr/bin/env bash
# Make Debian's Chromium available for the control panel's browser tests (Playwright drives
# it through executable_path; Playwright's own browser downloads are not used).
#
# Idempotent: when the browser runs, the script costs well under a second.
#
# Environment:
#   QUADRACODE_CHROMIUM   path of the browser (default /usr/bin/chromium)
set -euo pipefail

browser=${QUADRACODE_CHROMIUM:-/usr/bin/chromium}
log() { printf '[provision-browser] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

browser_runs() { timeout 30 "$browser" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1; }

if [ -x "$browser" ] && browser_runs; then
  log "Chromium is installed ($browser)"
  exit 0
fi
log "installing Debian's chromium"
as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
browser_runs || die "$browser does not run after installation"
log "Chromium is installed ($browser)"
