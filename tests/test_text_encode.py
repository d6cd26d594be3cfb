"""Encoding with the real bundled all-MiniLM-L6-v2, on a handful of texts."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ur4rec.cli import main
from ur4rec.data.prepare import prepare_dataset
from ur4rec.text.corpus import import_texts
from ur4rec.text.encoder import TextEncoder, TrainableTextEncoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "seed-llm-texts"


@pytest.fixture(scope="module")
def encoder_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emb")


def test_embeddings_normalised_cached_and_incremental(encoder_cache: Path) -> None:
    texts = ["A space opera.", "A quiet family drama.", "A space adventure."]
    enc = TextEncoder(cache_dir=encoder_cache)
    vectors = enc.encode(texts)
    assert vectors.shape == (3, 384) and enc.last_encoded == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Similar texts are closer than dissimilar ones.
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    again = TextEncoder(cache_dir=encoder_cache)  # a new process would see the same cache
    np.testing.assert_allclose(again.encode(texts), vectors, atol=1e-6)
    assert again.last_encoded == 0 and again._model is None  # not even loaded
    changed = again.encode(["A space opera.", "A loud family comedy.", "A space adventure."])
    assert again.last_encoded == 1
    np.testing.assert_allclose(changed[[0, 2]], vectors[[0, 2]], atol=1e-6)


def test_trainable_encoder_freezes_all_but_last_layers() -> None:
    enc = TrainableTextEncoder(trainable_layers=1)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.5." in n for n in trainable)
    out = enc(["A space opera.", "A drama."])
    assert out.shape == (2, 384)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    out.sum().backward()
    frozen = next(p for n, p in enc.named_parameters() if ".layer.0." in n)
    assert frozen.grad is None


def test_cli_encode_and_import(tiny_folder: Path, capsys) -> None:
    prepare_dataset("ml-100k", source=tiny_folder)
    assert main(["texts", "encode", "--dataset", "ml-100k", "--kind", "items"]) == 0
    assert "6 encoded, 0 from the cache" in capsys.readouterr().out
    assert main(["texts", "encode", "--dataset", "ml-100k", "--kind", "items"]) == 0
    assert "0 encoded, 6 from the cache" in capsys.readouterr().out


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/seed-llm-texts not present")
def test_import_shared_item_descriptions_fills_gaps() -> None:
    from ur4rec.data.sources import recbole_folder

    if recbole_folder() is None:
        pytest.skip("recbole not installed")
    from ur4rec.data.prepare import open_dataset

    dataset = open_dataset("ml-100k-liked")
    texts, report = import_texts(dataset, "items", SHARED / "item_descriptions.json")
    assert len(texts) == 1682
    # 23 ids are absent and 4 are "No description available.": all 27 come from the template.
    assert len(report["filled_by_template"]) == 27
    assert report["imported"] == 1655
    assert texts["1"].startswith("A pioneering animated comedy")


def test_bfloat16_encoder_matches_float32_and_restores_threads() -> None:
    texts = [
        "Watched 20 movies, mostly drama (24%), comedy (21%). Favourite decades: the 1990s.",
        "A quiet family drama.",
        "A space adventure.",
    ]
    exact = TextEncoder(precision="float32").encode(texts)  # the corpus path
    # A service's path (its own batches, lengths padded to a multiple of 16) agrees with it.
    served = TextEncoder(precision="float32").encode(texts, remember=False)
    np.testing.assert_allclose(served, exact, atol=1e-5)
    before = torch.get_num_threads()
    fast = TextEncoder(precision="bfloat16", threads=2, batch_size=2)  # two batches, padded
    vectors = fast.encode(texts, remember=False)
    assert torch.get_num_threads() == before  # encoding threads do not leak into scoring
    assert vectors.dtype == np.float32 and vectors.shape == exact.shape
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * exact).sum(1).min() > 0.999
    # A text alone or beside a longer one gets the same vector: padding is masked out.
    alone = fast.encode(texts[1:2], remember=False)
    assert float(alone[0] @ vectors[1]) > 0.9999


def test_encoder_precision_is_checked() -> None:
    from ur4rec.errors import Ur4recError
    from ur4rec.text.encoder import resolve_precision

    with pytest.raises(Ur4recError, match="unknown encoder precision 'float16'"):
        TextEncoder(precision="float16")
    with pytest.raises(Ur4recError, match="float32"):
        TextEncoder(precision="bfloat16", cache_dir="unused")  # cached vectors stay exact
    assert resolve_precision("auto") in ("float32", "bfloat16")


def _fake_vectors(texts: list[str], show_progress: bool = False, bulk: bool = True) -> np.ndarray:
    """A stand-in for the model: a fixed vector per text, without loading MiniLM."""
    seeds = [int.from_bytes(t.encode()[:8].ljust(8, b"."), "little") for t in texts]
    return np.stack([np.random.default_rng(s).standard_normal(8) for s in seeds]).astype(np.float32)


def test_store_shards_gather_and_memory_map(tmp_path: Path) -> None:
    from ur4rec.text.vectors import VectorStore, digest

    store = VectorStore(tmp_path / "s")
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 1, 5)]
    keys = [[digest(f"t{b}-{i}") for i in range(len(v))] for b, v in enumerate(blocks)]
    for k, v in zip(keys, blocks, strict=True):
        store.add(k, v)
    flat, every = [d for k in keys for d in k], np.concatenate(blocks)
    again = VectorStore(tmp_path / "s")  # reads the keys; the vectors stay on disk
    assert len(again) == 9 and len(list((tmp_path / "s").glob("*.keys"))) == 3
    order = np.array([8, 0, 4, 3, 3, 7])
    rows = again.rows([flat[i] for i in order])
    np.testing.assert_array_equal(again.gather(rows, block=2), every[order])
    mapped = again.gather(rows, out=tmp_path / "m.npy", block=4)
    assert isinstance(mapped, np.memmap) and mapped.flags.writeable  # copy-on-write
    np.testing.assert_array_equal(mapped, every[order])
    mapped[0] = 0  # never reaches the file
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy")[0], every[8])
    assert again.missing([flat[0], digest("new"), digest("new")]) == [1]
    with pytest.raises(ValueError, match="dim"):
        again.add([digest("x")], np.zeros((1, 5), np.float32))


def test_encoding_in_chunks_resumes_after_a_kill(tmp_path: Path, monkeypatch) -> None:
    texts = [f"item text number {i}" for i in range(7)]
    calls: list[int] = []

    def dies_on_third(self, batch, show_progress=False, bulk=True):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while encoding the third chunk
        return _fake_vectors(batch)

    monkeypatch.setattr(TextEncoder, "_encode_new", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        TextEncoder(cache_dir=tmp_path, chunk=2).encode(texts)
    monkeypatch.setattr(TextEncoder, "_encode_new", lambda self, b, *a, **k: _fake_vectors(b))
    resumed = TextEncoder(cache_dir=tmp_path, chunk=2)
    vectors = resumed.encode(texts)
    assert resumed.last_encoded == 3  # the two finished chunks were kept
    np.testing.assert_array_equal(vectors, _fake_vectors(texts))
    mapped = resumed.encode_mapped(texts)
    np.testing.assert_array_equal(mapped, vectors)
    assert isinstance(TextEncoder(cache_dir=tmp_path).encode_mapped(texts), np.memmap)
    # A damaged shard is not trusted: its texts are encoded again.
    shard = sorted((tmp_path / "all-MiniLM-L6-v2").glob("*.keys"))[0]
    shard.write_bytes(shard.read_bytes()[:-5])
    damaged = TextEncoder(cache_dir=tmp_path, chunk=2)
    np.testing.assert_array_equal(damaged.encode(texts), vectors)
    assert damaged.last_encoded == 2


def test_single_file_cache_is_migrated(tmp_path: Path) -> None:
    import hashlib
    import json

    folder = tmp_path / "all-MiniLM-L6-v2"
    folder.mkdir()
    texts = ["b text", "a text"]
    vectors = _fake_vectors(texts)
    index = {hashlib.sha256(t.encode()).hexdigest(): i for i, t in enumerate(texts)}
    (folder / "index.json").write_text(json.dumps(index))
    np.save(folder / "vectors.npy", vectors)
    enc = TextEncoder(cache_dir=tmp_path)
    np.testing.assert_array_equal(enc.encode(texts[::-1]), vectors[::-1])
    assert enc.last_encoded == 0 and not (folder / "index.json").exists()


def test_trainable_encoder_caches_the_frozen_layers_exactly() -> None:
    """The cached path (frozen layers' output kept per text, only the trained layer run)
    gives the full model's embeddings, for texts of different lengths in one batch, and its
    gradients reach only the trained layer."""
    enc = TrainableTextEncoder(trainable_layers=1).eval()
    texts = ["A space opera.", "A long, slow and very quiet drama about a family in winter.", "x"]
    full = enc._full(texts)
    cached = enc(texts)
    assert set(enc._frozen) == set(texts)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    again = enc([texts[2], texts[0]])  # from the cache, another order and batch
    torch.testing.assert_close(again, full[[2, 0]], atol=1e-5, rtol=1e-4)
    again.sum().backward()
    assert all(p.grad is not None for p in enc.trainable_parameters())
    frozen = next(p for n, p in enc.named_parameters() if ".layer.0." in n)
    assert frozen.grad is None
    # Past the budget nothing more is kept and texts are encoded from the start.
    small = TrainableTextEncoder(trainable_layers=1, cache_bytes=0).eval()
    torch.testing.assert_close(small(texts), full, atol=1e-5, rtol=1e-4)
    assert small._frozen == {}
    enc.load_state_dict(enc.state_dict())  # new weights: the kept outputs are dropped
    assert enc._frozen == {}


def test_encoder_runtime_is_resolved_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ur4rec.errors import Ur4recError
    from ur4rec.text import onnx_runtime
    from ur4rec.text.onnx_runtime import resolve_runtime

    assert resolve_runtime("auto", "float32") == "onnx"  # installed with ur4rec
    assert resolve_runtime("auto", "bfloat16") == "torch"  # bfloat16 is PyTorch's
    assert resolve_runtime("torch", "float32") == "torch"
    with pytest.raises(Ur4recError, match="unknown encoder runtime 'tensorrt'"):
        TextEncoder(runtime="tensorrt")
    with pytest.raises(Ur4recError, match="float32, not bfloat16"):
        resolve_runtime("onnx", "bfloat16")
    monkeypatch.setattr(onnx_runtime, "onnx_available", lambda: False)
    assert resolve_runtime("auto", "float32") == "torch"
    with pytest.raises(Ur4recError, match="pip install onnxruntime onnx"):
        resolve_runtime("onnx", "float32")


def test_onnx_runtime_encodes_as_pytorch_does() -> None:
    texts = ["A space opera.", "A quiet family drama about three sisters and their old house."]
    exact = TextEncoder(runtime="torch").encode(texts, remember=False)
    onnx = TextEncoder(runtime="onnx")
    together = onnx.encode(texts, remember=False)  # one padded batch
    alone = np.concatenate([onnx.encode([t], remember=False) for t in texts])
    assert onnx.runtime == "onnx" and onnx._onnx is not None
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert (together * exact).sum(1).min() > 0.99999
    assert (alone * exact).sum(1).min() > 0.99999
    many = [f"Film number {i}, a {'long ' * i}story." for i in range(11)]  # batches of 8 and 3
    np.testing.assert_allclose(
        onnx.encode(many, remember=False), TextEncoder().encode(many, remember=False), atol=1e-5
    )


def test_onnx_runtime_falls_back_under_auto_only(monkeypatch, capsys) -> None:
    from ur4rec.errors import Ur4recError
    from ur4rec.text import onnx_runtime

    def broken(*args, **kwargs):
        raise Ur4recError("cannot run the sentence encoder in ONNX Runtime: boom")

    monkeypatch.setattr(onnx_runtime, "OnnxSentenceEncoder", broken)
    auto = TextEncoder(runtime="auto")
    vectors = auto.encode(["A space opera."], remember=False)
    assert vectors.shape == (1, 384) and auto.runtime == "torch"
    assert "stays in PyTorch: cannot run the sentence encoder in ONNX Runtime: boom" in (
        capsys.readouterr().err
    )
    with pytest.raises(Ur4recError, match="boom"):
        TextEncoder(runtime="onnx").encode(["A space opera."], remember=False)
