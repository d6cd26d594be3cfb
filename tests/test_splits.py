import numpy as np
import pytest

from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, interaction_counts, make_split, padded_prefixes, targets
from ur4rec.errors import Ur4recError


@pytest.mark.parametrize("scheme", ["leave-one-out", "ratio", "rehearsal"])
def test_no_target_in_its_own_input_and_chronological(tiny: Dataset, scheme: str) -> None:
    split = make_split(tiny, scheme)
    for part in (split.valid, split.test):
        for user, length, target in zip(part.users, part.lengths, targets(tiny, part), strict=True):
            seq = tiny.sequence(user)
            stamps = tiny.timestamp[tiny.offsets[user] : tiny.offsets[user + 1]]
            assert target == seq[length]
            # Input is a strict prefix: nothing at or after the target's position.
            assert np.all(stamps[:length] <= stamps[length])
            assert target not in seq[:length]  # MovieLens has no repeats
        # The training part of each user ends before that user's evaluated target.
        train_len = split.train.lengths[part.users]
        assert np.all(train_len <= part.lengths)


def test_leave_one_out_positions(tiny: Dataset) -> None:
    split = make_split(tiny)
    assert split.train.lengths.tolist() == [3, 2, 3, 2]  # user 4 (2 items) is train-only
    assert split.valid.users.tolist() == [0, 1, 2]
    assert split.valid.lengths.tolist() == [3, 2, 3]
    assert split.test.lengths.tolist() == [4, 3, 4]  # test input includes the validation item
    assert [tiny.item_ids[i] for i in targets(tiny, split.test)] == ["14", "15", "11"]


def test_rehearsal_is_leave_one_out_one_step_back(tiny: Dataset) -> None:
    loo, back = make_split(tiny), make_split(tiny, "rehearsal")
    # Its test cases are leave-one-out's validation cases: same users, inputs and targets.
    assert back.test.users.tolist() == loo.valid.users.tolist() == [0, 1, 2]
    assert back.test.lengths.tolist() == loo.valid.lengths.tolist()
    assert targets(tiny, back.test).tolist() == targets(tiny, loo.valid).tolist()
    assert back.valid.lengths.tolist() == [2, 1, 2]
    assert np.array_equal(back.train.lengths[back.valid.users], back.valid.lengths)
    # No part reaches a user's last item; user 3 (2 items) keeps its first for training.
    assert back.train.lengths.tolist() == [2, 1, 2, 1]
    assert np.all(back.test.lengths + 1 < tiny.lengths[back.test.users])
    with pytest.raises(Ur4recError, match="takes no value"):
        make_split(tiny, "rehearsal:1")


def test_ratio_split(tiny: Dataset) -> None:
    split = make_split(tiny, "ratio")
    # Lengths 5,4,5,2: train floor(.8n) = 4,3,4,1; 90% prefix floor(.9n) = 4,3,4,1.
    assert split.train.lengths.tolist() == [4, 3, 4, 1]
    assert split.valid.users.tolist() == []  # no user has a non-empty 80-90% part
    assert split.test.users.tolist() == [0, 1, 2, 3]
    assert split.test.lengths.tolist() == [4, 3, 4, 1]


def test_split_is_deterministic_and_validated(tiny: Dataset) -> None:
    a, b = make_split(tiny), make_split(tiny)
    assert np.array_equal(a.test.lengths, b.test.lengths)
    with pytest.raises(Ur4recError, match="unknown split scheme 'random'"):
        make_split(tiny, "random")
    with pytest.raises(Ur4recError, match="unknown split 'train'"):
        a.part("train")


def test_padded_prefixes_left_pad_and_truncate(tiny: Dataset) -> None:
    users = np.array([0, 3])
    out = padded_prefixes(tiny, users, np.array([4, 1]))
    assert out.tolist() == [[0, 1, 2, 3], [PAD, PAD, PAD, 2]]
    out = padded_prefixes(tiny, users, np.array([4, 1]), max_len=2)
    assert out.tolist() == [[2, 3], [PAD, 2]]


def test_training_popularity_excludes_held_out(tiny: Dataset) -> None:
    split = make_split(tiny)
    counts = interaction_counts(tiny, split.train)
    assert counts.sum() == split.train.lengths.sum() == 10
    # Item "15" is only ever a validation/test item.
    assert counts[tiny.item_index("15")] == 0


def test_repeats_items_finds_an_item_a_history_holds_twice(tiny: Dataset) -> None:
    import dataclasses

    from ur4rec.data.splits import repeats_items

    split = make_split(tiny)
    assert not repeats_items(tiny, split.train)
    last_user = len(tiny.user_ids) - 1
    item = tiny.item.copy()
    start = tiny.offsets[last_user]
    item[start + 1] = item[start]  # inside the last user's training part
    again = dataclasses.replace(tiny, item=item)
    for chunk in (1, 3, 1 << 22):  # one user per block, a few, all at once
        assert repeats_items(again, split.train, chunk=chunk)
    # A repeat only after the training part (the test item seen before) is not in it.
    item = tiny.item.copy()
    end = tiny.offsets[1]  # user 0: test item = validation item, both after training
    assert split.train.lengths[0] <= end - tiny.offsets[0] - 2
    item[end - 1] = item[end - 2]
    assert not repeats_items(dataclasses.replace(tiny, item=item), split.train)


def test_every_scheme_has_its_words_in_the_report() -> None:
    from ur4rec.measures import SCHEMES
    from ur4rec.report.build import SPLIT_WORDS

    assert set(SPLIT_WORDS) == set(SCHEMES)
