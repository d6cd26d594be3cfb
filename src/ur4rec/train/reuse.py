"""Starting a staged run from another run's finished stages: when only later stages differ
(a variant, a search trial), the leading stages are not trained again."""

from __future__ import annotations

import shutil
from pathlib import Path

from ur4rec.config import RunConfig, dump_config
from ur4rec.data.dataset import Dataset
from ur4rec.io import atomic_write_text
from ur4rec.runs.checkpoint import load_checkpoint, save_checkpoint
from ur4rec.runs.layout import CONFIG, INFO, run_stale_reasons, stage_dir, write_run_info
from ur4rec.runs.load import build


def finished_stages(run_dir: Path) -> list[Path]:
    """The stage folders of ``run_dir`` that finished, in order, up to the first that did not."""
    folders = sorted(
        (p for p in (Path(run_dir) / "stages").glob("*-*") if p.name.split("-")[0].isdigit()),
        key=lambda p: int(p.name.split("-")[0]),
    )
    done = []
    for folder in folders:
        if not (folder / "done.json").is_file():
            break
        done.append(folder)
    return done


def start_from_stages(
    run_dir: Path,
    cfg: RunConfig,
    base: Path,
    stages: int,
    dataset: Dataset,
    data_dir: str | None = None,
) -> bool:
    """Start ``run_dir`` (config ``cfg``) from the first ``stages`` finished stages of ``base``.

    The model is initialised exactly as its own run would be; the modules those stages train
    then take the base run's trained weights (every other module is untouched by them).
    Returns False, writing nothing, when the base run has not got that far or is of other
    code or data. The caller then resumes ``run_dir``, which trains the remaining stages.
    """
    base = Path(base)
    folders = finished_stages(base)
    if stages < 1 or stages > len(cfg.stages) or len(folders) < stages:
        return False
    if not (base / INFO).is_file():
        return False
    if run_stale_reasons(base, data_hash=dataset.content_hash):  # never hand on other code
        return False
    model, _, _ = build(cfg, dataset, data_dir)
    # Each reused stage's checkpoint is the fresh model with the modules trained up to that
    # stage taken from the base run: the stage table loads every one of them.
    fresh = model.state_dict()
    for index, folder in enumerate(folders[:stages]):
        trained = load_checkpoint(folder / "best.pt")["model"]
        modules = {m for stage in cfg.stages[: index + 1] for m in stage.train}
        state = {k: trained[k] if k.split(".")[0] in modules else v for k, v in fresh.items()}
        target = stage_dir(run_dir, index, cfg.stages[index])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "done.json", target / "done.json")
        save_checkpoint(target / "best.pt", {"model": state})
    atomic_write_text(Path(run_dir) / CONFIG, dump_config(cfg))
    write_run_info(Path(run_dir), dataset, "running")  # this run's own provenance
    return True
