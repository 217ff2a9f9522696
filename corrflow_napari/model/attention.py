"""Restricted (windowed) attention: each target position attends to a (2M+1)^2 window
of every reference frame, centred on the same position (paper Section 3.3).

The window is evaluated tile by tile: target positions are grouped into ``tile x tile``
blocks and each block is compared, with one batched matmul per reference, to the
``(tile+2M) x (tile+2M)`` reference block around it. The (2M+1)^2 window of every target
is then read from the block logits (a strided view: an affine slice of the target's row;
with "negsqdist" the logit 2<q, r> - |r|^2 is one product [2q, 1].[r, -|r|^2], the extra
channel made once per reference), entries outside the frame are masked (only border
tiles have any), and the softmax (optionally over the top-k only)
is taken jointly over the R windows. With top-k, the k chosen values are gathered
directly; without, the weights go back into the block and meet the tiled values in a
matmul. No ``C x (2M+1)^2 x H x W`` unfold of the reference features is ever built: the
largest tensors are ``H W (tile+2M)^2 / tile^2`` per reference (= 6.25 H W for M=6,
tile=8), i.e. O(H W (2M+1)^2), and with ``chunk_tiles`` the logits only exist for a chunk.

:func:`prepare_reference` tiles one reference frame and :func:`attend` uses prepared
references, so a propagation loop tiles each frame once however often it is a reference;
:func:`restricted_attention` does both. Everything is differentiable (used for training).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

_NEG = -1e4  # large negative for masked logits (finite: keeps low precision and grads safe)
_CPU_CHUNK = 32  # at most this many tiles at a time on CPU at inference (see attend)


def _tiles(x: torch.Tensor, tile: int, halo: int, hp: int, wp: int,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, nT, C, (tile+2*halo)^2) overlapping blocks, zero padded.

    ``hp, wp`` are H, W rounded up to a multiple of ``tile``. ``out``: a tensor of that
    many elements to write them into (else a new one).
    """
    b, c, h, w = x.shape
    x = F.pad(x, (halo, halo + wp - w, halo, halo + hp - h))
    k = tile + 2 * halo
    blocks = x.unfold(2, k, tile).unfold(3, k, tile)          # B, C, nh, nw, k, k
    nh, nw = blocks.shape[2], blocks.shape[3]
    blocks = blocks.permute(0, 2, 3, 1, 4, 5)
    if out is None:
        return blocks.reshape(b, nh * nw, c, k * k)
    return out.view(b, nh, nw, c, k, k).copy_(blocks).view(b, nh * nw, c, k * k)


def _window_mask(tile: int, radius: int, device) -> torch.Tensor:
    """(tile^2, (tile+2r)^2) bool: True where the reference lies in the target's window."""
    k = tile + 2 * radius
    ty, tx = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    ry, rx = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    dy = ry.reshape(1, -1) - radius - ty.reshape(-1, 1)
    dx = rx.reshape(1, -1) - radius - tx.reshape(-1, 1)
    return ((dy.abs() <= radius) & (dx.abs() <= radius)).to(device)


class ReferenceTiles(NamedTuple):
    """One reference frame laid out for :func:`attend` (made by :func:`prepare_reference`).

    Built once per reference frame and reusable for every query frame of the same size,
    so a propagation loop tiles each frame's features once, not once per use.
    """

    tiles: torch.Tensor                 # (B*nT, C, (tile+2M)^2) overlapping feature blocks;
                                        # "negsqdist": C+1 channels, the last -|r|^2
    invalid: torch.Tensor | None        # (B*nT, tile^2, (2M+1)^2) bool, None: geometry only
    batch: int
    channels: int
    height: int
    width: int
    radius: int
    tile: int
    metric: str


class _Geometry(NamedTuple):
    widx: torch.Tensor          # (t2, W2): window entry j of target q -> index in its block
    invalid: torch.Tensor       # (nT, t2, W2) bool: window entry outside the frame
    border: list                # tiles with an out-of-frame window entry
    border_prefix: list         # prefix counts of border tiles (len nT + 1)
    base: torch.Tensor          # (nT, t2): flat (y, x) of each target in the padded map
    off: torch.Tensor           # (W2,): flat offset of window entry j in the padded map
    nh: int
    nw: int
    hpad: int                   # padded map size (hp + 2M, wp + 2M)
    wpad: int
    flat: dict                  # (chunk tiles, R) -> index of the window logits


