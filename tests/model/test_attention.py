"""Restricted attention against a direct, obviously-correct implementation."""
import pytest
import torch

from corrflow_napari.model.attention import full_attention, restricted_attention


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
