#!/usr/bin/env bash
# Set up everything on a fresh machine, idempotently, saying what it does (one
# line per step; nothing when everything is there already):
#   - Debian packages, when missing (installed with apt-get as root; otherwise
#     the command to run is printed): etcd-server (the tests start their own
#     etcd; a local etcd to read), etcd-client (the README's etcdctl lines),
#     nats-server (the delivery tests), python3-venv (to make the virtualenv),
#     gcc and python3-dev (to build the codec's C decoder);
#   - a virtualenv in .venv with the package (editable) and its test extras,
#     reinstalled when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup: $*"; }
# The venv is reinstalled when what the install reads changes: the metadata, setup.py, the C source.
stamp=.venv/.installed-$(cat pyproject.toml setup.py tattler_etcd/*.c tattler_etcd/codec/*.c 2>/dev/null | sha1sum | cut -c1-12)
if [ "${1:-}" = "--stamp" ]; then  # for tests that prepare a .venv themselves
  echo "$stamp"
  exit 0
fi
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }

missing=()
have etcd || missing+=(etcd-server)
have etcdctl || missing+=(etcd-client)
have nats-server || missing+=(nats-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The codec's optional C decoder (setup.py) is built at install where a compiler and
# Python's headers are; CI requires it.
have gcc || missing+=(gcc)
python3 -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
  >/dev/null 2>&1 || missing+=(python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} (apt-get)"
    # The packaged etcd service does not start by itself in a container, and we
    # never want it to: tests start their own etcd on free loopback ports.
    log=$(mktemp)
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      say "apt-get failed (above)"
      exit 1
    fi
    rm -f "$log"
  else
    say "missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ]; then
  say "installing tattler-etcd (editable) and its test extras into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
  say "ready: .venv/bin/tattler-etcd"
fi
