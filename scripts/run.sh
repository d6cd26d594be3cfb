#!/usr/bin/env bash
# The main job: set up, prepare MovieLens-100K and print the baselines, then train the default
# four-stage UR4Rec on ml-100k-liked (about 6 minutes on 2 cores; an interrupted run resumes),
# print its stage table, write its REPORT.md and show a recommendation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ur4rec quickstart
run=${UR4REC_MAIN_RUN:-runs/main-ur4rec-ml-100k-liked}
if [ -f "$run/config.yaml" ]; then
  .venv/bin/ur4rec train --resume "$run"
else
  .venv/bin/ur4rec train --config configs/ur4rec-ml-100k-liked.yaml --out "$run"
fi
.venv/bin/ur4rec report "$run"
.venv/bin/ur4rec recommend "$run" --user 1 -k 5
