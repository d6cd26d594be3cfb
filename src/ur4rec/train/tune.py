"""Hyperparameter search with Optuna: every trial a normal run folder, chosen on validation.

A search space is a YAML file over any config key::

    metric: ndcg@10          # the run's validation metric to maximise (default train.metric)
    params:
      train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      model.layers: {type: int, low: 1, high: 3}
      model.hidden: {type: choice, values: [32, 64, 128]}
      stages.joint_finetune.lr.fusion: {type: float, low: 1.0e-4, high: 1.0e-2, log: true,
                                        stage: joint_finetune}

A staged config is tuned jointly: one trial trains all of its stages, and its value is the last
stage's best validation metric. ``stage: NAME`` says a key first acts in that stage; a trial
whose keys for the earlier stages all equal a finished trial's starts from that trial's
stages instead of training them again (train/reuse.py). Pruning (median by default) compares
each stage's validation curve with the other trials' curves for the same stage and epoch.

The study lives in ``storage`` (default ``sqlite:///OUT/study.db``): a killed search resumes
by running the same command, and a trial that was running when it was killed is run again
with its own parameters, resuming its run folder from the last checkpoint. ``jobs`` > 1
runs that many worker processes on the same study, each with its share of the CPU threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ur4rec.config import ConfigError, RunConfig, dump_config, load_config, read_yaml
from ur4rec.errors import Ur4recError
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.report_table import format_table
from ur4rec.runs.layout import CONFIG, SUMMARY
from ur4rec.train.trainer import FitState

KINDS = ("float", "int", "choice")


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    values: tuple[Any, ...] = ()
    stage: str | None = None  # the first stage this key acts in (None: all of them)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    metric: str | None = None
    direction: str = "maximize"


def load_space(path: str | Path) -> SearchSpace:
    """A search space from YAML (``include`` works as in run configs); every problem named."""
    data = read_yaml(path)
    unknown = set(data) - {"metric", "direction", "params"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; use metric, direction, params")
    specs = data.get("params")
    if not isinstance(specs, dict) or not specs:
        raise ConfigError(f"{path}: params must map config keys to their ranges")
    direction = data.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"{path}: direction must be maximize or minimize, got {direction!r}")
    params = tuple(_param(str(key), spec, path) for key, spec in specs.items())
    metric = data.get("metric")
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(f"{path}: metric must be a name such as ndcg@10")
    return SearchSpace(params, metric, direction)


def _param(key: str, spec: Any, path: str | Path) -> Param:
    where = f"{path}: params.{key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with a type")
    allowed = {"type", "low", "high", "log", "step", "values", "stage"}
    if set(spec) - allowed:
        raise ConfigError(f"{where}: unknown keys {sorted(set(spec) - allowed)}")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{where}: type must be one of {KINDS}, got {kind!r}")
    stage = spec.get("stage")
    if stage is not None and not isinstance(stage, str):
        raise ConfigError(f"{where}: stage must be a stage name")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: a choice needs a non-empty list of values")
        return Param(key, kind, values=tuple(values), stage=stage)
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high:  # type: ignore[operator]
        raise ConfigError(f"{where}: needs numbers low < high, got {low!r}, {high!r}")
    log = bool(spec.get("log", False))
    if log and low <= 0:  # type: ignore[operator]
        raise ConfigError(f"{where}: a log range needs low > 0")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: an int range needs whole numbers")
    step = spec.get("step")
    return Param(key, kind, float(low), float(high), log, step, stage=stage)  # type: ignore[arg-type]


def overrides_for(params: dict[str, Any]) -> list[str]:
    """``--set`` overrides for a trial's values (JSON is valid YAML, so lists survive)."""
    return [f"{key}={json.dumps(value)}" for key, value in params.items()]


def check_space(space: SearchSpace, config: str | Path, overrides: list[str]) -> RunConfig:
    """The base config, with each key of the space applied at its low end (and each choice) to
    catch a misspelt key before any trial runs."""
    base = load_config(config, overrides)
    names = [s.name for s in base.stages]
    for p in space.params:
        if p.stage is not None and p.stage not in names:
            raise ConfigError(f"params.{p.key}: stage {p.stage!r} is not one of {names}")
        samples = list(p.values) if p.kind == "choice" else [p.low, p.high]
        for value in samples:
            if p.kind == "int":
                value = int(value)  # type: ignore[arg-type]
            try:
                load_config(config, [*overrides, *overrides_for({p.key: value})])
            except ConfigError as exc:
                raise ConfigError(f"search space key {p.key}={value!r}: {exc}") from None
    return base


