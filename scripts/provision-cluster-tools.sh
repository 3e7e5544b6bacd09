#!/usr/bin/env bash
# Install what `ray up cluster.yaml` and its tests need beyond Python and Docker, from Debian:
# the OpenSSH client and server binaries and rsync (the cluster launcher reaches every node over
# ssh and copies files with rsync), and Prometheus (scrapes the cluster through Ray's
# service-discovery file; tests/cluster/test_ray_up.py runs it).
#
# Idempotent: when every tool is present it costs nothing. Installs the packages without
# starting their services (policy-rc.d), so no sshd or Prometheus starts listening on this
# machine behind anybody's back; start them yourself (see README, "A cluster").
set -euo pipefail
log() { printf '[provision-cluster-tools] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else log "ERROR: need root for: $*"; exit 1; fi; }

missing=()
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v rsync >/dev/null || missing+=(rsync)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} = 0 ]; then
  log "ssh, sshd, rsync and prometheus are installed"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
  as_root chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then as_root rm -f "$policy"; fi; }
trap cleanup EXIT

log "installing ${missing[*]}"
as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
  --no-install-recommends "${missing[@]}" >/dev/null
log "installed ${missing[*]}"
