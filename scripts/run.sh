#!/usr/bin/env bash
# The main job: set up if needed, then `tattler-etcd run` with your arguments.
# With no source it replays the bundled recording and prints JSON lines.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/setup.sh" >&2
exec "$here/.venv/bin/tattler-etcd" run "$@"
