import torch

from ur4rec.config import ModelConfig
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.splits import PAD
from ur4rec.models.sasrec import SASRec


def model(norm: str = "pre", max_len: int = 6) -> SASRec:
    torch.manual_seed(0)
    cfg = ModelConfig(
        hidden=8, layers=2, heads=2, inner=16, dropout=0.0, attn_dropout=0.0, norm=norm
    )
    return SASRec(n_items=10, max_len=max_len, cfg=cfg).eval()


def test_same_items_same_vector_whatever_the_padding() -> None:
    for norm in ("pre", "post"):
        m = model(norm)
        left_short = torch.tensor([[PAD, 1, 2, 3]])
        left_long = torch.tensor([[PAD, PAD, PAD, PAD, 1, 2, 3]])
        right = torch.tensor([[1, 2, 3, PAD, PAD]])
        unpadded = torch.tensor([[1, 2, 3]])
        ref = m.user_vectors(unpadded)
        for items in (left_short, left_long, right):
            torch.testing.assert_close(m.user_vectors(items), ref, atol=1e-6, rtol=1e-5)


def test_real_positions_do_not_depend_on_pad_content() -> None:
    m = model()
    items = torch.tensor([[PAD, PAD, 4, 5, 6]])
    before = m.encode(items)
    with torch.no_grad():
        m.item_emb.weight[m.n_items].normal_()  # scribble on the padding row
    after = m.encode(items)
    torch.testing.assert_close(after, before)
    assert torch.all(after[0, :2] == 0)  # padding rows are exactly zero


def test_no_nan_for_any_history_length() -> None:
    m = model()
    items = torch.full((4, 9), PAD)
    items[1, -1] = 3  # one item
    items[2, -6:] = torch.tensor([1, 2, 3, 4, 5, 6])  # exactly max_len
    items[3] = torch.arange(9)  # longer than max_len
    scores = m.score(HistoryBatch(torch.arange(4), items))
    assert scores.shape == (4, 10) and torch.isfinite(scores).all()


def test_user_vector_is_read_at_the_last_real_item() -> None:
    m = model()
    items = torch.tensor([[PAD, PAD, 7, 8], [1, 2, 3, 4]])
    states = m.encode(items)
    torch.testing.assert_close(m.user_vectors(items), states[:, -1])
    # Right padding: still the state of item 8, not of a padding slot.
    right = torch.tensor([[7, 8, PAD, PAD]])
    torch.testing.assert_close(m.user_vectors(right)[0], states[0, -1], atol=1e-6, rtol=1e-5)


def test_causal_and_truncated_to_max_len() -> None:
    m = model(max_len=3)
    a = m.encode(torch.tensor([[1, 2, 3]]))
    b = m.encode(torch.tensor([[1, 2, 9]]))
    torch.testing.assert_close(a[0, :2], b[0, :2])  # the future does not leak backwards
    long = torch.tensor([[5, 6, 1, 2, 3]])
    torch.testing.assert_close(m.user_vectors(long), m.user_vectors(torch.tensor([[1, 2, 3]])))


def test_item_side_features_change_item_vectors() -> None:
    cfg = ModelConfig(hidden=8, heads=2, inner=16)
    features = torch.randn(10, 5)
    m = SASRec(10, 4, cfg, item_features=features)
    base = m.item_emb.weight[:10]
    expected = base + features @ m.feature_proj.weight.T
    torch.testing.assert_close(m.item_vectors(), expected)
    assert "item_features" not in m.state_dict()  # fixed input, not a checkpointed weight


def test_dropout_mask_keeps_the_expectation_and_follows_the_seed() -> None:
    from ur4rec.models.dropout import apply_dropout, keep_mask

    torch.manual_seed(1)
    mask, kept = keep_mask((400, 500), 0.2)
    assert abs(kept - 0.8) < 1 / 65536
    assert abs(mask.float().mean().item() - kept) < 0.005  # 200,000 draws
    torch.manual_seed(1)
    again, _ = keep_mask((400, 500), 0.2)
    assert torch.equal(mask, again)
    x = torch.ones(1000, 1000)
    assert abs(apply_dropout(x, 0.3, True).mean().item() - 1.0) < 0.01
    assert torch.equal(apply_dropout(x, 0.3, False), x)


def test_training_attention_matches_the_fused_kernel_without_dropout() -> None:
    # With dropout switched off the written-out attention (used when training) and
    # scaled_dot_product_attention (used when scoring) give the same states.
    m = model()
    m.blocks[0].attn.attn_dropout = 1e-9  # takes the written-out path, drops nothing
    items = torch.tensor([[PAD, PAD, 1, 2, 3, 4], [5, 6, 7, 8, 9, 1]])
    expected = m.encode(items)
    m.train()
    for module in m.modules():
        if hasattr(module, "p"):
            module.p = 0.0
    torch.testing.assert_close(m.encode(items), expected, atol=1e-6, rtol=1e-5)
