"""Writing results: indexed PNG masks, videos (.mp4/.gif) and overlays, atomically."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from corrflow_napari.errors import InputError
from corrflow_napari.io import (
    Video,
    davis_palette,
    open_video,
    overlay,
    overlay_frames,
    read_mask,
    write_indexed_png,
    write_video,
)

from .media import assert_one_line_naming, ramp_frames


def test_write_indexed_png_round_trip(tmp_path):
    lab = np.zeros((9, 11), np.int64)
    lab[1:3, 1:3] = 3
    lab[5:8, 4:9] = 7
    p = tmp_path / "out" / "00000.png"
    write_indexed_png(p, lab)                          # default DAVIS palette, creates folder
    with Image.open(p) as im:
        assert im.mode == "P"
    ids, pal = read_mask(p)
    np.testing.assert_array_equal(ids, lab)
    np.testing.assert_array_equal(pal, davis_palette())
    custom = np.array([[0, 0, 0], [1, 2, 3], [4, 5, 6], [200, 100, 50]], np.uint8)
    write_indexed_png(p, lab, palette=custom)          # overwrite in place
    ids, pal = read_mask(p)
    np.testing.assert_array_equal(ids, lab)
    assert pal[3].tolist() == [200, 100, 50] and pal[7].tolist() == davis_palette()[7].tolist()
    write_indexed_png(p, lab, palette=np.array([[0, 0, 0], [1.0, 0.5, 0.0]]))  # 0..1 floats
    assert read_mask(p)[1][1].tolist() == [255, 128, 0]
    with pytest.raises(InputError) as e:
        write_indexed_png(tmp_path / "big.png", lab * 100)
    assert_one_line_naming(e, "big.png")
    assert not (tmp_path / "big.png").exists()
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["00000.png"]   # no temp left


def test_write_video_mp4_and_gif(tmp_path):
    frames = ramp_frames(9, 37, 53)                    # odd size
    frames[4] = frames[3]                              # identical consecutive frames
    mp4 = tmp_path / "o.mp4"
    write_video(mp4, frames, fps=12)
    v = open_video(mp4)
    assert len(v) == 9 and v.fps == pytest.approx(12.0)
    assert v.shape[1:3] == (38, 54)                    # padded to even for H.264
    assert np.abs(np.asarray(v)[:, :37, :53].astype(int) - frames).mean() < 4
    gif = tmp_path / "o.gif"
    write_video(gif, open_video(mp4), fps=10)          # from a lazy Video
    g = open_video(gif)
    assert len(g) == 9 and g.shape[1:3] == (38, 54) and g.fps == pytest.approx(10.0)
    assert np.abs(np.asarray(g).astype(int) - np.asarray(v)).mean() < 12
    write_video(tmp_path / "grey.gif", frames[..., 0], fps=5)
    assert len(open_video(tmp_path / "grey.gif")) == 9
    with pytest.raises(InputError) as e:
        write_video(tmp_path / "o.xyz", frames)
    assert_one_line_naming(e, "o.xyz")
    with pytest.raises(InputError):
        write_video(tmp_path / "none.mp4", frames[:0])
    assert sorted(x.name for x in tmp_path.iterdir()) == ["grey.gif", "o.gif", "o.mp4"]


def test_overlay_lazy_and_colours(tmp_path, monkeypatch):
    frames = np.full((3, 10, 12, 3), 100, np.uint8)
    labels = np.zeros((3, 10, 12), np.int32)
    labels[:, 2:8, 3:9] = 1
    labels[2, 0, 0] = 2
    v = Video.from_array(frames)
    monkeypatch.setattr(Video, "__array__", lambda *a, **k: pytest.fail("read all frames"))
    out = overlay(v, labels, alpha=0.5)
    assert out.shape == (3, 10, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 9, 11], 100)                  # background untouched
    np.testing.assert_array_equal(out[0, 4, 5], [114, 50, 50])         # 0.5*100 + 0.5*(128,0,0)
    np.testing.assert_array_equal(out[0, 2, 3], [128, 0, 0])           # outline, full colour
    out2 = overlay(frames, labels, palette=[[0, 0, 0], [0, 0, 255]], alpha=1.0, outline=False)
    np.testing.assert_array_equal(out2[1, 4, 5], [0, 0, 255])
    with pytest.raises(InputError):
        overlay(frames, labels[:2])


def test_overlay_frames_one_at_a_time_are_the_blend_of_every_pixel():
    """Only object pixels are computed: the same as blending the whole frame in float."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)
    labels = np.zeros((2, 40, 50), np.uint16)
    labels[:, 5:30, 10:40] = 1
    labels[:, 20:35, 30:45] = 3
    labels[1, 0, :] = 2
    pal = np.array([[0, 0, 0], [200, 10, 10], [10, 200, 10], [10, 10, 200]], np.float32)
    frames_out = overlay_frames(frames, labels, palette=pal, alpha=0.3)
    assert not isinstance(frames_out, np.ndarray)                       # lazy
    for f, lab, got in zip(frames, labels, frames_out):
        want = f.astype(np.float32)
        obj = lab > 0
        want[obj] = 0.7 * want[obj] + 0.3 * pal[lab][obj]
        edge = np.zeros_like(obj)
        edge[:-1] |= lab[:-1] != lab[1:]
        edge[1:] |= lab[1:] != lab[:-1]
        edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
        edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
        want[edge & obj] = pal[lab][edge & obj]
        np.testing.assert_array_equal(got, np.clip(np.rint(want), 0, 255).astype(np.uint8))
