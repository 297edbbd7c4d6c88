#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian 12 machine, as root: the kernel-facing tools from
# Debian's packages and a virtualenv in .venv with berth and its test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="umoci skopeo busybox-static crun runc docker-registry iptables nftables iproute2 tmux \
  tini git ca-certificates openssl sqlite3 curl"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  # no init system here: keep package scripts from starting services
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q $missing
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
# a pyenv shim would add its own start-up cost to every berth command: use the real interpreter
PY=$("$PY" -c 'import sys; print(sys.executable)')
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
# Byte-compile now: with PYTHONDONTWRITEBYTECODE set (as in CI and these machines) nothing
# would ever write a .pyc, and every berth command would recompile its modules (~35 ms).
# The .pyc files check the sources' mtimes, so an edited module is simply compiled in memory.
.venv/bin/python -m compileall -q -j 0 src "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
