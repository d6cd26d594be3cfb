"""How should a service encode new texts? PyTorch in float32, in bfloat16, or ONNX Runtime.

    .venv/bin/python benchmarks/encoder_precision.py --run runs/main-ur4rec-ml-100k-liked

For N random 20-item histories (raw item ids of the run's dataset, no preference text), the
service builds the template user text and encodes it. This encodes those texts with PyTorch
in float32 (the reference) and in bfloat16, and with ONNX Runtime in float32, and reports for
each against the reference: the cosine between the vectors, how many of the top-10
recommendations agree, and the time to encode one text (1 and 2 threads). Writes
docs/results/encoder-precision.json (benchmarks/results_doc.py tables it). bfloat16 is only
faster on CPUs with native bfloat16 (AVX-512 BF16 or AMX); the script says which this is.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from reuse import command_line, cpu_name, result_provenance, run_provenance

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained UR4Rec run folder")
    parser.add_argument("--data-dir")
    parser.add_argument("--histories", type=int, default=300)
    parser.add_argument("--timed", type=int, default=200, help="texts timed per setting")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "encoder-precision.json"))
    args = parser.parse_args()

    from ur4rec.io import atomic_write_json
    from ur4rec.serve.recommender import HistoryQuery, Recommender
    from ur4rec.text.encoder import TextEncoder, native_bfloat16
    from ur4rec.text.templates import user_text

    torch.set_num_threads(1)
    rng = random.Random(0)
    # label -> (precision, runtime); the first is the reference.
    settings = {
        "float32": ("float32", "torch"),
        "bfloat16": ("bfloat16", "torch"),
        "float32, onnx": ("float32", "onnx"),
    }
    services = {
        label: Recommender(
            Path(args.run), args.data_dir, encoder_precision=p, encoder_runtime=r, cache_size=0
        )
        for label, (p, r) in settings.items()
    }
    base = services["float32"]
    items = base.dataset.item_ids
    histories = [rng.sample(items, 20) for _ in range(args.histories)]
    answers = {
        p: service.recommend_histories([HistoryQuery(h, 10, None, False) for h in histories])
        for p, service in services.items()
    }
    agree = {
        label: [
            len({r.item for r in a.items} & {r.item for r in b.items}) / 10
            for a, b in zip(answers["float32"], answers[label], strict=True)
        ]
        for label in list(settings)[1:]
    }
    texts = [
        user_text(base._ad_hoc_history(base.item_indices(h)), titles=base._template_titles)
        for h in histories
    ]
    timing: dict[str, dict[str, float]] = {}
    vectors = {}
    for label, (precision, runtime) in settings.items():
        for threads in (1, 2):
            encoder = TextEncoder(
                base.cfg.text.encoder, precision=precision, threads=threads, runtime=runtime
            )
            encoder.encode(texts[:2], remember=False)  # load and warm up
            seconds = []
            for text in texts[: args.timed]:
                start = time.perf_counter()
                encoder.encode([text], remember=False)
                seconds.append(time.perf_counter() - start)
            timing.setdefault(label, {})[f"{threads} thread(s)"] = round(
                1000 * statistics.median(seconds), 2
            )
        vectors[label] = torch.from_numpy(encoder.encode(texts, remember=False))
    cosine = {label: (vectors["float32"] * vectors[label]).sum(-1) for label in list(settings)[1:]}
    tokens = statistics.mean(len(encoder.model.tokenizer(t)["input_ids"]) for t in texts)
    command = command_line(__file__)
    result = {
        "command": command,
        "provenance": result_provenance(command),
        "run": args.run,
        "run_provenance": run_provenance(Path(args.run)),
        "histories": len(histories),
        "native_bfloat16": native_bfloat16(),
        "cpu": cpu_name(),
        "mean_tokens": round(tokens, 1),
        # against PyTorch float32, per setting
        "against_float32": {
            label: {
                "cosine_min": round(float(cosine[label].min()), 7),
                "cosine_mean": round(float(cosine[label].mean()), 7),
                "top10_agreement_mean": round(statistics.mean(a), 4),
                "top10_agreement_min": min(a),
                "identical_top10_share": round(sum(x == 1.0 for x in a) / len(a), 4),
            }
            for label, a in agree.items()
        },
        "encode_ms_p50": timing,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(result, indent=2))
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
