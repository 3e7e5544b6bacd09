#!/usr/bin/env bash
# Make a Docker engine available and build the workspace image, offline if need be.
#
# Idempotent and cached: when the engine answers and the image carries the label of the
# current recipe, the whole script costs about a second. Exits non-zero, loudly, when
# Docker cannot be made available: nothing downstream may pass by skipping Docker.
#
# Environment:
#   QUADRACODE_WORKSPACE_IMAGE   tag to build (default quadracode-workspace:latest)
#   QUADRACODE_WORKSPACE_BASE    base image for Dockerfile.workspace; when unset an offline
#                                base is made with debootstrap (default for this script)
#   QUADRACODE_CACHE_DIR         where the debootstrap tarball is cached
#   DEBIAN_MIRROR                mirror for debootstrap (default: the one apt uses, else deb.debian.org)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
image=${QUADRACODE_WORKSPACE_IMAGE:-quadracode-workspace:latest}
base_tag=quadracode-workspace-base:bookworm
cache_dir=${QUADRACODE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quadracode-ray}
base_packages="bash,coreutils,python3,git,ca-certificates,procps,tini,findutils,tar,gzip,less"
log() { printf '[provision-docker] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

ensure_engine() {
  if command -v docker >/dev/null && engine_answers; then
    log "Docker engine answers"
    return
  fi
  if ! command -v dockerd >/dev/null; then
    log "installing Debian's docker.io"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    as_root systemctl start docker || true
  fi
  if ! engine_answers; then
    mkdir -p "$cache_dir"
    log "starting dockerd (log: $cache_dir/dockerd.log)"
    as_root setsid nohup dockerd >"$cache_dir/dockerd.log" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    engine_answers && { log "Docker engine answers"; return; }
    sleep 1
  done
  tail -n 30 "$cache_dir/dockerd.log" >&2 2>/dev/null || true
  die "the Docker engine did not answer within 60 s"
}

label_of() { docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE 'https?://[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

ensure_offline_base() {
  local recipe="debootstrap-minbase-bookworm:$base_packages"
  if [ "$(label_of "$base_tag" io.quadracode.base-recipe)" = "$recipe" ]; then
    log "base image $base_tag is current"
    return
  fi
  local tarball="$cache_dir/base-bookworm-$(printf '%s' "$recipe" | sha256sum | cut -c1-16).tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    local root; root=$(mktemp -d)
    log "debootstrap bookworm into $root (one time, about a minute)"
    as_root debootstrap --variant=minbase --include="$base_packages" bookworm "$root" "$(debian_mirror)" >"$cache_dir/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache_dir/debootstrap.log" >&2; die "debootstrap failed"; }
    as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    mkdir -p "$cache_dir"
    as_root tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    as_root rm -rf "$root"
  fi
  log "importing $tarball as $base_tag"
  docker import --change "LABEL io.quadracode.base-recipe=$recipe" --change 'CMD ["/bin/bash"]' \
    "$tarball" "$base_tag" >/dev/null
}

ensure_workspace_image() {
  local base=${QUADRACODE_WORKSPACE_BASE:-$base_tag}
  local recipe
  recipe=$( { cat "$here/Dockerfile.workspace"; echo "$base"; } | sha256sum | cut -c1-16)
  if [ "$(label_of "$image" io.quadracode.recipe)" = "$recipe" ]; then
    log "workspace image $image is current (recipe $recipe)"
    return
  fi
  [ -n "${QUADRACODE_WORKSPACE_BASE:-}" ] || ensure_offline_base
  log "building $image on $base"
  # No build context: the image needs nothing from the repository (the container server is
  # copied into each container when it is created).
  DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=$base" \
    --label "io.quadracode.recipe=$recipe" -t "$image" - <"$here/Dockerfile.workspace" >/dev/null
  log "built $image"
}

mkdir -p "$cache_dir"
ensure_engine
ensure_workspace_image
