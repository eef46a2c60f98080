#!/usr/bin/env bash
# Container smoke test: build the image, start it, send real requests, check the answers.
#
#   scripts/container_smoke.sh            # docker if a daemon answers, else podman
#   ENGINE=podman BASE_IMAGE=python:3.11-slim scripts/container_smoke.sh
#
# Without a working engine it prints "SKIPPED: ..." and exits 0. Where no registry is
# reachable and BASE_IMAGE is not given, a Debian bookworm base image is made locally with
# debootstrap (root only) and the Python packages are installed from a wheelhouse built on
# the host (build/wheels), so the build needs no network inside the container.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
TAG=${TAG:-skysort:smoke}
PORT=${PORT:-3999}
PYTHON=${PYTHON:-.venv/bin/python}
log() { printf '[smoke %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

pick_engine() {
  if [ -n "${ENGINE:-}" ]; then echo "$ENGINE"; return; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; return; fi
  if command -v podman >/dev/null && podman info >/dev/null 2>&1; then echo podman; return; fi
  echo none
}

# podman as root on hosts like the CI machines needs runc and generous ulimits
if command -v podman >/dev/null && command -v runc >/dev/null && [ -z "${CONTAINERS_CONF:-}" ]; then
  mkdir -p build
  printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n[engine]\nruntime = "runc"\n' \
    > build/containers.conf
  export CONTAINERS_CONF=$REPO/build/containers.conf
fi

ENGINE=$(pick_engine)
if [ "$ENGINE" = none ]; then
  echo "SKIPPED: no container engine (docker daemon or podman) is available"
  exit 0
fi
log "engine: $ENGINE"

BUILD_ARGS=()
if [ -z "${BASE_IMAGE:-}" ]; then
  if timeout 60 "$ENGINE" pull -q python:3.11-slim >/dev/null 2>&1; then
    BASE_IMAGE=python:3.11-slim
  elif "$ENGINE" image exists skysort-base:bookworm 2>/dev/null \
      || "$ENGINE" image inspect skysort-base:bookworm >/dev/null 2>&1; then
    BASE_IMAGE=skysort-base:bookworm
  elif command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ]; then
    log "no registry: making skysort-base:bookworm with debootstrap"
    ROOTFS=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$ROOTFS" >/dev/null
    tar -C "$ROOTFS" -c . | "$ENGINE" import - skysort-base:bookworm >/dev/null
    rm -rf "$ROOTFS"
    BASE_IMAGE=skysort-base:bookworm
  else
    echo "SKIPPED: no base image (registry unreachable, no debootstrap as root)"
    exit 0
  fi
fi
BUILD_ARGS+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
if [ "${WHEELS:-auto}" = 1 ] || { [ "${WHEELS:-auto}" = auto ] && [ "$BASE_IMAGE" = skysort-base:bookworm ]; }; then
  log "building the wheelhouse on the host (build/wheels)"
  "$PYTHON" -m pip wheel --quiet . -w build/wheels
  BUILD_ARGS+=(--build-arg WHEELS=1)
fi

log "building $TAG from $BASE_IMAGE"
started=$(date +%s)
FORMAT=()
[ "$ENGINE" = podman ] && FORMAT=(--format docker)  # OCI images drop HEALTHCHECK
"$ENGINE" build "${FORMAT[@]}" "${BUILD_ARGS[@]}" -t "$TAG" .
log "image built in $(( $(date +%s) - started )) s; size: $("$ENGINE" image inspect "$TAG" --format '{{.Size}}') bytes"

NAME=skysort-smoke-$$
"$ENGINE" run -d --rm --name "$NAME" -p "127.0.0.1:$PORT:3000" "$TAG" >/dev/null
trap '"$ENGINE" logs "$NAME" 2>&1 | tail -20; "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
BASE=http://127.0.0.1:$PORT
started=$(date +%s)
until curl -sf "$BASE/readyz" >/dev/null; do
  if (( $(date +%s) - started > 300 )); then log "not ready after 300 s"; exit 1; fi
  sleep 2
done
log "ready in $(( $(date +%s) - started )) s"

fail() { log "FAIL: $*"; exit 1; }
# expect PATTERN CURL-ARGS...: the answer (status < 400) must contain PATTERN
expect() {
  local pattern=$1 out
  shift
  out=$(curl -sf "$@") || fail "curl $* failed"
  [[ $out == *"$pattern"* ]] || fail "curl $*: no '$pattern' in ${out:0:300}"
  log "ok: ${out:0:160}"
}
[ "$("$ENGINE" exec "$NAME" id -u)" != 0 ] || fail "the service runs as root"
SPECTRUM=$(find data/lamost -name '*.fits' | sort | sed -n 1p)
IMAGE=$(find data/galaxy/images -name '*.jpeg' | sort | sed -n 1p)
expect '"stellar-' -F "file=@$SPECTRUM" "$BASE/classify_spectrum"
expect '"galaxy-' -F "file=@$IMAGE" "$BASE/classify_galaxy"
expect '"galaxy-' -F "files=@$SPECTRUM" -F "files=@$IMAGE" "$BASE/classify_batch"
# a tar of 40 spectra: large enough for the batch-preparation processes
NIGHT=$(mktemp -d)
find data/lamost -name '*.fits' | sort | head -40 | tar -cf "$NIGHT/night.tar" -T -
out=$(curl -sf -F "files=@$NIGHT/night.tar" "$BASE/classify_batch") || fail "tar batch failed"
rm -rf "$NIGHT"
[ "$(grep -o '"label"' <<<"$out" | wc -l)" = 40 ] || fail "tar batch: not 40 labels: ${out:0:300}"
log "ok: a tar of 40 spectra gave 40 labels"
code=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$IMAGE" "$BASE/classify_spectrum")
[ "$code" = 422 ] || fail "an image sent to /classify_spectrum gave $code, not 422"
log "ok: an image sent to /classify_spectrum gave 422"
if [ -d bundles/halpha ]; then
  HALPHA=$(find data/ondrejov -name '*.fits' | sort | sed -n 1p)
  expect '"halpha-' -F "file=@$HALPHA" "$BASE/classify_halpha"
fi
if [ -d bundles/gan ]; then
  expect '"gan-' -H 'Content-Type: application/json' -d '{"n": 2, "seed": 1}' \
    "$BASE/generate_spectra"
fi
expect '"bundle_id"' "$BASE/models"
expect 'skysort_requests_total' "$BASE/metrics"
if [ "$ENGINE" = podman ]; then
  "$ENGINE" healthcheck run "$NAME" && log "ok: HEALTHCHECK passes" || fail "HEALTHCHECK"
fi
log "PASSED: the container answers every endpoint"