def _normal_tensors(fn):
    """Build cached index tables as normal tensors even when first asked for under
    ``torch.inference_mode`` (an inference tensor cannot be saved for a later backward)."""
    def wrapper(*args):
        with torch.inference_mode(False):
            return fn(*args)
    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


_GEOMETRY: dict = {}


@_normal_tensors
def _geometry(h: int, w: int, radius: int, tile: int, device) -> _Geometry:
    """Index tables for a frame size (cached)."""
    key = (h, w, radius, tile, str(device))
    geo = _GEOMETRY.get(key)
    if geo is not None:
        return geo
    hp, wp = math.ceil(h / tile) * tile, math.ceil(w / tile) * tile
    nh, nw = hp // tile, wp // tile
    k, win = tile + 2 * radius, 2 * radius + 1
    hpad, wpad = hp + 2 * radius, wp + 2 * radius
    qy, qx = (a.reshape(-1, 1) for a in torch.meshgrid(torch.arange(tile), torch.arange(tile),
                                                        indexing="ij"))
    jy, jx = (a.reshape(1, -1) for a in torch.meshgrid(torch.arange(win), torch.arange(win),
                                                        indexing="ij"))
    widx = (qy + jy) * k + (qx + jx)                                            # t2, W2
    ty, tx = (a.reshape(-1, 1, 1) for a in torch.meshgrid(torch.arange(nh), torch.arange(nw),
                                                          indexing="ij"))
    y = ty * tile + qy.reshape(1, -1, 1) + jy.reshape(1, 1, -1) - radius        # nT,t2,W2
    x = tx * tile + qx.reshape(1, -1, 1) + jx.reshape(1, 1, -1) - radius
    invalid = (y < 0) | (y >= h) | (x < 0) | (x >= w)
    bad = invalid.flatten(1).any(1)
    prefix = [0] + torch.cumsum(bad.long(), 0).tolist()
    base = (ty.reshape(-1, 1) * tile + qy.reshape(1, -1)) * wpad + tx.reshape(-1, 1) * tile \
        + qx.reshape(1, -1)                                                     # nT, t2
    off = (jy * wpad + jx).reshape(-1)
    geo = _Geometry(widx.to(device), invalid.to(device), torch.nonzero(bad)[:, 0].tolist(),
                    prefix, base.to(device), off.to(device), nh, nw, hpad, wpad, {})
    if len(_GEOMETRY) > 8:
        _GEOMETRY.clear()
    _GEOMETRY[key] = geo
    return geo


@_normal_tensors
def _window_index(geo: _Geometry, nc: int, r_n: int, t2: int, k2: int, device) -> torch.Tensor:
    """Flat index taking logits laid out (R, nc, t2, k2) to windows (nc, t2, R, W2)."""
    idx = geo.flat.get((nc, r_n))
    if idx is None:
        w2 = geo.off.numel()
        idx = (torch.arange(r_n, device=device).reshape(1, 1, -1, 1) * (nc * t2 * k2)
               + torch.arange(nc, device=device).reshape(-1, 1, 1, 1) * (t2 * k2)
               + torch.arange(t2, device=device).reshape(1, -1, 1, 1) * k2
               + geo.widx.reshape(1, t2, 1, w2))
        dtype = torch.int32 if idx.numel() and int(idx.max()) < 2 ** 31 else torch.int64
        idx = idx.reshape(-1).to(dtype)
        if len(geo.flat) > 8:
            geo.flat.clear()
        geo.flat[(nc, r_n)] = idx
    return idx


