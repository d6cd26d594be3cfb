"""A synthetic catalogue and log where order and text both carry signal, at any size.

    ur4rec data synth NAME --users U --items I --interactions N --seed S

The world:

- ``topics`` latent topics (default 24), each with a small English vocabulary. Every item has
  one topic; within it, popularity follows a power law (Zipf exponent ``zipf``, default 1.1)
  over a random order of the topic's items.
- Users' history lengths are log-normal, at least 5, scaled to ``interactions`` in total.
  A user starts on a topic drawn from their own few favourite topics; after each event they
  stay on the current topic with probability ``stay`` (default 0.75), else move on: with
  probability ``drift`` (default 0.6) to the topic that follows it (topic k -> k + 1, so
  taste drifts in a direction a sequence model can learn), otherwise back to a favourite.
  Within a topic the item is drawn by popularity. So the next item depends on the recent
  ones, not on the whole bag of them: SASRec should beat popularity and EASE here.
- An item's text is its title (two words of its topic) and a description of four words from
  its topic's vocabulary and one from another topic (noise), with its topic as category: a
  text model can tell topics apart.

Deterministic for a seed. Users are generated position by position over blocks of users
(vectorised; no Python loop per interaction), straight into the prepared arrays, so memory
is the output's (about 20 bytes per interaction) plus one block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ur4rec.data.dataset import Dataset, finish_dataset
from ur4rec.data.raw import ItemInfo
from ur4rec.errors import Ur4recError

VOCABULARIES = (
    ("hiking", "trail", "summit", "boots", "ridge", "backpack", "compass", "valley"),
    ("baking", "flour", "oven", "sourdough", "pastry", "butter", "yeast", "crust"),
    ("jazz", "saxophone", "swing", "trumpet", "improvised", "bebop", "club", "groove"),
    ("astronomy", "telescope", "galaxy", "orbit", "nebula", "comet", "planet", "stars"),
    ("gardening", "soil", "seeds", "compost", "bloom", "pruning", "greenhouse", "roses"),
    ("cycling", "bike", "pedal", "gears", "helmet", "road", "saddle", "sprint"),
    ("chess", "opening", "gambit", "endgame", "board", "knight", "bishop", "tactics"),
    ("photography", "lens", "shutter", "aperture", "portrait", "exposure", "tripod", "film"),
    ("knitting", "yarn", "needles", "wool", "stitch", "scarf", "pattern", "cardigan"),
    ("sailing", "boat", "wind", "harbour", "mast", "knots", "tide", "anchor"),
    ("coffee", "espresso", "roast", "beans", "grinder", "brew", "crema", "arabica"),
    ("history", "empire", "medieval", "archive", "battle", "dynasty", "castle", "ancient"),
    ("fitness", "workout", "strength", "cardio", "weights", "stretch", "training", "gym"),
    ("poetry", "verse", "rhyme", "stanza", "sonnet", "lyric", "metre", "ode"),
    ("robotics", "servo", "sensor", "circuit", "arduino", "motor", "autonomous", "gripper"),
    ("camping", "tent", "campfire", "lantern", "sleeping", "stove", "forest", "night"),
    ("painting", "canvas", "brush", "oil", "watercolour", "palette", "easel", "pigment"),
    ("skiing", "snow", "slope", "powder", "lift", "alpine", "poles", "piste"),
    ("wine", "vineyard", "grape", "cellar", "vintage", "tannin", "barrel", "red"),
    ("gaming", "console", "controller", "quest", "level", "multiplayer", "arcade", "pixel"),
    ("birdwatching", "binoculars", "feathers", "migration", "nest", "songbird", "owl", "wetland"),
    ("pottery", "clay", "kiln", "glaze", "wheel", "ceramic", "vase", "porcelain"),
    ("surfing", "waves", "board", "reef", "swell", "wetsuit", "beach", "barrel"),
    ("cooking", "spices", "curry", "wok", "simmer", "recipe", "herbs", "broth"),
    ("running", "marathon", "pace", "sneakers", "track", "stride", "miles", "race"),
    ("theatre", "stage", "actors", "script", "curtain", "rehearsal", "drama", "audience"),
    ("fishing", "rod", "reel", "lure", "river", "trout", "bait", "catch"),
    ("yoga", "pose", "breath", "mat", "balance", "calm", "flow", "meditation"),
    ("woodwork", "timber", "chisel", "joinery", "oak", "saw", "plane", "workbench"),
    ("travel", "passport", "journey", "map", "luggage", "flight", "hostel", "abroad"),
)
START = 1_600_000_000  # the first event's time (epoch seconds)


@dataclass(frozen=True)
class SynthSpec:
    name: str
    users: int
    items: int
    interactions: int
    seed: int = 0
    topics: int = 24
    zipf: float = 1.1
    stay: float = 0.75
    drift: float = 0.6
    favourites: int = 3
    max_length: int = 2000

    def check(self) -> None:
        from ur4rec.data.importer import NAME

        if not NAME.match(self.name):
            raise Ur4recError(f"dataset name {self.name!r}: letters, digits, '.', '_', '-' only")
        if self.users < 1 or self.items < 2:
            raise Ur4recError("synth needs at least 1 user and 2 items")
        if not 1 <= self.topics <= len(VOCABULARIES):
            raise Ur4recError(f"topics must be 1 to {len(VOCABULARIES)}")
        if self.items < self.topics:
            raise Ur4recError(f"items ({self.items}) must be at least topics ({self.topics})")
        if self.interactions < 5 * self.users:
            raise Ur4recError(
                f"interactions ({self.interactions}) must be at least 5 per user "
                f"({5 * self.users} for {self.users} users)"
            )
        if self.interactions > self.users * self.max_length:
            raise Ur4recError(
                f"interactions ({self.interactions}) exceed {self.max_length} per user"
            )
        for key in ("stay", "drift"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise Ur4recError(f"{key} must be in [0, 1]")


def _lengths(spec: SynthSpec, rng: np.random.Generator) -> np.ndarray:
    """History lengths: log-normal, each in [5, max_length], summing to ``interactions``."""
    raw = rng.lognormal(0.0, 0.8, spec.users)
    spare = spec.interactions - 5 * spec.users
    extra = np.floor(raw / raw.sum() * spare).astype(np.int64)
    extra = np.minimum(extra, spec.max_length - 5)
    short = spare - int(extra.sum())  # rounding and the cap: hand out one by one, in order
    while short > 0:
        room = np.flatnonzero(extra < spec.max_length - 5)
        take = room[: min(short, len(room))]
        extra[take] += 1
        short -= len(take)
    return extra + 5


def _catalogue(spec: SynthSpec, rng: np.random.Generator):
    """Item topics, each topic's items in popularity order, and their cumulative weights."""
    topic = np.concatenate(
        [np.arange(spec.topics), rng.integers(0, spec.topics, spec.items - spec.topics)]
    )
    rng.shuffle(topic)
    order = np.argsort(topic, kind="stable")  # items grouped by topic
    counts = np.bincount(topic, minlength=spec.topics)
    starts = np.concatenate([[0], np.cumsum(counts)])
    cdf = np.empty(spec.items, dtype=np.float64)
    for k in range(spec.topics):  # a loop over topics, not items
        members = order[starts[k] : starts[k + 1]]
        rng.shuffle(members)
        order[starts[k] : starts[k + 1]] = members
        weight = 1.0 / np.arange(1, len(members) + 1) ** spec.zipf
        cdf[starts[k] : starts[k + 1]] = k + np.cumsum(weight) / weight.sum()
    cdf[starts[1:] - 1] = np.arange(1, spec.topics + 1)  # exact ends: no draw falls past
    return topic, order, cdf


