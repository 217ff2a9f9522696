"""Restricted attention against a direct, obviously-correct implementation."""
import pytest
import torch

from corrflow_napari.model.attention import (
    attend,
    full_attention,
    prepare_reference,
    restricted_attention,
)


def direct_attention(q, refs, vals, radius, temperature=1.0, metric="dot", topk=None):
    """Loop over every target pixel and every in-frame window position of every reference."""
    b_n, _, h, w = q.shape
    r_n, v = refs.shape[1], vals.shape[2]
    rows = []
    for b in range(b_n):
        out = []
        for i in range(h):
            for j in range(w):
                logits, cand = [], []
                for r in range(r_n):
                    for y in range(max(0, i - radius), min(h, i + radius + 1)):
                        for x in range(max(0, j - radius), min(w, j + radius + 1)):
                            f = refs[b, r, :, y, x]
                            if metric == "dot":
                                logits.append((q[b, :, i, j] * f).sum())
                            else:
                                logits.append(-((q[b, :, i, j] - f) ** 2).sum())
                            cand.append(vals[b, r, :, y, x])
                lg = torch.stack(logits) / temperature
                if topk is not None and topk < len(lg):
                    kth = lg.topk(topk).values[-1]
                    lg = torch.where(lg >= kth, lg, torch.full_like(lg, -1e4))
                wts = torch.softmax(lg, 0)
                out.append((wts[:, None] * torch.stack(cand)).sum(0))
        rows.append(torch.stack(out).T.reshape(v, h, w))
    return torch.stack(rows)


CASES = [  # h, w, refs, radius, metric, topk, temperature, tile
    (9, 11, 1, 2, "dot", None, 1.0, 4),
    (7, 13, 2, 3, "negsqdist", 5, 0.5, 8),
    (10, 10, 1, 6, "dot", None, 1.0, 8),
    (5, 17, 3, 1, "dot", 4, 0.1, 4),
]


@pytest.mark.parametrize("h,w,r,radius,metric,topk,temp,tile", CASES)
def test_values_match_direct(h, w, r, radius, metric, topk, temp, tile):
    g = torch.Generator().manual_seed(h * w + r)
    q = torch.randn(2, 5, h, w, generator=g, dtype=torch.float64)
    refs = torch.randn(2, r, 5, h, w, generator=g, dtype=torch.float64)
    vals = torch.randn(2, r, 3, h, w, generator=g, dtype=torch.float64)
    expect = direct_attention(q, refs, vals, radius, temp, metric, topk)
    got = restricted_attention(q, refs, vals, radius=radius, temperature=temp, metric=metric,
                               topk=topk, tile=tile)
    assert got.shape == (2, 3, h, w)
    assert torch.allclose(got, expect, atol=1e-10)
    chunked = restricted_attention(q, refs, vals, radius=radius, temperature=temp,
                                   metric=metric, topk=topk, tile=tile, chunk_tiles=1)
    assert torch.allclose(chunked, expect, atol=1e-10)


def test_gradients_match_direct():
    g = torch.Generator().manual_seed(3)
    q, refs, vals = (torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()
                     for s in ((1, 4, 6, 7), (1, 2, 4, 6, 7), (1, 2, 3, 6, 7)))
    weights = torch.randn(1, 3, 6, 7, generator=g, dtype=torch.float64)
    (restricted_attention(q, refs, vals, radius=2, tile=4) * weights).sum().backward()
    ours = [t.grad.clone() for t in (q, refs, vals)]
    for t in (q, refs, vals):
        t.grad = None
    (direct_attention(q, refs, vals, 2) * weights).sum().backward()
    for a, t in zip(ours, (q, refs, vals)):
        assert torch.allclose(a, t.grad, atol=1e-9)


def test_training_after_inference_on_the_same_size():
    # the index tables cached by a propagation (under inference_mode) serve a later
    # fine-tuning step of the same size: they must be usable by autograd
    g = torch.Generator().manual_seed(5)
    q, refs, vals = (torch.randn(*s, generator=g) for s in
                     ((1, 4, 13, 19), (1, 2, 4, 13, 19), (1, 2, 3, 13, 19)))
    for topk in (None, 3):
        with torch.inference_mode():
            before = restricted_attention(q, refs, vals, radius=3, metric="negsqdist",
                                          topk=topk, ref_valid=torch.ones(1, 2, 1, 13, 19))
        qg = q.clone().requires_grad_()
        out = restricted_attention(qg, refs, vals, radius=3, metric="negsqdist", topk=topk,
                                   ref_valid=torch.ones(1, 2, 1, 13, 19))
        out.sum().backward()
        assert torch.allclose(out.detach(), before, atol=1e-6)
        assert qg.grad is not None and torch.isfinite(qg.grad).all()


