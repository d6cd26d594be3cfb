"""The one interface every model implements, and the registry that maps ``model.name`` to it.

Training, evaluation, serving and reports talk to models only through :class:`RecModel`:

- ``build(inputs)``: a fresh model from the config and the data (:class:`ModelInputs`).
- ``score(batch)``: scores [B, n_items] for the last position of each history (the
  evaluator's scorer protocol).
- ``user_states(batch, user_text)`` and ``scores_from_states(states)``: the same scores in two
  steps, so a service can keep each known user's states and score requests with one product.
  ``scores_from_states`` returns ``"score"`` plus the named branch scores (``branches``) and
  anything else worth showing (a fusion weight, router weights). ``block_scores(states,
  items)`` scores one block of the catalogue, for catalogues too large to score at once.
- ``training_loss(batch, generator)``: the loss of one batch of training windows.
- ``parameter_groups()``: parameters by module name; stages train and freeze by these names.
- ``set_objective(objective)``: what a stage trains and scores (``objectives``).
- ``prepare_for_inference()``: cache what does not change while serving (item vectors).

A model that is fitted rather than trained (popularity, EASE) says so with ``trainable =
False`` and does its work in ``build``. Adding a model is one file with a subclass and one
``@register`` line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn

from ur4rec.config import RunConfig, StageConfig
from ur4rec.data.batches import HistoryBatch, TrainBatch
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import Prefixes
from ur4rec.errors import Ur4recError

if TYPE_CHECKING:
    from ur4rec.data.windows import TrainWindows
    from ur4rec.text.features import TextFeatures


class ValidationSet(Protocol):
    """What calibration needs of the evaluator (eval/ sits above models/)."""

    def batches(self) -> Iterator[tuple[slice, HistoryBatch]]: ...

    def evaluate(self, scorer: Any) -> dict[str, Any]: ...


@dataclass
class Calibration:
    chosen: dict[str, float]  # e.g. {"sasrec_weight": 0.35}
    metrics: dict[str, float]  # validation metrics with it


@dataclass
class ModelInputs:
    """Everything a model may be built from."""

    cfg: RunConfig
    dataset: Dataset
    train: Prefixes  # the training part of the split (what fitted parts are fitted on)
    windows: TrainWindows | None = None  # the training windows (per-window state)
    texts: TextFeatures | None = None  # item and user text embeddings, when ``uses_text``
    # What a trained run saved for inference (``inference_inputs``): when given, the model is
    # rebuilt from it, without reading texts or refitting; its weights come from a checkpoint.
    saved: dict[str, Any] | None = None


def grown_embedding(old: nn.Embedding, added: int) -> nn.Embedding:
    """``old`` (n + 1 rows, the last for padding) with ``added`` zero rows before the padding
    row: the ID vectors of items that have none."""
    n = old.num_embeddings - 1
    grown = nn.Embedding(n + added + 1, old.embedding_dim, padding_idx=n + added)
    with torch.no_grad():
        grown.weight.zero_()
        grown.weight[:n] = old.weight[:n]
    return grown


def trained_items(inputs: ModelInputs) -> torch.Tensor:
    """[n_items] bool: the items that occur in the training part. The others are new items to
    the model: they have no trained ID vector (models use a zero one, so a content vector or
    an unknown token is all that is left) and are no class of the training softmax, which
    would only ever teach a model to rank them last."""
    from ur4rec.data.splits import interaction_counts

    return torch.from_numpy(interaction_counts(inputs.dataset, inputs.train) > 0)


def ranks_seen_items_last(mode: str, dataset: Dataset, train: Prefixes) -> bool:
    """What ``model.seen_items`` means for this data: ``last`` and ``keep`` say it; ``auto``
    ranks them last unless some training history holds an item twice, where consuming an item
    again is what the data is about and a user's own items are fair candidates."""
    from ur4rec.data.splits import repeats_items

    if mode == "last":
        return True
    if mode == "keep":
        return False
    if mode == "auto":
        return not repeats_items(dataset, train)
    raise Ur4recError(f"model.seen_items must be auto, last or keep, got {mode!r}")