def _texts(spec: SynthSpec, topic: np.ndarray, rng: np.random.Generator) -> list[ItemInfo]:
    vocab = np.array([v[1:] for v in VOCABULARIES[: spec.topics]])  # [topics, 7]
    words = rng.integers(0, vocab.shape[1], (spec.items, 6))
    noise_topic = (topic + rng.integers(1, max(spec.topics, 2), spec.items)) % spec.topics
    noise = vocab[noise_topic, rng.integers(0, vocab.shape[1], spec.items)]
    names = [v[0] for v in VOCABULARIES[: spec.topics]]
    infos = []
    for i in range(spec.items):
        w = vocab[topic[i], words[i]]
        title = f"{w[0].capitalize()} {w[1]} {i}"
        description = f"About {w[2]}, {w[3]}, {w[4]} and {w[5]}, with some {noise[i]}."
        infos.append(ItemInfo(title, None, (names[topic[i]],), description))
    return infos


BLOCK = 65536  # users generated together; part of the data's definition (the draws' order)


def synthesise(spec: SynthSpec) -> Dataset:
    """The synthetic dataset ``spec`` describes (see the module doc)."""
    block = BLOCK
    spec.check()
    rng = np.random.default_rng(spec.seed)
    lengths = _lengths(spec, rng)
    topic, order, cdf = _catalogue(spec, rng)
    offsets = np.zeros(spec.users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    item = np.empty(spec.interactions, dtype=np.int64)
    stamp = np.empty(spec.interactions, dtype=np.int64)
    for first in range(0, spec.users, block):
        # Longest first, so the users still going at a step are a prefix of the block.
        users = first + np.argsort(-lengths[first : first + block], kind="stable")
        span = lengths[users]
        favourites = rng.integers(0, spec.topics, (len(users), spec.favourites))
        current = favourites[:, 0].copy()
        clock = START + rng.integers(0, 365 * 86400, len(users))
        for step in range(int(span[0])):
            n = int(np.searchsorted(-span, -step, side="left"))  # users with length > step
            draw = np.searchsorted(cdf, current[:n] + rng.random(n), side="right")
            where = offsets[users[:n]] + step
            item[where] = order[np.minimum(draw, spec.items - 1)]
            stamp[where] = clock[:n]
            clock[:n] += 60 + rng.integers(0, 3 * 86400, n)
            moves = rng.random(n) >= spec.stay
            ahead = rng.random(n) < spec.drift
            back = favourites[np.arange(n), rng.integers(0, spec.favourites, n)]
            current[:n] = np.where(
                moves, np.where(ahead, (current[:n] + 1) % spec.topics, back), current[:n]
            )
    options = {k: v for k, v in asdict(spec).items() if k != "name"}
    return finish_dataset(
        spec.name,
        [str(u) for u in range(spec.users)],
        [str(i) for i in range(spec.items)],
        _texts(spec, topic, rng),
        offsets,
        item,
        np.ones(spec.interactions, dtype=np.float32),
        stamp,
        {"options": {"release": "synth", **options}, "source": "synth", "source_files": {},
         "domain": "items"},
    )  # fmt: skip
