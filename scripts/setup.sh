#!/usr/bin/env bash
# Set up everything on a fresh machine, idempotently: etcd (for the tests and
# for running against a local etcd) and a virtualenv in .venv with the package
# and its test extras. Safe to run again; fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v etcd >/dev/null 2>&1 && [ ! -x /usr/bin/etcd ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
  else
    echo "setup: etcd is missing; install it with: sudo apt-get install -y etcd-server" >&2
  fi
fi
# The packaged service does not start by itself in a container, and we never
# want it to: tests start their own etcd on free loopback ports.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