class RecModel(nn.Module):
    """A sequential recommender: histories in, a score per item out."""

    name: ClassVar[str] = ""
    uses_text: ClassVar[bool] = False  # needs ModelInputs.texts (text embeddings)
    trainable: ClassVar[bool] = True  # False: fitted in build, nothing to train
    objectives: ClassVar[tuple[str, ...]] = ("default",)  # the first is the default
    # Parameter group names, which stages train (not `modules`: nn.Module has that method).
    module_names: ClassVar[tuple[str, ...]] = ()
    branches: ClassVar[tuple[str, ...]] = ()  # named branch scores shown beside the score
    # Under a protocol whose candidates may be the user's own items, rank those last (as
    # full ranking and the service do): set by ``build_model`` from ``model.seen_items``.
    seen_items_last: bool = False
    n_items: int

    @classmethod
    def build(cls, inputs: ModelInputs) -> RecModel:
        raise NotImplementedError

    # -- scoring ----------------------------------------------------------------------
    def user_states(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-user tensors (one row per history) from which ``scores_from_states`` scores.
        ``user_text`` [B, text_dim]: preference-text embeddings for users the model has never
        seen (id -1), for models that read them."""
        raise NotImplementedError

    def scores_from_states(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"score": [B, n_items], <branch>: [B, n_items], ...}``."""
        raise NotImplementedError

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.scores_from_states(self.user_states(batch))["score"]

    def block_scores(self, states: dict[str, torch.Tensor], items: slice) -> torch.Tensor:
        """Scores [B, items.stop - items.start] of one block of the catalogue (item ids
        ``items``), from ``user_states``: what evaluation and serving use on a catalogue
        too large to score at once. A dot-product model scores only the block; the default
        scores every item and keeps the block (exact, but not memory-bounded)."""
        return self.scores_from_states(states)["score"][:, items]

    def dot_branches(self) -> dict[str, torch.Tensor] | None:
        """The branches whose scores are a user vector times an item matrix, as {branch:
        [n_items, d]}: what an approximate nearest-neighbour index is built over. None when
        the model's scores are not made of such branches (it is then served exactly)."""
        return None

    def branch_queries(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each of ``dot_branches``' user vectors [B, d], from ``user_states``."""
        raise NotImplementedError

    def candidate_scores(
        self, states: dict[str, torch.Tensor], items: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Exact scores [B, C] of the candidate ``items`` [B, C]: ``"score"`` and each branch,
        as ``scores_from_states`` gives them. The default scores every item and gathers."""
        out = self.scores_from_states(states)
        return {
            k: v.gather(1, items)
            for k, v in out.items()
            if (k == "score" or k in self.branches) and v.dim() == 2
        }

    @property
    def states_per_user(self) -> bool:
        """Whether a known user's states can be computed once and reused (False when
        scoring reads the history itself, beyond the states)."""
        return True

    def known_user_texts(self) -> list[str] | None:
        """The known users' preference texts, when the model reads them."""
        return None

    def preference_vectors(
        self,
        users: torch.Tensor,
        texts: list[str | None],
        vectors: list[torch.Tensor | None],
    ) -> torch.Tensor | None:
        """[B, text_dim] preference-text embeddings for a batch that holds new users:
        ``vectors[i]`` (the sentence encoder's, for a new text) or the model's own for known
        user ``users[i]``. None for models that read no text."""
        return None

    def item_space(self) -> torch.Tensor:
        """[n_items, d] item vectors in the model's own space (explanations compare items
        in it)."""
        raise NotImplementedError

    def item_text_vectors(self) -> torch.Tensor | None:
        """[n_items, text_dim] item text embeddings, for models that read text."""
        return None

    def add_items(self, item_text: torch.Tensor) -> None:
        """Append items that arrived after training, from their text embeddings [m, text_dim]
        (the run's sentence encoder). They take the indices n_items .. n_items + m - 1 and are
        scored as any item never seen in training is: from text alone, no weight changes."""
        raise Ur4recError(
            f"model {self.name!r} reads no item text, so it cannot score an item it was not "
            "trained on; add items to a text model's run (ur4rec, sasrec-content, text-knn)"
        )

    def describe_config(self, cfg: RunConfig) -> str:
        """One paragraph for a report: what this model is, as configured."""
        return f"`{self.name}`."

    def describe(self) -> dict[str, Any]:
        """Fixed facts a service reports with every answer (e.g. a calibrated weight)."""
        return {}

    def prepare_for_inference(self) -> None:
        """Cache what does not change while serving; called after loading weights."""

    def inference_inputs(self) -> dict[str, Any]:
        """What the model was built from that is not in its state dict (text embeddings, a
        fitted matrix): saved with a run, so that loading it needs neither the texts nor a
        refit (``ModelInputs.saved``). Tensors, strings and lists of them."""
        return {}

    # -- training ---------------------------------------------------------------------
    def training_loss(self, batch: TrainBatch, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by module name (a stage's ``train`` list names these)."""
        return {self.module_names[0] if self.module_names else self.name: list(self.parameters())}

    def set_objective(self, objective: str) -> None:
        """What is trained and scored from now on; one of ``objectives`` ("": the default)."""
        if objective and objective not in self.objectives:
            raise Ur4recError(
                f"model {self.name!r} has no objective {objective!r}; it has {self.objectives}"
            )

    def begin_stage(self, objective: str, modules: list[str]) -> None:
        """A training stage starts: ``modules`` learn, under ``objective``."""
        self.set_objective(objective)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Called before each training epoch (e.g. for a schedule inside the model)."""

    def calibrate(
        self, valid: ValidationSet, metric: str, stages: Sequence[StageConfig]
    ) -> Calibration | None:
        """After the last of ``stages`` (those run so far): choose on validation what is
        chosen rather than trained (e.g. fusion weights), apply it and return it; None when
        nothing is."""
        return None

    def apply_calibration(self, chosen: dict[str, float]) -> None:
        """Set values a :meth:`calibrate` chose (e.g. after loading a checkpoint)."""


M = TypeVar("M", bound=type[RecModel])
_REGISTRY: dict[str, type[RecModel]] = {}


def register(cls: M) -> M:
    """Class decorator: make a model buildable by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def model_class(name: str) -> type[RecModel]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise Ur4recError(f"unknown model {name!r}; known: {', '.join(model_names())}") from None


def model_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def check_config(cfg: RunConfig) -> type[RecModel]:
    """The config's model exists and its stages name only its modules and objectives; the
    model class. (config.validate checks what does not depend on the model.)"""
    from ur4rec.config import ConfigError

    cls = model_class(cfg.model.name)
    problems = []
    if cfg.stages and not cls.trainable:
        problems.append(f"stages: model {cls.name!r} is fitted, not trained; it has no stages")
    for i, stage in enumerate(cfg.stages if cls.trainable else []):
        key = f"stages[{i}] ({stage.name})"
        unknown = [m for m in [*stage.train, *stage.lr, *stage.clip] if m not in cls.module_names]
        if unknown:
            problems.append(
                f"{key}.train: must name modules of {cls.name} ({', '.join(cls.module_names)}), "
                f"got {unknown[0]!r}"
            )
        if stage.objective and stage.objective not in cls.objectives:
            problems.append(
                f"{key}.objective: must be one of {', '.join(cls.objectives)} for {cls.name}, "
                f"got {stage.objective!r}"
            )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return cls


def _load_builtin() -> None:
    # Importing the model modules runs their @register lines.
    from ur4rec.models import builtin  # noqa: F401
