"""The run folder: what a run writes, where, and how it is read back.

``config.yaml`` (resolved), ``run.json`` (data hash, sizes, status), ``log.jsonl`` (one row
per epoch), ``best.pt`` and ``last.pt`` (each with a ``.sha256`` digest), ``inputs.pt`` (what
the model was built from besides its weights: text embeddings, a fitted prior; with a digest),
``summary.json`` once finished; a staged run also has ``stages/<i>-<name>/`` (each a small
run folder of its own), ``stages.json`` and ``stages.md``; ``ur4rec report`` adds
``REPORT.md`` and plots; a refit (``ur4rec refit``, ``train.refit``) adds ``refit/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from torch import nn

from ur4rec.config import RunConfig, StageConfig, load_config
from ur4rec.data.dataset import Dataset
from ur4rec.errors import Ur4recError
from ur4rec.io import atomic_write_json
from ur4rec.provenance import describe, provenance, stale_reasons
from ur4rec.runs.checkpoint import CheckpointError, load_checkpoint
from ur4rec.version import __version__

CONFIG = "config.yaml"
INFO = "run.json"
LOG_FILE = "log.jsonl"
BEST = "best.pt"
LAST = "last.pt"
SUMMARY = "summary.json"
INPUTS = "inputs.pt"

# What a run writes into its folder; `--force` removes these (and stages/) and nothing else.
RUN_FILES = (
    CONFIG, INFO, LOG_FILE, BEST, LAST, f"{BEST}.sha256", f"{LAST}.sha256",
    INPUTS, f"{INPUTS}.sha256", SUMMARY, "stages.json", "stages.md", "REPORT.md", "curves.png",
    "stages.png",
)  # fmt: skip


def stage_dir(run_dir: Path, index: int, stage: StageConfig) -> Path:
    return Path(run_dir) / "stages" / f"{index + 1}-{stage.name}"


# A refit (train/refit.py): the model trained again on the training part plus the validation
# targets, a small run folder of its own inside the run (its best.pt is the refit model).
REFIT_DIR = "refit"
CHECKPOINTS = ("final", "best", "last", "refit")


def has_refit(run_dir: Path) -> bool:
    return (Path(run_dir) / REFIT_DIR / BEST).is_file()


def resolve_checkpoint(run_dir: Path, checkpoint: str = "final", part: str = "test") -> str:
    """Which checkpoint ``checkpoint`` means for scoring ``part`` (valid, test, or serve):
    ``final`` is the refit model where the run has one, except on validation, whose targets
    the refit trained on; there it is ``best``, the checkpoint validation chose."""
    if checkpoint not in CHECKPOINTS:
        raise Ur4recError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    if checkpoint == "final":
        return "refit" if part != "valid" and has_refit(run_dir) else "best"
    if checkpoint == "refit":
        if not has_refit(run_dir):
            raise Ur4recError(
                f"{run_dir} has no refit model; make one with `ur4rec refit {run_dir}`"
            )
        if part == "valid":
            raise Ur4recError(
                "the refit model was trained on the validation targets, so validation cannot "
                "measure it; evaluate validation with --checkpoint best"
            )
    return checkpoint


def checkpoint_path(run_dir: Path, checkpoint: str = "best") -> Path:
    """The file of a resolved checkpoint name (best, last or refit; see resolve_checkpoint)."""
    names = {"best": BEST, "last": LAST, "refit": f"{REFIT_DIR}/{BEST}"}
    if checkpoint not in names:
        raise Ur4recError(f"checkpoint must be best, last or refit, got {checkpoint!r}")
    return Path(run_dir) / names[checkpoint]


def write_run_info(run_dir: Path, dataset: Dataset, status: str, error: str | None = None) -> None:
    """run.json: the data, the status and the run's provenance (the code that started it, the
    config and data hashes; any other code that continued it is added under ``resumed_by``)."""
    run_dir = Path(run_dir)
    previous: dict[str, Any] = {}
    if (run_dir / INFO).is_file():
        try:
            previous = json.loads((run_dir / INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = {}
    current = provenance((run_dir / CONFIG).read_text(encoding="utf-8"), dataset.content_hash)
    started = previous.get("provenance") if isinstance(previous, dict) else None
    resumed_by = list(previous.get("resumed_by", [])) if started else []
    if started and current["code"]["source_hash"] not in {
        c["source_hash"] for c in [started["code"], *resumed_by]
    }:
        resumed_by.append(current["code"])
    info = {
        "dataset": dataset.name,
        "data_hash": dataset.content_hash,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "ur4rec_version": __version__,
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": started or current,
    }
    if resumed_by:
        info["resumed_by"] = resumed_by
    if error is not None:
        info["error"] = error
    atomic_write_json(run_dir / INFO, info)


def run_stale_reasons(
    run_dir: Path, config_text: str | None = None, data_hash: str | None = None
) -> list[str]:
    """Why a run folder cannot stand for a run of the current code with ``config_text`` (the
    wanted resolved config; default: its own) on data ``data_hash`` (default: its own): empty
    when it can."""
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / INFO).read_text(encoding="utf-8"))
        own_config = (run_dir / CONFIG).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return ["its run.json or config.yaml is missing or unreadable"]
    if not isinstance(info, dict):
        return ["its run.json is not an object"]
    current = provenance(config_text or own_config, data_hash or info.get("data_hash"))
    reasons = stale_reasons(info.get("provenance"), current)
    for code in info.get("resumed_by", []):
        if code.get("source_hash") != current["code"]["source_hash"]:
            reasons.append(f"part of it was trained by other code ({describe(code)})")
    return reasons


def read_run_info(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config and run.json; a clear error if either is missing or damaged."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file() or not (run_dir / INFO).is_file():
        raise Ur4recError(f"{run_dir} is not a run folder (no {CONFIG} / {INFO})")
    cfg = load_config(run_dir / CONFIG)
    try:
        info = json.loads((run_dir / INFO).read_text(encoding="utf-8"))
        if not isinstance(info, dict) or not {"data_hash", "dataset"} <= set(info):
            raise KeyError("data_hash or dataset")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Ur4recError(f"{run_dir / INFO} is unreadable or incomplete ({exc})") from None
    return cfg, info


def check_data(run_dir: Path, info: dict[str, Any], dataset: Dataset) -> None:
    if dataset.content_hash != info["data_hash"]:
        raise Ur4recError(
            f"{run_dir} was trained on {info['dataset']} with content hash "
            f"{info['data_hash'][:12]}, but the prepared data now has {dataset.content_hash[:12]}"
        )


def append_log(path: Path, row: dict[str, Any]) -> None:
    """Append one row; a log.jsonl that is a symlink is refused, never followed out of the
    run folder."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError:
        if path.is_symlink():
            raise Ur4recError(f"{path} is a symlink; a run's log must be a plain file") from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_log(path: Path) -> list[dict[str, Any]]:
    if path.is_symlink():
        raise Ur4recError(f"{path} is a symlink; a run's log must be a plain file")
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut off by a kill; everything after it is lost anyway
    return rows


def load_state_into(model: nn.Module, path: Path) -> dict[str, Any]:
    payload = load_checkpoint(path)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"checkpoint {path} does not fit this model (was the config changed?): {first}"
        ) from None
    return payload
