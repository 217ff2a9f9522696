"""Restricted (windowed) attention: each target position attends to a (2M+1)^2 window
of every reference frame, centred on the same position (paper Section 3.3).

The window is evaluated tile by tile: target positions are grouped into ``tile x tile``
blocks and each block is compared, with one batched matmul, to the
``(tile+2M) x (tile+2M)`` reference block around it; pairs outside the 13x13 window and
reference positions outside the frame are masked before the softmax. No
``C x (2M+1)^2 x H x W`` unfold of the reference features is ever built: the largest
tensors are ``H W (tile+2M)^2 / tile^2`` per reference (= 6.25 H W for M=6, tile=8),
i.e. O(H W (2M+1)^2). Everything is differentiable (used for training).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_NEG = -1e4  # large negative for masked logits (finite: keeps low precision and grads safe)


def _tiles(x: torch.Tensor, tile: int, halo: int, hp: int, wp: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, nT, C, (tile+2*halo)^2) overlapping blocks, zero padded.

    ``hp, wp`` are H, W rounded up to a multiple of ``tile``.
    """
    b, c, h, w = x.shape
    x = F.pad(x, (halo, halo + wp - w, halo, halo + hp - h))
    k = tile + 2 * halo
    blocks = x.unfold(2, k, tile).unfold(3, k, tile)          # B, C, nh, nw, k, k
    nh, nw = blocks.shape[2], blocks.shape[3]
    return blocks.permute(0, 2, 3, 1, 4, 5).reshape(b, nh * nw, c, k * k)


def _window_mask(tile: int, radius: int, device) -> torch.Tensor:
    """(tile^2, (tile+2r)^2) bool: True where the reference lies in the target's window."""
    k = tile + 2 * radius
    ty, tx = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    ry, rx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    dy = ry.reshape(1, -1) - radius - ty.reshape(-1, 1)
    dx = rx.reshape(1, -1) - radius - tx.reshape(-1, 1)
    return ((dy.abs() <= radius) & (dx.abs() <= radius)).to(device)


def restricted_attention(query: torch.Tensor, refs: torch.Tensor, values: torch.Tensor,
                         radius: int = 6, temperature: float = 1.0, topk: int | None = None,
                         metric: str = "dot", tile: int = 8,
                         ref_valid: torch.Tensor | None = None,
                         chunk_tiles: int | None = None) -> torch.Tensor:
    """Copy reference ``values`` to the query frame through windowed attention.

    query:  (B, C, H, W) target features.
    refs:   (B, R, C, H, W) reference features (R reference frames).
    values: (B, R, V, H, W) what to copy (colours, label probabilities, heatmaps).
    radius: M; the window is (2M+1)^2 per reference, the softmax is joint over all R windows.
    metric: "dot" (logit = <q, r>) or "negsqdist" (logit = -|q - r|^2).
    topk:   keep only the k largest logits per query position before the softmax.
    ref_valid: optional (B, R, 1, H, W) 0/1 mask of usable reference positions.
    chunk_tiles: process this many tiles at a time (bounds peak memory at inference).
    Returns (B, V, H, W).
    """
    if metric not in ("dot", "negsqdist"):
        raise ValueError(f"unknown metric {metric!r}")
    b, c, h, w = query.shape
    r_n, v = refs.shape[1], values.shape[2]
    hp, wp = math.ceil(h / tile) * tile, math.ceil(w / tile) * tile
    k2 = (tile + 2 * radius) ** 2
    inside = torch.ones(b * r_n, 1, h, w, device=query.device, dtype=query.dtype)
    if ref_valid is not None:
        inside = inside * ref_valid.reshape(b * r_n, 1, h, w).to(query.dtype)
    inside_t = _tiles(inside, tile, radius, hp, wp)
    n_t = inside_t.shape[1]
    inside_t = inside_t.reshape(b, r_n, n_t, k2).permute(0, 2, 1, 3) > 0.5       # B,nT,R,k2
    q_t = _tiles(query, tile, 0, hp, wp)                                        # B,nT,C,t2
    ref_t = _tiles(refs.reshape(b * r_n, c, h, w), tile, radius, hp, wp)
    ref_t = ref_t.reshape(b, r_n, n_t, c, k2).permute(0, 2, 1, 3, 4)           # B,nT,R,C,k2
    val_t = _tiles(values.reshape(b * r_n, v, h, w), tile, radius, hp, wp)
    val_t = val_t.reshape(b, r_n, n_t, v, k2).permute(0, 2, 1, 4, 3)           # B,nT,R,k2,V
    window = _window_mask(tile, radius, query.device)[:, None, :]               # t2,1,k2

    def attend(s: slice) -> torch.Tensor:
        q, rf, vl, ins = q_t[:, s], ref_t[:, s], val_t[:, s], inside_t[:, s]
        nt = q.shape[1]
        logits = torch.einsum("bncq,bnrck->bnqrk", q, rf)                       # B,nt,t2,R,k2
        if metric == "negsqdist":   # -|q-r|^2 = 2<q,r> - |r|^2 - |q|^2 (|q|^2: softmax-invariant)
            logits = 2 * logits - (rf * rf).sum(3)[:, :, None]
        allowed = window & ins[:, :, None]                                      # B,nt,t2,R,k2
        logits = (logits / temperature).masked_fill(~allowed, _NEG)
        logits = logits.reshape(b, nt, tile * tile, r_n * k2)
        if topk is not None and topk < r_n * k2:
            kth = logits.topk(topk, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, _NEG)
        weights = torch.softmax(logits, dim=-1)
        weights = weights * allowed.reshape(b, nt, tile * tile, r_n * k2).to(weights.dtype)
        return torch.matmul(weights, vl.reshape(b, nt, r_n * k2, v))           # B,nt,t2,V

    step = n_t if not chunk_tiles else max(1, chunk_tiles)
    out = torch.cat([attend(slice(i, i + step)) for i in range(0, n_t, step)], dim=1)
    nh, nw = hp // tile, wp // tile
    out = out.reshape(b, nh, nw, tile, tile, v).permute(0, 5, 1, 3, 2, 4).reshape(b, v, hp, wp)
    return out[:, :, :h, :w]


def full_attention(query: torch.Tensor, refs: torch.Tensor, values: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """All-pairs attention (the paper's ablation): (B,C,H,W),(B,R,C,H,W),(B,R,V,H,W) -> (B,V,H,W)."""
    b, c, h, w = query.shape
    r_n, v = refs.shape[1], values.shape[2]
    q = query.reshape(b, c, h * w).transpose(1, 2)                          # B, HW, C
    k = refs.permute(0, 2, 1, 3, 4).reshape(b, c, r_n * h * w)              # B, C, RHW
    att = torch.softmax(torch.bmm(q, k) / temperature, dim=-1)
    vals = values.permute(0, 1, 3, 4, 2).reshape(b, r_n * h * w, v)
    return torch.bmm(att, vals).transpose(1, 2).reshape(b, v, h, w)
