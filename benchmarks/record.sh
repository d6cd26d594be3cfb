#!/usr/bin/env bash
# Every benchmark behind docs/results.md, then the document itself (about 210 minutes on 2
# cores). Stored runs of the current code and the same config are reused, anything else is
# trained again (benchmarks/reuse.py), so a rerun after a code change updates every row.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
Q=runs/ur4rec-quality/ml-100k-liked
OUT=docs/results/comparisons.jsonl
$PY benchmarks/baselines.py
$PY benchmarks/ur4rec_quality.py --seeds 42,43,44 --parallel 2 --threads 1 \
  --variants "default,SASRec and EASE prior without the retriever,no EASE prior"
$PY benchmarks/ur4rec_quality.py --seeds 42,43,44 --parallel 2 --threads 1 --variants "LLM item \
texts,LLM item texts pretrained retriever calibrated with the prior,LLM item texts SASRec and \
EASE prior without the retriever"
$PY benchmarks/backbones.py --seeds 42,43,44 --parallel 2 --threads 1 --configs \
  ur4rec-ml-100k-liked,ur4rec-gru4rec-ml-100k-liked,sasrec-ml-100k-liked,gru4rec-ml-100k-liked,sasrec-ml-100k,gru4rec-ml-100k
$PY benchmarks/text_in_sasrec.py --seeds 42-44 --parallel 2 --threads 1
$PY benchmarks/compare_runs.py --a "$Q-default-s{seed}" --label-a "UR4Rec (default)" \
  --b "runs/text-in-sasrec/SASRec_alone-s{seed}" --label-b "SASRec alone" --seeds 42-44 --results $OUT
$PY benchmarks/compare_runs.py --a "$Q-default-s{seed}" --label-a "UR4Rec (default)" \
  --b "$Q-SASRec_and_EASE_prior_without_the_retriever-s{seed}" \
  --label-b "SASRec + EASE prior, no retriever" --seeds 42-44 --results $OUT
$PY benchmarks/compare_runs.py --a "$Q-default-s{seed}" --label-a "UR4Rec (default)" \
  --b "$Q-no_EASE_prior-s{seed}" --label-b "UR4Rec without the EASE prior" --seeds 42-44 --results $OUT
LLM=$Q-LLM_item_texts
$PY benchmarks/compare_runs.py --a "${LLM}_pretrained_retriever_calibrated_with_the_prior-s{seed}" \
  --label-a "UR4Rec, LLM item texts (pretrained, calibrated with the prior)" \
  --b "${LLM}_SASRec_and_EASE_prior_without_the_retriever-s{seed}" \
  --label-b "SASRec (LLM item texts) + EASE prior, no retriever" --seeds 42-44 --results $OUT
$PY benchmarks/compare_runs.py --a "${LLM}_pretrained_retriever_calibrated_with_the_prior-s{seed}" \
  --label-a "UR4Rec, LLM item texts (pretrained, calibrated with the prior)" \
  --b "$Q-default-s{seed}" --label-b "UR4Rec (default)" --seeds 42-44 --results $OUT
$PY benchmarks/ensemble_check.py
# New items, rare items and short histories, by group (about 75 minutes on 2 cores for the
# three schemes).
$PY benchmarks/cold_start.py --scheme cold-items --seeds 42,43,44 --parallel 2 --threads 1 --llm-texts
$PY benchmarks/cold_start.py --scheme cold-time --seeds 42 --parallel 2 --threads 1
$PY benchmarks/cold_start.py --scheme leave-one-out --seeds 42,43,44 --parallel 2 --threads 1 \
  --default-ur4rec
$PY benchmarks/rare_items.py --runs runs/cold-start/leave-one-out
$PY benchmarks/new_users.py --scheme leave-one-out --seeds 42,43,44
$PY benchmarks/cold_fusion.py
$PY benchmarks/compare_runs.py --a "runs/cold-start/leave-one-out/ur4rec-s{seed}" \
  --label-a "UR4Rec (cold config)" --b "runs/cold-start/leave-one-out/sasrec-s{seed}" \
  --label-b "SASRec alone (cold config)" --seeds 42-44 --groups
$PY benchmarks/add_items.py --run runs/cold-start/cold-items/ur4rec-s42
$PY benchmarks/add_items.py --run runs/cold-start/cold-items/sasrec-content-s42
$PY benchmarks/sasrec_quality.py
# Timings last, on a quiet machine.
$PY benchmarks/sasrec_speed.py
$PY benchmarks/sasrec_profile.py --label after
$PY benchmarks/scale.py
$PY benchmarks/ann_serving.py
$PY benchmarks/encoder_precision.py --run "$Q-default-s42"
$PY benchmarks/serve_load.py --run "$Q-default-s42"
$PY benchmarks/results_doc.py