def test_window_restricts_copying():
    """A value far outside the window can never be copied, however similar its feature."""
    h, w = 20, 20
    q = torch.zeros(1, 1, h, w)
    q[0, 0, 0, 0] = 10.0
    refs = torch.zeros(1, 1, 1, h, w)
    refs[0, 0, 0, 19, 19] = 10.0        # perfect match, 19 cells away
    vals = torch.zeros(1, 1, 1, h, w)
    vals[0, 0, 0, 19, 19] = 1.0
    out = restricted_attention(q, refs, vals, radius=6)
    assert out[0, 0, 0, 0] == 0
    assert full_attention(q, refs, vals)[0, 0, 0, 0] > 0.99   # full attention does copy it


def test_ref_valid_excludes_positions():
    q = torch.ones(1, 2, 5, 5)
    refs = torch.ones(1, 1, 2, 5, 5)
    vals = torch.arange(25.0).reshape(1, 1, 1, 5, 5)
    valid = torch.zeros(1, 1, 1, 5, 5)
    valid[..., 2, 2] = 1
    out = restricted_attention(q, refs, vals, radius=2, ref_valid=valid)
    assert torch.allclose(out[0, 0], torch.full((5, 5), 12.0))


@pytest.mark.parametrize("topk", [None, 5])
def test_unusable_positions_get_no_weight_with_negsqdist(topk):
    """negsqdist folds ref_valid into its extra channel: the same as leaving the unusable
    positions out of every window (checked against a dense softmax over usable ones)."""
    g = torch.Generator().manual_seed(3)
    h, w, m = 9, 11, 2
    q, ref, vals = (torch.randn(*s, generator=g, dtype=torch.float64) for s in
                    ((1, 3, h, w), (1, 1, 3, h, w), (1, 1, 2, h, w)))
    valid = (torch.rand(1, 1, 1, h, w, generator=g) > 0.4).double()
    got = restricted_attention(q, ref, vals, radius=m, metric="negsqdist", topk=topk,
                               temperature=0.5, ref_valid=valid)
    for y in range(h):
        for x in range(w):
            ys, xs = zip(*[(v, u) for v in range(max(0, y - m), min(h, y + m + 1))
                           for u in range(max(0, x - m), min(w, x + m + 1))
                           if valid[0, 0, 0, v, u] > 0])
            r = ref[0, 0][:, ys, xs]
            logit = -((q[0, :, y, x, None] - r) ** 2).sum(0) + (q[0, :, y, x] ** 2).sum()
            keep = logit.topk(min(topk or len(ys), len(ys))).indices
            wts = torch.softmax(logit[keep] / 0.5, 0)
            want = (vals[0, 0][:, ys, xs][:, keep] * wts).sum(1)
            torch.testing.assert_close(got[0, :, y, x], want)


@pytest.mark.parametrize("topk,per_ref", [(None, False), (6, False), (6, True)])
def test_skip_empty_matches_computing_every_tile(topk, per_ref):
    """Label probabilities with objects in two small blobs: the tiles that only see
    background are skipped, and the result equals the full computation, batch and
    references included (also with a per-reference mask of usable cells)."""
    g = torch.Generator().manual_seed(11)
    b, r, h, w = 2, 3, 37, 61
    q = torch.randn(b, 6, h, w, generator=g, dtype=torch.float64)
    refs = torch.randn(b, r, 6, h, w, generator=g, dtype=torch.float64)
    objects = torch.zeros(b, r, 2, h, w, dtype=torch.float64)
    objects[0, 1, 0, 3:7, 5:9] = 0.7
    objects[1, 2, 1, 30:33, 50:55] = 0.4
    vals = torch.cat([1 - objects.sum(2, keepdim=True), objects], 2)
    valid = (torch.rand(b, r, 1, h, w, generator=g) > 0.2).double() if per_ref else None
    prepared = [prepare_reference(refs[:, i], radius=4, metric="negsqdist",
                                  ref_valid=None if valid is None else valid[:, i])
                for i in range(r)]
    with torch.inference_mode():
        full = attend(q, prepared, vals, topk=topk, chunk_tiles=4)
        skipped = attend(q, prepared, vals, topk=topk, chunk_tiles=4, skip_empty=True)
    assert torch.allclose(skipped, full, atol=1e-12)
    far = full[0, 1:, 20:, 30:]                     # far from both blobs: background only
    assert (far == 0).all() and torch.allclose(skipped[0, 0, 20:, 30:], torch.ones(1).double())
    assert (full[0, 1] > 0).any() and (full[1, 2] > 0).any()


