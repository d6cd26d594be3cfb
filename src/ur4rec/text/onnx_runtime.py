"""ONNX Runtime for the sentence encoder's transformer, for a few texts at a time.

A service encodes one new text per request. At that size PyTorch's eager kernels spend much
of their time around the matrix products rather than in them; with ONNX Runtime's fused
kernels a POST /items of a 60-token description takes 39 ms instead of 57 on an AVX2 CPU
(benchmarks/add_items.py), a 130-token text encodes 1.2 times as fast, and the vectors equal
float32 PyTorch's to a cosine of 0.9999999 (benchmarks/encoder_precision.py). Batches of
dozens gain nothing, so corpus encoding stays in PyTorch.

The transformer (the sentence-transformers model's first module) is exported from the
loaded weights with ``torch.onnx`` (about 3 s, once per process and model); the modules after
it (pooling, normalisation) still run in PyTorch, so any pooling the model declares is kept.
The price is memory: for all-MiniLM-L6-v2 the process grows by about 250 MB (ONNX Runtime's
copy of the weights, about 160 MB, and what the exporter leaves behind).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import importlib.util
import io
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from ur4rec.errors import Ur4recError

RUNTIMES = ("auto", "torch", "onnx")
# Texts per ONNX Runtime call: its gain is at a few texts, and small calls keep the memory of
# its activations small.
BATCH = 8
# What a text model's tokenizer may hand its transformer; exported as named inputs.
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_available() -> bool:
    """Whether ONNX Runtime and the ``onnx`` package (which the exporter needs) are here."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def resolve_runtime(runtime: str, precision: str) -> str:
    """``torch`` or ``onnx`` for a requested runtime and a resolved precision: ``auto`` is
    ONNX Runtime where it is installed and the precision is float32 (bfloat16 is PyTorch's)."""
    if runtime not in RUNTIMES:
        raise Ur4recError(f"unknown encoder runtime {runtime!r}; one of {RUNTIMES}")
    if runtime == "onnx":
        if precision != "float32":
            raise Ur4recError("the onnx encoder runtime computes in float32, not " + precision)
        if not onnx_available():
            raise Ur4recError(
                "the onnx encoder runtime needs onnxruntime and onnx: pip install onnxruntime onnx"
            )
        return "onnx"
    if runtime == "auto" and precision == "float32" and onnx_available():
        return "onnx"
    return "torch"


class _Exported(nn.Module):
    """The first module as a function of positional tensors, which is what the exporter
    traces."""

    def __init__(self, module: nn.Module, names: tuple[str, ...], output: str) -> None:
        super().__init__()
        self.module, self.names, self.output = module, names, output

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.module(dict(zip(self.names, tensors, strict=True)))[self.output]


# Sessions by (weights digest, inputs, output, threads): a process exports each model once
# and keeps one copy of its weights in ONNX Runtime (its run() may be called from threads).
_SESSIONS: dict[tuple[str, tuple[str, ...], str, int], Any] = {}


def _tokenize(model: Any, texts: list[str]) -> dict[str, Any]:
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def _session(model: Any, names: tuple[str, ...], output: str, threads: int) -> Any:
    """An ONNX Runtime session of ``model``'s first module, exported on the first call for
    its weights."""
    import onnxruntime as ort

    key = (_weights_key(model), names, output, threads)
    if key in _SESSIONS:
        return _SESSIONS[key]
    sample = _tokenize(model, ["an example text for the exporter", "a second"])
    wrapper = _Exported(model[0], names, output).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python branches on shapes in the model's code; the graph is
        # checked against PyTorch's output after export instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(sample[n] for n in names),
            buffer,
            input_names=list(names),
            output_names=[output],
            dynamic_axes={**axes, output: {0: "batch", 1: "tokens"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: seconds, not the dynamo one's 15 s
        )
    data = buffer.getvalue()
    del buffer, wrapper, sample
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Without the arena, memory a large batch took is given back rather than kept for good.
    options.enable_cpu_mem_arena = False
    # Idle pool threads would otherwise spin for a while after each text, taking the cores
    # the service scores on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    del data
    _release_memory()
    _SESSIONS[key] = session
    return session


def _weights_key(model: nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy())  # hashed in place, no copy
    return digest.hexdigest()


def _release_memory() -> None:
    """Hands what the exporter freed back to the system where glibc can (about 20 MB of the
    100 MB it takes for all-MiniLM-L6-v2; the rest stays in the allocator's arenas)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class OnnxSentenceEncoder:
    """``model``'s sentence embeddings with its transformer in ONNX Runtime. Raises
    :class:`Ur4recError` when the model cannot be exported or its export disagrees with
    PyTorch."""

    def __init__(self, model: Any, threads: int | None = None) -> None:
        self.model = model
        first = model[0]
        self.output = getattr(first, "module_output_name", None) or "token_embeddings"
        sample = _tokenize(model, ["probe"])
        self.names = tuple(n for n in _INPUTS if n in sample)
        if "input_ids" not in self.names:
            raise Ur4recError("the onnx encoder runtime needs a text model with input_ids")
        try:
            threads = threads or torch.get_num_threads()
            self.session = _session(model, self.names, self.output, threads)
        except Exception as exc:  # the exporter and ONNX Runtime raise many kinds
            raise Ur4recError(f"cannot run the sentence encoder in ONNX Runtime: {exc}") from exc
        check = ["a short check", "and a somewhat longer one, so that the batch is padded"]
        with torch.inference_mode():
            want = model(_tokenize(model, check))["sentence_embedding"].float()
        got = self.encode(check)
        if not torch.allclose(got, want, atol=1e-4):
            raise Ur4recError("the sentence encoder's ONNX export disagrees with PyTorch")

    def encode(self, texts: list[str]) -> torch.Tensor:
        """[len(texts), dim] sentence embeddings (normalised where the model normalises)."""
        features = _tokenize(self.model, texts)
        feeds = {n: np.ascontiguousarray(features[n].numpy(), dtype=np.int64) for n in self.names}
        (tokens,) = self.session.run(None, feeds)
        features[self.output] = torch.from_numpy(tokens)
        with torch.inference_mode():
            for module in list(self.model)[1:]:
                features = module(features)
        return features["sentence_embedding"].float()


def warn_fallback(reason: str) -> None:
    """The service falls back to PyTorch when ``auto`` finds ONNX Runtime but cannot use it."""
    print(f"warning: sentence encoder stays in PyTorch: {reason}", file=sys.stderr)
