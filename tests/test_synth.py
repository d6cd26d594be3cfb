"""`ur4rec data synth`: deterministic, exact sizes, order and text carrying signal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ur4rec.cli import main
from ur4rec.data.prepare import open_dataset
from ur4rec.data.synth import SynthSpec, synthesise
from ur4rec.errors import Ur4recError


def test_exact_sizes_and_the_same_data_for_a_seed() -> None:
    spec = SynthSpec("s", users=300, items=200, interactions=6000, seed=3)
    a, b = synthesise(spec), synthesise(spec)
    assert a.content_hash == b.content_hash
    assert (a.n_users, a.n_items, a.n_interactions) == (300, 200, 6000)
    assert a.lengths.min() >= 5 and a.lengths.sum() == 6000
    assert synthesise(SynthSpec("s", 300, 200, 6000, seed=4)).content_hash != a.content_hash
    # Times rise within every user's history.
    for u in range(a.n_users):
        stamps = a.timestamp[a.offsets[u] : a.offsets[u + 1]]
        assert (np.diff(stamps) > 0).all()


def test_the_next_item_follows_the_current_topic() -> None:
    ds = synthesise(SynthSpec("s", users=400, items=240, interactions=12000, seed=1, topics=12))
    topic = np.array([info.categories[0] for info in ds.item_info])
    same = pairs = 0
    for u in range(ds.n_users):
        t = topic[ds.sequence(u)]
        pairs += len(t) - 1
        same += int((t[1:] == t[:-1]).sum())
    # stay 0.75: about 3/4 of steps stay on the topic, against 1/12 by chance.
    assert 0.65 < same / pairs < 0.9
    assert len(set(topic)) == 12
    # Popularity is a power law: the most popular item is far above the median one.
    counts = np.sort(np.bincount(ds.item, minlength=ds.n_items))[::-1]
    assert counts[0] > 10 * max(np.median(counts), 1)
    # An item's text names words of its own topic.
    info = ds.item_info[0]
    assert info.description.startswith("About ") and info.categories


def test_cli_synth_writes_a_dataset_every_command_takes(capsys) -> None:
    argv = ["data", "synth", "syn", "--users", "50", "--items", "40", "--interactions", "500",
            "--seed", "2", "--json"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["counts"]["interactions"] == 500 and manifest["options"]["seed"] == 2
    assert open_dataset("syn").n_users == 50
    assert main(["baseline", "pop", "--dataset", "syn", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 50


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interactions": 10}, "at least 5 per user"),
        ({"items": 1}, "at least 1 user and 2 items"),
        ({"topics": 99}, "topics must be"),
        ({"name": "../x"}, "dataset name"),
    ],
)
def test_bad_sizes_are_named(kwargs: dict, message: str) -> None:
    spec = {"name": "s", "users": 10, "items": 30, "interactions": 100, **kwargs}
    with pytest.raises(Ur4recError, match=message):
        synthesise(SynthSpec(**spec))
