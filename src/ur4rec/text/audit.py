"""Leakage audit: do user texts mention the items they will be tested on?

For each user with a text, the audit checks whether the text mentions the title of the user's
test item, of the validation item, and, as a control, of random items the user never rated.
A text written from the training part only mentions held-out titles about as often as random
ones; a leaked text mentions them far more often. Leakage is flagged when the held-out share
is above the control share by a one-sided two-proportion z-test (z > 3) and by at least two
percentage points.

A mention counts only when the user's training titles do not explain it: MovieLens-100K lists
some films twice under two ids, and a title can contain another ("Scream" in "Scream 2"), so a
text built from the training part can name a held-out title without knowing it. Those cases
are reported as ``explained`` and not counted, for held-out and control items alike.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from ur4rec.data.dataset import Dataset
from ur4rec.data.raw import ItemInfo
from ur4rec.data.splits import make_split, targets

CONTROLS_PER_USER = 5
AUDIT_SEED = 7
_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "das", "der", "die", "el")


def normalise(text: str) -> str:
    """Lower case, accents and punctuation removed, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^a-z0-9]+", " ", text.replace("&", " and "))
    return f" {text.strip()} "


def title_forms(info: ItemInfo) -> list[str]:
    """Normalised forms of a title: without the year, a trailing ', The' moved or dropped,
    a bracketed alternative title on its own."""
    title = re.sub(r"\s*\(\d{4}\)\s*$", "", info.title).strip()
    forms = {title}
    alt = re.match(r"^(.*?)\s*\((.+)\)\s*$", title)  # 'Seven (Se7en)' / foreign titles
    if alt:
        forms.update({alt.group(1), alt.group(2)})
    out = set()
    for form in forms:
        match = re.match(r"^(.*), (\w+)$", form)
        if match and match.group(2).lower() in _ARTICLES:
            out.add(f"{match.group(2)} {match.group(1)}")
            form = match.group(1)
        out.add(form)
    normalised = {normalise(f) for f in out}
    # Bare articles or empty strings would match everything.
    return sorted(f for f in normalised if f.strip() and f.strip() not in _ARTICLES)


def mentions(text: str, info: ItemInfo) -> bool:
    haystack = normalise(text)
    return any(form in haystack for form in title_forms(info))


def _explained(info: ItemInfo, training_titles: str) -> bool:
    """The title occurs among the user's training titles (a duplicate or a containing one)."""
    return any(form in training_titles for form in title_forms(info))


@dataclass
class AuditResult:
    users: int
    test_share: float
    valid_share: float
    control_share: float
    z_test: float
    z_valid: float
    leaked: bool
    missing_users: int
    explained: int  # mentions of held-out titles that training titles account for
    examples: list[dict[str, str]]

    def to_json(self) -> dict[str, object]:
        return self.__dict__.copy()


def _z(share: float, n: int, control: float, m: int) -> float:
    pooled = (share * n + control * m) / (n + m)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / n + 1 / m), 1e-12))
    return (share - control) / se


def audit_texts(
    dataset: Dataset, texts: dict[str, str], scheme: str = "leave-one-out"
) -> AuditResult:
    split = make_split(dataset, scheme)
    valid_target = dict(
        zip(split.valid.users.tolist(), targets(dataset, split.valid).tolist(), strict=True)
    )
    test_target = dict(
        zip(split.test.users.tolist(), targets(dataset, split.test).tolist(), strict=True)
    )
    rng = np.random.default_rng(AUDIT_SEED)
    n_test = n_valid = n_control = 0
    hit_test = hit_valid = hit_control = 0
    examples: list[dict[str, str]] = []
    missing = explained = 0
    for user in sorted(test_target):
        text = texts.get(dataset.user_ids[user])
        if text is None:
            missing += 1
            continue
        train = split.train.items(dataset, user).tolist()
        training_titles = " ".join(normalise(dataset.item_info[i].title) for i in train)

        def counts(item: int, text: str = text, training_titles: str = training_titles) -> bool:
            nonlocal explained
            info = dataset.item_info[item]
            if not mentions(text, info):
                return False
            if _explained(info, training_titles):
                explained += 1
                return False
            return True

        item = test_target[user]
        n_test += 1
        if counts(item):
            hit_test += 1
            if len(examples) < 5:
                examples.append(
                    {"user": dataset.user_ids[user], "test_item": dataset.item_info[item].title}
                )
        if user in valid_target:
            n_valid += 1
            hit_valid += counts(valid_target[user])
        rated = set(dataset.sequence(user).tolist())
        unrated = [i for i in range(dataset.n_items) if i not in rated]
        for i in rng.choice(unrated, size=min(CONTROLS_PER_USER, len(unrated)), replace=False):
            n_control += 1
            hit_control += counts(int(i))
    if n_test == 0:
        raise ValueError("no evaluated user has a text: are the ids raw user ids of this dataset?")
    test_share = hit_test / n_test
    valid_share = hit_valid / max(n_valid, 1)
    control_share = hit_control / max(n_control, 1)
    z_test = _z(test_share, n_test, control_share, max(n_control, 1))
    z_valid = _z(valid_share, max(n_valid, 1), control_share, max(n_control, 1))
    leaked = any(
        z > 3 and share - control_share >= 0.02
        for z, share in ((z_test, test_share), (z_valid, valid_share))
    )
    return AuditResult(
        users=n_test,
        test_share=test_share,
        valid_share=valid_share,
        control_share=control_share,
        z_test=z_test,
        z_valid=z_valid,
        leaked=leaked,
        missing_users=missing,
        explained=explained,
        examples=examples,
    )
