#!/usr/bin/env bash
# The main job: set up, prepare MovieLens-100K, print the results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ur4rec quickstart "$@"