def _windows(logits: torch.Tensor, tile: int) -> torch.Tensor:
    """Block logits (R, nT, tile^2, k^2) -> every target's R windows (nT, tile^2, R, W2),
    a copy of a strided view (target (qy, qx)'s window is rows qy.. and columns qx.. of
    its own k x k block: an affine address, 2x faster than an index gather)."""
    r_n, n_t, t2, k2 = logits.shape
    k = math.isqrt(k2)
    win = k - tile + 1
    view = logits.as_strided((r_n, n_t, tile, tile, win, win),
                             (n_t * t2 * k2, t2 * k2, tile * k2 + k, k2 + 1, k, 1),
                             logits.storage_offset())
    return view.permute(1, 2, 3, 0, 4, 5).reshape(n_t, t2, r_n, win * win)


def _active_spans(values: torch.Tensor, geo: _Geometry, tile: int, radius: int,
                  step: int, gap: int = 2) -> list[tuple[int, int]]:
    """Ranges ``[i0, i1)`` of at most ``step`` tiles that cover every tile of targets whose
    windows hold a nonzero value in channels 1.. of some reference (values (B, R, V, H, W));
    the tiles outside them can only receive channel 0. Runs of active tiles with at most
    ``gap`` idle tiles between them share a range."""
    b, r_n, v, h, w = values.shape
    occupied = (values[:, :, 1:] != 0).flatten(1, 2).any(1, keepdim=True).to(values.dtype)
    hp, wp = geo.nh * tile, geo.nw * tile
    occupied = F.pad(occupied, (radius, radius + wp - w, radius, radius + hp - h))
    active = F.max_pool2d(occupied, tile + 2 * radius, tile).flatten() > 0       # B*nT
    spans: list[list[int]] = []
    for i in torch.nonzero(active)[:, 0].tolist():
        if spans and i < spans[-1][0] + step and i <= spans[-1][1] + gap:
            spans[-1][1] = i + 1
        else:
            spans.append([i, i + 1])
    return [(i0, i1) for i0, i1 in spans]


def tiles_size(ref: torch.Tensor, radius: int, metric: str, tile: int = 8) -> int:
    """Elements of :func:`prepare_reference`'s ``tiles`` for ``ref`` (B, C, H, W)."""
    b, c, h, w = ref.shape
    n_t = math.ceil(h / tile) * math.ceil(w / tile)
    return b * n_t * (c + (metric == "negsqdist")) * (tile + 2 * radius) ** 2


def prepare_reference(ref: torch.Tensor, radius: int = 6, metric: str = "dot", tile: int = 8,
                      ref_valid: torch.Tensor | None = None,
                      out: torch.Tensor | None = None) -> ReferenceTiles:
    """Tile one reference frame's features ``(B, C, H, W)`` for :func:`attend`.

    ref_valid: optional (B, 1, H, W) 0/1 mask of usable positions ("negsqdist": folded into
    the extra channel, logits 1e4 lower, weight exactly 0; "dot": ``invalid``).
    out (without autograd): a tensor of :func:`tiles_size` elements, same dtype and device,
    that the tiles are written into, e.g. those of a reference no longer used. A loop
    that recycles them saves most of the tiling: the blocks are ~9x the features (M = 8,
    tile 8), and writing that much freshly allocated memory costs a page fault per 4 KB
    (a 480p frame: ~20 ms fresh, ~2 ms into touched memory).
    """
    if metric not in ("dot", "negsqdist"):
        raise ValueError(f"unknown metric {metric!r}")
    b, c, h, w = ref.shape
    hp, wp = math.ceil(h / tile) * tile, math.ceil(w / tile) * tile
    k2 = (tile + 2 * radius) ** 2
    if out is not None and (torch.is_grad_enabled() and ref.requires_grad
                            or out.numel() != tiles_size(ref, radius, metric, tile)
                            or out.dtype != ref.dtype or out.device != ref.device):
        raise ValueError("out must be a tensor of tiles_size() elements of the reference's "
                         "dtype and device, without autograd")
    if metric == "negsqdist":       # logit 2<q, r> - |r|^2 as one product: [2q, 1].[r, -|r|^2]
        extra = -(ref * ref).sum(1, keepdim=True)
        if ref_valid is not None:   # unusable cells: logits ~_NEG, never among the top-k
            extra += _NEG * (ref_valid.reshape(b, 1, h, w) <= 0.5).to(ref.dtype)
        ref = torch.cat([ref, extra], 1)
    tiles = _tiles(ref, tile, radius, hp, wp, out).reshape(-1, ref.shape[1], k2)  # B*nT,C,k2
    invalid = None
    if ref_valid is not None and metric != "negsqdist":
        geo = _geometry(h, w, radius, tile, ref.device)
        inside = _tiles(ref_valid.reshape(b, 1, h, w).to(ref.dtype), tile, radius, hp, wp)
        inside = inside.reshape(-1, k2)[:, geo.widx]                            # B*nT,t2,W2
        invalid = (inside <= 0.5) | geo.invalid.repeat(b, 1, 1)
    return ReferenceTiles(tiles, invalid, b, c, h, w, radius, tile, metric)


