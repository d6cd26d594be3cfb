"""What a benchmark may reuse: stored runs and ranks files only from the current code, the
wanted config and the same data (ur4rec.provenance); anything else is set aside and rerun.

    plan_run(run_dir, config_text) -> "reuse" | "resume" | "train"
    train_in_subprocess(run_dir, plan, config, overrides, threads) -> seconds
    cli_in_subprocess(args, threads, what) -> seconds (any `ur4rec` command)
    cached_ranks(run_dir, cases)   -> per-user ranks, recomputed unless current
    result_provenance(...)         -> what a result file records
"""

from __future__ import annotations

import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ur4rec.config import dump_config, load_config
from ur4rec.io import atomic_write_bytes, atomic_write_text
from ur4rec.provenance import code_version, provenance, stale_reasons
from ur4rec.runs.layout import BEST, CONFIG, INFO, SUMMARY, run_stale_reasons

RANKS = "ranks.npz"


def cpu_name() -> str:
    """The CPU's model name (Linux), for telling hosts apart: speeds differ by 3x between them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def command_line(script: str) -> str:
    """How this benchmark was called, as a shell would take it: 'benchmarks/NAME.py ARGS'."""
    return " ".join(["benchmarks/" + Path(script).name, shlex.join(sys.argv[1:])]).strip()


def wanted_config(config: Path, overrides: Iterable[str] = ()) -> str:
    """The resolved config a benchmark would train, as the run folder would store it."""
    return dump_config(load_config(config, list(overrides)))


def set_aside(run_dir: Path, reasons: list[str]) -> None:
    """Move a run that cannot be reused to RUN.stale (replacing an older one), and say why."""
    target = run_dir.with_name(run_dir.name + ".stale")
    shutil.rmtree(target, ignore_errors=True)
    run_dir.rename(target)
    print(f"{run_dir}: not reused ({'; '.join(reasons)}); moved to {target.name}", flush=True)


def plan_run(run_dir: Path, config_text: str | None = None, data_hash: str | None = None) -> str:
    """'reuse' a finished current run, 'resume' an unfinished current one, else 'train' (a
    stale run of other code, another config or other data is set aside first)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file() or not (run_dir / INFO).is_file():
        if run_dir.is_dir() and any(run_dir.iterdir()):
            set_aside(run_dir, ["it is not a complete run folder"])
        return "train"
    reasons = run_stale_reasons(run_dir, config_text, data_hash)
    if reasons:
        set_aside(run_dir, reasons)
        return "train"
    return "reuse" if (run_dir / SUMMARY).is_file() else "resume"


def train_in_subprocess(
    run_dir: Path,
    plan: str,
    config: Path,
    overrides: Iterable[str] = (),
    threads: int = 1,
    data_dir: str | None = None,
) -> float:
    """Carry out a ``plan_run`` plan other than "reuse" with `ur4rec train` in a subprocess
    limited to ``threads`` torch threads: "resume" continues the run, "train" trains
    ``config`` with ``overrides`` into it. Returns the seconds taken; a failure stops the
    benchmark with the tail of the run's stderr."""
    if plan == "resume":
        args = ["train", "--quiet", "--resume", str(run_dir)]
    else:
        sets = [x for o in overrides for x in ("--set", o)]
        args = ["train", "--quiet", "--config", str(config), "--out", str(run_dir), *sets]
    args += ["--data-dir", data_dir] if data_dir else []
    return cli_in_subprocess(args, threads, f"{run_dir}: training")


def cli_in_subprocess(args: list[str], threads: int, what: str) -> float:
    """`ur4rec ARGS` in a subprocess limited to ``threads`` torch threads; returns the seconds
    taken. A failure stops the benchmark with ``what`` and the tail of its stderr."""
    cmd = [sys.executable, "-m", "ur4rec.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def find_run(
    folders: Iterable[Path], config_text: str, data_hash: str | None = None
) -> Path | None:
    """A finished run of exactly this config, the current code and the data, among the run
    folders directly inside ``folders`` (first found, by name); None if there is none."""
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for run_dir in sorted(Path(folder).iterdir()):
            finished = (run_dir / SUMMARY).is_file() and (run_dir / INFO).is_file()
            if finished and not run_stale_reasons(run_dir, config_text, data_hash):
                return run_dir
    return None


def merge_rows(
    path: Path,
    rows: list[dict[str, Any]],
    key: tuple[str, ...],
    defaults: dict[str, Any] | None = None,
) -> None:
    """Write ``rows`` into the JSON-lines file ``path`` atomically, replacing the stored rows
    with the same ``key`` fields and keeping the others (runs measured by other calls).
    ``defaults`` gives a key field's value for stored rows that lack it (rows written before
    the field existed), so a rerun replaces them instead of standing beside them."""
    path = Path(path)
    defaults = defaults or {}

    def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k, defaults.get(k)) for k in key)

    new_keys = {key_of(r) for r in rows}
    kept = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if key_of(row) not in new_keys:
                    kept.append(row)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in [*kept, *rows]))


def _checkpoint_digest(run_dir: Path) -> str | None:
    """The digest of the checkpoints a run's ranks come from: best.pt, and a refit's too (the
    final model on test, runs/layout.resolve_checkpoint)."""
    digests = [run_dir / f"{BEST}.sha256", run_dir / "refit" / f"{BEST}.sha256"]
    found = [d.read_text(encoding="utf-8").strip() for d in digests if d.is_file()]
    return " ".join(found) or None


def cached_ranks(
    run_dir: Path, cases: list[tuple[str, str]], data_dir: str | None = None
) -> dict[str, np.ndarray]:
    """The run's per-user ranks for ``cases``, from its ranks.npz when that was computed by
    the current code from the run's current checkpoints, else computed and stored."""
    from ur4rec.train.run import user_ranks

    run_dir = Path(run_dir)
    path = run_dir / RANKS
    wanted = {f"{part} {protocol}" for part, protocol in cases}
    stamp = {"code": code_version(), "checkpoint": _checkpoint_digest(run_dir)}
    if path.is_file():
        with np.load(path) as stored:
            meta = json.loads(str(stored["provenance"])) if "provenance" in stored else None
            fresh = meta is not None and not stale_reasons(meta, stamp)
            if fresh and meta["checkpoint"] == stamp["checkpoint"] and wanted <= set(stored.files):
                return {key: stored[key] for key in wanted}
    ranks = user_ranks(run_dir, cases, data_dir=data_dir)
    buffer = io.BytesIO()
    np.savez(buffer, provenance=np.array(json.dumps(stamp)), **ranks)
    atomic_write_bytes(path, buffer.getvalue())
    return ranks


def run_provenance(run_dir: Path) -> dict[str, Any]:
    """The provenance a run records (run.json), for a result row made from it."""
    info = json.loads((Path(run_dir) / INFO).read_text(encoding="utf-8"))
    return info.get("provenance") or {}


def result_provenance(
    command: str, configs: Iterable[str] = (), data_hashes: Iterable[str] = ()
) -> dict[str, Any]:
    """What a benchmark's result file records: its command, the current code, and the hashes
    of the configs and data it measured (sorted, deduplicated)."""
    out = provenance()
    out["command"] = command
    configs, data = sorted(set(configs)), sorted(set(data_hashes))
    if configs:
        out["config_hashes"] = configs
    if data:
        out["data_hashes"] = data
    return out