@dataclass
class TuneResult:
    out: Path
    best: dict[str, Any] | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise Ur4recError("ur4rec tune needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Pruned(Exception):
    """A trial stopped by the pruner; its run folder says ``pruned``."""

    run_status = "pruned"


class _Reporter:
    """Feeds a run's per-epoch validation metric to Optuna, step = stage * 10^4 + epoch, and
    stops the run when the pruner says so."""

    def __init__(self, trial: Any, metric: str, first_stage: int) -> None:
        self.trial, self.metric = trial, metric
        self.stage, self.state = first_stage - 1, None
        self.reported: set[int] = set()

    def __call__(self, state: FitState) -> None:
        if state is not self.state:
            self.state, self.stage = state, self.stage + 1
        for row in state.history:
            value = row.get(f"valid/{self.metric}")
            step = self.stage * 10_000 + int(row["epoch"])
            if value is None or step in self.reported or not math.isfinite(value):
                continue
            self.trial.report(float(value), step)
            self.reported.add(step)
        if self.trial.should_prune():
            raise Pruned(f"pruned at stage {self.stage + 1}, epoch {state.epoch}")


def _stage_index(base: RunConfig, param: Param) -> int:
    return [s.name for s in base.stages].index(param.stage) if param.stage else 0


def _reusable(
    trial_params: dict[str, Any], space: SearchSpace, base: RunConfig, done: list[Any]
) -> tuple[Path, int] | None:
    """The finished trial whose leading stages this trial can start from, and how many."""
    if not base.stages:
        return None
    best: tuple[Path, int] | None = None
    for other in done:
        run_dir = other.user_attrs.get("run_dir")
        if run_dir is None:
            continue
        differing = [
            _stage_index(base, p)
            for p in space.params
            if other.params.get(p.key) != trial_params.get(p.key)
        ]
        shared = min(differing, default=len(base.stages))
        if shared > 0 and (best is None or shared > best[1]):
            best = (Path(run_dir), shared)
    return best


def _objective(
    space: SearchSpace,
    config: Path,
    overrides: list[str],
    out: Path,
    metric: str,
    data_dir: str | None,
    quiet: bool,
) -> Any:
    optuna = _optuna()
    from ur4rec.data.prepare import open_dataset
    from ur4rec.train import run
    from ur4rec.train.reuse import finished_stages, start_from_stages

    base = load_config(config, overrides)

    def objective(trial: Any) -> float:
        values: dict[str, Any] = {}
        for p in space.params:
            if p.kind == "choice":
                values[p.key] = trial.suggest_categorical(p.key, list(p.values))
            elif p.kind == "int":
                step = int(p.step or 1)
                values[p.key] = trial.suggest_int(
                    p.key, int(p.low), int(p.high), step=step, log=p.log
                )  # type: ignore[arg-type]
            else:
                values[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
        try:
            cfg = load_config(config, [*overrides, *overrides_for(values)])
        except Ur4recError as exc:  # a combination the config checks refuse
            trial.set_user_attr("error", str(exc)[:300])
            raise
        retry = trial.user_attrs.get("retry_of_run")
        run_dir = Path(retry) if retry else out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        reused = 0
        if not (run_dir / CONFIG).is_file() and cfg.stages:
            states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            done = trial.study.get_trials(deepcopy=False, states=states)
            found = _reusable(values, space, base, done)
            if found is not None:
                dataset = open_dataset(cfg.data.dataset, root=data_dir)
                source, stages = found
                stages = min(stages, len(finished_stages(source)))
                if start_from_stages(run_dir, cfg, source, stages, dataset, data_dir):
                    reused = stages
                    trial.set_user_attr("reused_stages_from", str(source))
        trial.set_user_attr("reused_stages", reused)
        first = len(finished_stages(run_dir)) if cfg.stages else 0
        reporter = _Reporter(trial, metric, first)
        started = time.perf_counter()
        try:
            if (run_dir / CONFIG).is_file():  # reused stages, or a killed trial run again
                run.resume(
                    run_dir, data_dir=data_dir, quiet=quiet, on_epoch_end=reporter, test=False
                )
            else:
                run.train(
                    cfg, run_dir, data_dir=data_dir, quiet=quiet, on_epoch_end=reporter, test=False
                )
        except Pruned as exc:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
            raise optuna.TrialPruned(str(exc)) from None
        except Ur4recError as exc:
            trial.set_user_attr("error", str(exc)[:300])
            raise
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
        if metric not in summary["valid"]:
            raise Ur4recError(f"the run reports no validation {metric}; pick another metric")
        trial.set_user_attr("epochs", summary["epochs_run"])
        return float(summary["valid"][metric])

    return objective


def _counted(study: Any) -> int:
    """Trials that count against the budget: finished, pruned and failed ones (not those
    rerun after a kill); queued ones count once they run."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (state.COMPLETE, state.PRUNED)
        or (t.state == state.FAIL and not t.user_attrs.get("rerun"))
    )


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """One coordinator per search folder: it alone may declare running trials stale."""
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ".lock", "w")  # noqa: SIM115 (held for the whole search)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Ur4recError(f"{out} is being searched by another ur4rec tune; wait for it") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


PRUNERS = ("median", "none")


def make_pruner(name: str) -> Any:
    """``median``: a trial is stopped when its best value so far lies below the median of the
    finished trials' curves at the same step and its last 4 validations all fall below its
    earlier best. The patience keeps slow starters (low learning rates, strong dropout) running
    while their curves still rise; 5 warm-up epochs and 3 finished trials come before any stop."""
    optuna = _optuna()
    if name == "median":
        median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=5)
        with warnings.catch_warnings():  # PatientPruner is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(median, patience=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise Ur4recError(f"unknown pruner {name!r}; one of {sorted(PRUNERS)}")


def _study(spec: dict[str, Any], worker: int = 0) -> Any:
    """The search's study, created on first use; each worker's sampler has its own seed."""
    optuna = _optuna()
    seed, direction = spec["seed"] + 1000 * worker, load_space(spec["space"]).direction
    samplers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    if spec["sampler"] not in samplers:
        raise Ur4recError(f"unknown sampler {spec['sampler']!r}; one of {sorted(samplers)}")
    try:
        return optuna.create_study(
            storage=spec["storage"], study_name=spec["study"], direction=direction,
            load_if_exists=True, sampler=samplers[spec["sampler"]](),
            pruner=make_pruner(spec["pruner"]),
        )  # fmt: skip
    except Exception as exc:  # sqlalchemy's errors for a bad URL or an unreadable file
        raise Ur4recError(f"cannot open the study storage {spec['storage']!r}: {exc}") from None


def _rerun_stale(study: Any) -> int:
    """Trials left running by a killed search run again with their own parameters and folder."""
    optuna = _optuna()
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "rerun", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        attrs = {"retry_of_run": t.user_attrs["run_dir"]} if "run_dir" in t.user_attrs else {}
        study.enqueue_trial(t.params, user_attrs={**attrs, "rerun_of": t.number})
    return len(stale)


def tune(
    config: str | Path,
    space_path: str | Path,
    trials: int,
    out: str | Path,
    *,
    storage: str | None = None,
    study_name: str = "ur4rec",
    jobs: int = 1,
    sampler: str = "tpe",
    pruner: str = "median",
    seed: int = 0,
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    quiet: bool = True,
) -> TuneResult:
    """Run (or resume) a search until ``trials`` trials have finished, then write the best
    config, the trials table and the plots into ``out``."""
    if trials < 1:
        raise Ur4recError(f"--trials must be >= 1, got {trials}")
    if jobs < 1:
        raise Ur4recError(f"--jobs must be >= 1, got {jobs}")
    out, overrides = Path(out), list(overrides or [])
    space = load_space(space_path)
    base = check_space(space, config, overrides)
    metric = space.metric or base.train.metric
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    with _lock(out):
        spec = {
            "config": str(Path(config).resolve()), "space": str(Path(space_path).resolve()),
            "overrides": overrides, "trials": trials, "storage": storage, "study": study_name,
            "sampler": sampler, "pruner": pruner, "seed": seed, "metric": metric,
            "data_dir": data_dir,
        }  # fmt: skip
        _same_search(out, spec)
        study = _study(spec)
        _rerun_stale(study)
        atomic_write_json(out / "search.json", spec)
        # Each worker runs its share of what is missing, so the budget is met exactly.
        missing = max(0, trials - _counted(study))
        shares = [missing // jobs + (i < missing % jobs) for i in range(jobs)]
        if jobs == 1:
            work(out, 0, missing, quiet=quiet)
        else:
            threads = max(1, (os.cpu_count() or 1) // jobs)
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            module = [sys.executable, "-m", "ur4rec.train.tune", str(out)]
            workers = [
                subprocess.Popen([*module, str(i), str(n)], env=env)
                for i, n in enumerate(shares)
                if n
            ]
            codes = [w.wait() for w in workers]
            if any(codes):
                raise Ur4recError(f"a search worker failed (exit codes {codes})")
        return write_outputs(out, spec, _study(spec))


def _same_search(out: Path, spec: dict[str, Any]) -> None:
    """A folder holds one search: resuming it with another config, space or storage would
    mix trials of different questions."""
    try:
        before = json.loads((out / "search.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    keys = ("config", "space", "overrides", "storage", "study", "metric")
    changed = [k for k in keys if before.get(k) != spec[k]]
    if changed:
        raise Ur4recError(
            f"{out} holds a search with another {', '.join(changed)} "
            f"({', '.join(f'{k}={before.get(k)!r}' for k in changed)}); resume it with the same "
            "arguments or pick another --out"
        )


def work(out: Path, worker: int, trials: int, quiet: bool = True) -> None:
    """One worker: run ``trials`` trials of the search in ``out``."""
    spec = json.loads((Path(out) / "search.json").read_text(encoding="utf-8"))
    study = _study(spec, worker)
    objective = _objective(
        load_space(spec["space"]), Path(spec["config"]), spec["overrides"], Path(out),
        spec["metric"], spec["data_dir"], quiet,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's experimental-feature warnings
        if trials:
            study.optimize(objective, n_trials=trials, catch=(Ur4recError,))


def write_outputs(out: Path, spec: dict[str, Any], study: Any) -> TuneResult:
    """best.yaml (the base config with the best values, ready for `ur4rec train`),
    trials.csv / trials.md, history.png, importances.png and tune.json."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("rerun"):
            continue  # killed; its rerun is its own row
        rows.append({
            "trial": t.number, "state": t.state.name.lower(),
            "value": t.value if t.state == state.COMPLETE else None,
            **{k: _short(v) for k, v in t.params.items()},
            "epochs": t.user_attrs.get("epochs"), "seconds": t.user_attrs.get("seconds"),
            "reused stages": t.user_attrs.get("reused_stages"),
            "error": t.user_attrs.get("error"), "run": t.user_attrs.get("run_dir"),
        })  # fmt: skip
    columns = list(dict.fromkeys(k for r in rows for k in r))
    files = ["trials.csv", "trials.md", "tune.json"]
    _write_csv(out / "trials.csv", rows, columns)
    atomic_write_text(out / "trials.md", format_table(rows, columns, markdown=True) + "\n")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == state.COMPLETE]
    best: dict[str, Any] | None = None
    if complete:
        trial = study.best_trial
        cfg = load_config(spec["config"], [*spec["overrides"], *overrides_for(trial.params)])
        header = (
            f"# Chosen by `ur4rec tune` on validation {spec['metric']} = {trial.value:.4f} "
            f"(trial {trial.number} of {len(rows)}; {spec['space']}).\n"
            f"# Base: {spec['config']}; tuned: {', '.join(trial.params)}.\n"
        )
        atomic_write_text(out / "best.yaml", header + dump_config(cfg))
        best = {"trial": trial.number, "value": trial.value, "params": trial.params,
                "run": trial.user_attrs.get("run_dir")}  # fmt: skip
        files.append("best.yaml")
        files += _plots(out, study, len(complete))
    states = sorted({r["state"] for r in rows})
    summary = {
        **spec,
        "best": best,
        "states": {s: sum(r["state"] == s for r in rows) for s in states},
    }
    atomic_write_json(out / "tune.json", summary)
    return TuneResult(out, best, rows, files)


def _short(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _plots(out: Path, study: Any, complete: int) -> list[str]:
    """The optimisation history and (from two finished trials on) parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from optuna.visualization import matplotlib as views

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings
        plots = [("history.png", views.plot_optimization_history)]
        if complete >= 2 and len(study.best_trial.params) >= 1:
            plots.append(("importances.png", views.plot_param_importances))
        for name, plot in plots:
            try:
                axes = plot(study)
            except (ValueError, RuntimeError):
                continue  # e.g. importances when no parameter varied
            figure = axes.figure if hasattr(axes, "figure") else axes[0].figure
            figure.set_size_inches(7, 4)
            figure.tight_layout()
            tmp = out / f".{name}.tmp.png"
            figure.savefig(tmp, dpi=110)
            plt.close(figure)
            os.replace(tmp, out / name)
            written.append(name)
    return written


if __name__ == "__main__":  # a worker of `tune(..., jobs=N)`
    work(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