def test_active_spans_cover_exactly_the_tiles_near_objects():
    from corrflow_napari.model.attention import _active_spans, _geometry
    h, w, tile, radius = 40, 64, 8, 3               # 5 x 8 tiles
    vals = torch.zeros(1, 2, 2, h, w)
    vals[0, 1, 1, 20, 36] = 0.5                     # tile (2, 4); no other target within 3
    geo = _geometry(h, w, radius, tile, "cpu")
    assert _active_spans(vals, geo, tile, radius, step=32) == [(2 * 8 + 4, 2 * 8 + 5)]
    vals[0, 0, 1, 0, 0] = 0.5                       # tile 0, and the tiles within 3 cells
    spans = _active_spans(vals, geo, tile, radius, step=32)
    assert spans == [(0, 1), (20, 21)]
    vals[0, 0, 0, 39, 63] = 0.5                     # channel 0 (background) never counts
    assert _active_spans(vals, geo, tile, radius, step=32) == spans


def test_tiles_written_into_a_released_reference_are_the_same():
    """``prepare_reference(out=)`` / :class:`TileRecycler`: the tiles of a reference no
    longer used are written over by the next one's, which attends exactly as new tiles do;
    a buffer of the wrong size, or with autograd, is refused."""
    from corrflow_napari.model.attention import tiles_size
    from corrflow_napari.model.tile_recycler import TileRecycler
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 1, 6, 21, 30, generator=g)
    q = torch.randn(1, 6, 21, 30, generator=g)
    vals = torch.rand(1, 1, 2, 21, 30, generator=g)
    recycler = TileRecycler()
    with torch.inference_mode():
        first = recycler.prepare(a, radius=3, metric="negsqdist")
        assert first.tiles.numel() == tiles_size(a, 3, "negsqdist")
        recycler.release([first])
        second = recycler.prepare(b, radius=3, metric="negsqdist")
        assert second.tiles.data_ptr() == first.tiles.data_ptr()          # written over
        fresh = prepare_reference(b, radius=3, metric="negsqdist")
        assert torch.equal(second.tiles, fresh.tiles)
        assert torch.equal(attend(q, [second], vals, topk=5), attend(q, [fresh], vals, topk=5))
        assert recycler.prepare(a, radius=2).tiles.data_ptr() != first.tiles.data_ptr()
        with pytest.raises(ValueError, match="tiles_size"):
            prepare_reference(a, radius=2, out=torch.empty(7))
    with pytest.raises(ValueError, match="autograd"):
        prepare_reference(a.requires_grad_(), radius=3, metric="negsqdist",
                          out=torch.empty(tiles_size(a, 3, "negsqdist")))


def test_a_shared_value_table_gives_the_same_values():
    """``value_table``: attending twice to the same values (the mixture's two groups) with
    one table built beforehand is the same as each call building its own; a table of
    other values is refused."""
    from corrflow_napari.model.attention import value_table
    g = torch.Generator().manual_seed(5)
    refs = torch.randn(1, 3, 5, 19, 26, generator=g)
    q = torch.randn(1, 5, 19, 26, generator=g)
    vals = torch.rand(1, 3, 4, 19, 26, generator=g)
    prepared = [prepare_reference(refs[:, r], radius=4) for r in range(3)]
    table = value_table(vals, 4)
    assert torch.equal(attend(q, prepared, vals, topk=7, table=table),
                       attend(q, prepared, vals, topk=7))
    torch.testing.assert_close(attend(q, prepared, vals, topk=7, table=table),
                               direct_attention(q, refs, vals, 4, topk=7))
    with pytest.raises(ValueError, match="value_table"):
        attend(q, prepared, vals, topk=7, table=value_table(vals[:, :2], 4))


def test_a_value_table_written_over_is_the_table_of_the_new_values():
    from corrflow_napari.model.attention import value_table
    g = torch.Generator().manual_seed(2)
    first, second = (torch.rand(1, 3, 4, 11, 13, generator=g) for _ in range(2))
    with torch.inference_mode():
        table = value_table(first, 3)
        again = value_table(second, 3, out=table)
    assert again.data_ptr() == table.data_ptr()               # no new memory
    assert torch.equal(again, value_table(second, 3))          # the padding is still zero