def value_table(values: torch.Tensor, radius: int, tile: int = 8,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """(B, R, V, H, W) values -> the (B*R*Hpad*Wpad, V) table (padded, channels last) that
    :func:`attend` gathers its top-k matches' values from; pass it as ``table`` to attend
    to the same values more than once (the mixture's groups): one copy instead of two.
    out: an earlier table of this shape, written over (its zero border stays; fresh
    memory for a 720p frame's table was 4/5 of its time)."""
    b, r_n, v, h, w = values.shape
    geo = _geometry(h, w, radius, tile, values.device)
    hwc = values.reshape(b * r_n, v, h, w).permute(0, 2, 3, 1)
    if out is not None and out.shape == (b * r_n * geo.hpad * geo.wpad, v) and \
            out.dtype == values.dtype and not torch.is_grad_enabled():
        out.view(b * r_n, geo.hpad, geo.wpad, v)[:, radius:radius + h,
                                                 radius:radius + w].copy_(hwc)
        return out
    flat = F.pad(hwc, (0, 0, radius, geo.wpad - w - radius, radius, geo.hpad - h - radius))
    return flat.reshape(-1, v)


def attend(query: torch.Tensor, refs: Sequence[ReferenceTiles], values: torch.Tensor,
           temperature: float = 1.0, topk: int | None = None,
           chunk_tiles: int | None = None, skip_empty: bool = False,
           table: torch.Tensor | None = None) -> torch.Tensor:
    """Restricted attention of ``query`` (B, C, H, W) to prepared references.

    refs: R :class:`ReferenceTiles` (same size, radius, tile and metric as each other and
    the query). values: (B, R, V, H, W). Same result as :func:`restricted_attention`.
    skip_empty (inference only; values are distributions over V, e.g. label probabilities
    with channel 0 the background): tiles of targets whose windows hold only channel 0 in
    every reference are not computed and get (1, 0, ..., 0), which is what the weighted
    average of such values is (up to rounding). table: :func:`value_table` of ``values``
    (top-k only; made here when None).

    Per tile of targets: one matmul per reference against its (tile+2M)^2 block, then the
    (2M+1)^2 window of every target is gathered (R*(2M+1)^2 logits per target), entries
    outside the frame are masked (border tiles only), and either the top-k are taken and
    their values gathered, or the softmax weights are scattered back to the block and
    multiplied with the tiled values. ``chunk_tiles`` bounds the tiles processed at a
    time; on CPU at inference chunks are further capped at ``_CPU_CHUNK`` tiles so that
    a chunk's logits stay near the cache (measured 1.5x faster than 128-tile chunks).
    """
    ref0 = refs[0]
    b, c, h, w = query.shape
    radius, tile, metric = ref0.radius, ref0.tile, ref0.metric
    for r in refs:
        if (r.batch, r.channels, r.height, r.width, r.radius, r.tile, r.metric) != \
                (b, c, h, w, radius, tile, metric):
            raise ValueError("references must match the query's shape, radius, tile and metric")
    r_n, v = len(refs), values.shape[2]
    if tuple(values.shape[:2]) != (b, r_n) or tuple(values.shape[-2:]) != (h, w):
        raise ValueError(f"values {tuple(values.shape)} do not match {r_n} references of "
                         f"{b}x{h}x{w}")
    dev, dtype = query.device, query.dtype
    geo = _geometry(h, w, radius, tile, dev)
    hp, wp = geo.nh * tile, geo.nw * tile
    n_t = geo.nh * geo.nw
    big_t = b * n_t
    t2, k2 = tile * tile, (tile + 2 * radius) ** 2
    w2 = (2 * radius + 1) ** 2
    grad = torch.is_grad_enabled() and (query.requires_grad or values.requires_grad
                                        or any(r.tiles.requires_grad for r in refs))
    q_t = _tiles(query, tile, 0, hp, wp).reshape(big_t, c, t2).transpose(1, 2)
    if metric == "negsqdist":                       # [2q, 1] (see prepare_reference)
        q_t = torch.cat([2 * q_t, q_t.new_ones(big_t, t2, 1)], 2)
    q_t = q_t.contiguous()
    use_topk = topk is not None and topk < r_n * w2
    plen = geo.hpad * geo.wpad
    if use_topk:   # values as a flat (B*R*Hpad*Wpad, V) table, gathered at the chosen entries
        vflat = value_table(values, radius, tile) if table is None else table
        if tuple(vflat.shape) != (b * r_n * plen, v):
            raise ValueError(f"table {tuple(vflat.shape)} is not value_table() of the values")
        base = (torch.arange(b, device=dev).reshape(b, 1, 1) * (r_n * plen)
                + geo.base.unsqueeze(0)).reshape(big_t, t2)
        off = (torch.arange(r_n, device=dev).reshape(-1, 1) * plen + geo.off).reshape(-1)
    else:          # values tiled like the references, for a block matmul
        val_t = _tiles(values.reshape(b * r_n, v, h, w), tile, radius, hp, wp)
        val_t = val_t.reshape(b, r_n, n_t, v, k2).permute(1, 0, 2, 4, 3).reshape(r_n, big_t,
                                                                                k2, v)
    per_ref = any(r.invalid is not None for r in refs)

    def border_tiles(i0: int, i1: int) -> list[int]:
        """Chunk-local indices of the tiles that have out-of-frame window entries."""
        out = []
        for bi in range(i0 // n_t, (i1 - 1) // n_t + 1):
            a, z = max(i0 - bi * n_t, 0), min(i1 - bi * n_t, n_t)
            if geo.border_prefix[z] > geo.border_prefix[a]:
                lo, hi = geo.border_prefix[a], geo.border_prefix[z]
                out += [bi * n_t + t - i0 for t in geo.border[lo:hi]]
        return out

    def attend_chunk(i0: int, i1: int) -> torch.Tensor:
        nc = i1 - i0
        rows = nc * t2
        q = q_t[i0:i1]
        if grad:
            lg = []
            for r in refs:
                lg.append(torch.bmm(q, r.tiles[i0:i1]))
            logits = torch.stack(lg)
        else:
            logits = torch.empty(r_n, nc, t2, k2, dtype=dtype, device=dev)
            for j, r in enumerate(refs):
                torch.bmm(q, r.tiles[i0:i1], out=logits[j])
        g = _windows(logits, tile).reshape(rows, r_n * w2)                    # rows, R*W2
        if temperature != 1.0 and not use_topk:     # top-k: only the chosen k are divided
            g = g / temperature if grad else g.div_(temperature)
        # masking: invalid (nc, t2, 1 or R, W2), or None when every entry is usable
        if per_ref:
            tid = torch.arange(i0, i1, device=dev) % n_t
            invalid = torch.stack([r.invalid[i0:i1] if r.invalid is not None
                                   else geo.invalid.index_select(0, tid) for r in refs], 2)
            g = g.reshape(nc, t2, r_n, w2).masked_fill(invalid, _NEG).reshape(rows, -1)
        else:
            local = border_tiles(i0, i1)
            invalid = None
            if local:
                tid = torch.arange(i0, i1, device=dev) % n_t
                invalid = geo.invalid.index_select(0, tid).unsqueeze(2)         # nc,t2,1,W2
                if grad:
                    g = g.reshape(nc, t2, r_n, w2).masked_fill(invalid, _NEG).reshape(rows, -1)
                elif dev.type != "cpu":       # one kernel rather than one per border tile
                    g.reshape(nc, t2, r_n, w2).masked_fill_(invalid, _NEG)
                else:                         # only the border tiles need it
                    g4 = g.reshape(nc, t2, r_n, w2)
                    for lt in local:
                        g4[lt].masked_fill_(invalid[lt], _NEG)
        if use_topk:
            vals, sel = g.topk(topk, dim=-1)                                    # rows, k
            wts = torch.softmax(vals / temperature if temperature != 1.0 else vals, dim=-1)
            if invalid is not None:
                entry = sel % w2
                lookup = (torch.div(sel, w2, rounding_mode="floor") if invalid.shape[2] > 1
                          else torch.zeros_like(sel))
                lookup = (torch.arange(rows, device=dev).reshape(-1, 1) * invalid.shape[2]
                          + lookup) * w2 + entry
                wts = wts * (~invalid.reshape(-1)[lookup]).to(wts.dtype)
            pos = base[i0:i1].reshape(rows, 1) + off[sel]
            picked = vflat.index_select(0, pos.reshape(-1)).reshape(rows, topk, v)
            return torch.bmm(wts.unsqueeze(1), picked).reshape(nc, t2, v)
        # softmax over all R windows jointly, then a block matmul with the tiled values
        wts = torch.softmax(g, dim=-1)
        if invalid is not None:
            wts = (wts.reshape(nc, t2, r_n, w2) * (~invalid).to(wts.dtype)).reshape(rows, -1)
        idx = _window_index(geo, nc, r_n, t2, k2, dev)
        if grad:
            full = torch.zeros(r_n * nc * t2 * k2, dtype=wts.dtype, device=dev)
            full = full.index_copy(0, idx.long(), wts.reshape(-1))
        else:
            full = logits.reshape(-1).zero_().index_copy_(0, idx.long(), wts.reshape(-1))
        full = full.reshape(r_n, nc, t2, k2)
        out = torch.bmm(full[0], val_t[0, i0:i1])
        for j in range(1, r_n):
            out = out + torch.bmm(full[j], val_t[j, i0:i1])
        return out                                                              # nc,t2,V

    step = big_t if not chunk_tiles else max(1, int(chunk_tiles))
    if dev.type == "cpu" and not grad:   # cache-sized chunks: 1.5x faster than 128 tiles
        step = min(step, _CPU_CHUNK)
    if skip_empty and not grad:       # only the tiles near a nonzero value of channels 1..
        out = torch.zeros(big_t, t2, v, dtype=dtype, device=dev)
        out[..., 0] = 1
        for i0, i1 in _active_spans(values, geo, tile, radius, step):
            out[i0:i1] = attend_chunk(i0, i1)
    else:
        outs = [attend_chunk(i, min(i + step, big_t)) for i in range(0, big_t, step)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
    out = out.reshape(b, geo.nh, geo.nw, tile, tile, v).permute(0, 5, 1, 3, 2, 4)
    return out.reshape(b, v, hp, wp)[:, :, :h, :w]


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

    ``attend(query, [prepare_reference(refs[:, r], ...) for r], values)``: prepare once.
    """
    if metric not in ("dot", "negsqdist"):
        raise ValueError(f"unknown metric {metric!r}")
    r_n = refs.shape[1]
    prepared = [prepare_reference(refs[:, r], radius, metric, tile,
                                  None if ref_valid is None else ref_valid[:, r])
                for r in range(r_n)]
    return attend(query, prepared, values, temperature=temperature, topk=topk,
                  chunk_tiles=chunk_tiles)


def full_attention(query: torch.Tensor, refs: torch.Tensor, values: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """All-pairs attention (the paper's ablation):
    (B,C,H,W), (B,R,C,H,W), (B,R,V,H,W) -> (B,V,H,W)."""
    b, c, h, w = query.shape
    r_n, v = refs.shape[1], values.shape[2]
    q = query.reshape(b, c, h * w).transpose(1, 2)                          # B, HW, C
    k = refs.permute(0, 2, 1, 3, 4).reshape(b, c, r_n * h * w)              # B, C, RHW
    att = torch.softmax(torch.bmm(q, k) / temperature, dim=-1)
    vals = values.permute(0, 1, 3, 4, 2).reshape(b, r_n * h * w, v)
    return torch.bmm(att, vals).transpose(1, 2).reshape(b, v, h, w)
