#!/usr/bin/env bash
# The main job: make the busybox image from Debian's busybox-static, start berthd if none
# answers, load the image, and run a container from it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SOCK=${BERTH_SOCK:-/run/berth/berth.sock}
export BERTH_HOST=unix://$SOCK

images=$($BIN/python -m tests.support.images /var/tmp/berth-images)
busybox_tar=$(printf '%s\n' "$images" | awk '/busybox_docker_tar/ {print $2}')

if ! $BIN/berth version >/dev/null 2>&1; then
  echo "starting berthd (log: /var/log/berthd.log)"
  mkdir -p "$(dirname "$SOCK")"
  nohup setsid $BIN/berthd -H "$BERTH_HOST" >>/var/log/berthd.log 2>&1 </dev/null &
  for _ in $(seq 1 100); do $BIN/berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi

$BIN/berth load -i "$busybox_tar"
$BIN/berth images
$BIN/berth run --rm busybox sh -c 'echo "hello from $(hostname), pid $$, as $(id -un)"'
