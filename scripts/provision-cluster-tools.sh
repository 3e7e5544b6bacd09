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

missing=()
command -v ssh >/dev/null || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v rsync >/dev/null || missing+=(rsync)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} = 0 ]; then
  log "ssh, sshd, rsync and prometheus are installed"
  exit 0
fi

log "installing ${missing[*]}"
bash "$(dirname "$0")/apt-install-no-services.sh" "${missing[@]}"
log "installed ${missing[*]}"
