"""The `corrflow` command end to end on real files: outputs, keyframes, bad input, Ctrl+C."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as iio
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from corrflow_napari.cli import _settings, _track_settings, build_parser, main
from corrflow_napari.io import davis_palette, write_indexed_png

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DAVIS = SHARED / "davis2016-dev"
needs_davis = pytest.mark.skipif(not DAVIS.is_dir(),
                                 reason="../shared/data/davis2016-dev is absent (CI has it)")


def squares_video(t=10, h=64, w=80, step=2):
    """Frames (T,H,W,3) uint8 with two moving squares and their (T,H,W) ids 1 and 2."""
    frames = np.full((t, h, w, 3), 90, np.uint8)
    labels = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        x = 8 + step * i
        frames[i, 10:26, x:x + 16] = (230, 40, 40)
        labels[i, 10:26, x:x + 16] = 1
        frames[i, 36:54, x + 10:x + 28] = (40, 60, 230)
        labels[i, 36:54, x + 10:x + 28] = 2
    return frames, labels


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_png(path):
    im = Image.open(path)
    return np.array(im), im


@pytest.fixture
def clip(tmp_path):
    frames, labels = squares_video()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"{i:05d}.png", f)
    mask = tmp_path / "mask.png"
    write_indexed_png(mask, labels[0])
    return folder, mask, frames, labels


# ----------------------------------------------------------------------------- working runs


def test_propagate_mp4_writes_indexed_pngs(tmp_path, capsys):
    frames, labels = squares_video(t=8)
    video = tmp_path / "clip.mp4"
    iio.mimwrite(video, frames, fps=10, macro_block_size=1)
    mask = tmp_path / "m.png"
    pal = davis_palette(256).copy()
    pal[1], pal[2] = (10, 200, 10), (200, 10, 200)     # a custom palette must be kept
    write_indexed_png(mask, labels[0], pal)
    code, out, err = run(["propagate", video, "--mask", mask, "--out", tmp_path / "o",
                          "--features", "lab", "--overlay", tmp_path / "ov.gif"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "o").glob("*.png"))
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(8)]
    arr, im = read_png(files[-1])
    assert im.mode == "P" and arr.shape == (64, 80)
    assert np.array(im.getpalette()[:9]).reshape(3, 3).tolist()[1:] == [[10, 200, 10],
                                                                       [200, 10, 200]]
    assert set(np.unique(arr)) == {0, 1, 2}
    assert ((arr == 2) & (labels[-1] == 2)).sum() / (labels[-1] == 2).sum() > 0.7
    assert len(iio.mimread(tmp_path / "ov.gif")) == 8


@needs_davis
def test_propagate_davis_folder_with_correction_keyframe(tmp_path, capsys):
    seq = "cows"
    src = DAVIS / "JPEGImages" / "480p" / seq
    folder = tmp_path / seq
    folder.mkdir()
    for f in sorted(src.glob("*.jpg"))[:24]:
        shutil.copy(f, folder / f.name)
    ann = DAVIS / "Annotations" / "480p" / seq
    gt20 = np.array(Image.open(ann / "00020.png"))
    corr = tmp_path / "corr20.png"
    write_indexed_png(corr, np.where(gt20 > 0, 5, 0))          # the correction uses id 5
    code, out, err = run(["propagate", folder, "--mask", ann / "00000.png", "--mask-frame", 0,
                          "--mask", corr, "--mask-frame", 20, "--out", tmp_path / "o",
                          "--features", "lab"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "o").glob("*.png"))
    assert len(files) == 24
    masks = [np.array(Image.open(f)) for f in files]
    assert all(m.shape == (480, 854) for m in masks)
    # between the keyframes both sides are fused: each frame follows its nearer keyframe
    assert (masks[2] == 1).sum() > 10 * (masks[2] == 5).sum()
    assert (masks[18] == 5).sum() > 10 * (masks[18] == 1).sum()
    np.testing.assert_array_equal(masks[20], np.where(gt20 > 0, 5, 0))
    for m in masks[21:]:                                      # after 20: the correction
        assert set(np.unique(m)) == {0, 5}
    gt10 = np.array(Image.open(ann / "00010.png")) > 0
    assert ((masks[10] > 0) & gt10).sum() / ((masks[10] > 0) | gt10).sum() > 0.6


def test_settings_flags():
    parser = build_parser()
    a = parser.parse_args(["propagate", "v", "--mask", "m.png", "--out", "o", "--topk", "none",
                           "--max-keyframes", "2", "--follow", "0"])
    s = _settings(a)
    assert (s.topk, s.max_keyframes, s.n_recent, s.follow) == (None, 2, 3, False)
    a = parser.parse_args(["track", "v", "--points", "p.csv", "--out", "t.csv", "--n-recent",
                           "5", "--motion", "position", "--visible-threshold", "0.2"])
    t = _track_settings(a)
    assert (t.motion, t.visible_threshold, t.mask_power) == ("position", 0.2, 1.0)
    assert (t.propagation.n_recent, t.propagation.topk) == (5, 3)   # tracking's own top-3
    for mask_only in (["--max-keyframes", "2"], ["--follow", "0"]):   # points: own keyframe
        with pytest.raises(SystemExit):                                # and their own motion
            parser.parse_args(["track", "v", "--points", "p", "--out", "o", *mask_only])


def track_squares(tmp_path, capsys, points_csv: str) -> tuple[str, list[str]]:
    """`corrflow track` (Lab) on 6 frames of squares moving 2 px/frame in x:
    (stdout, the output CSV's lines)."""
    frames, _ = squares_video(t=6)
    video = tmp_path / "v.tif"
    tifffile.imwrite(video, frames)
    pts = tmp_path / "p.csv"
    pts.write_text(points_csv)
    code, out, err = run(["track", video, "--points", pts, "--out", tmp_path / "t.csv",
                          "--features", "lab"], capsys)
    assert code == 0, err
    return out, (tmp_path / "t.csv").read_text().splitlines()


def test_track_csv(tmp_path, capsys):
    _, rows = track_squares(tmp_path, capsys, "track_id,t,y,x\na,0,18,16\nb,0,45,27\n")
    assert rows[0] == "track_id,t,y,x,visible"
    assert len(rows) == 1 + 6 * 2
    last_a = [r for r in rows if r.startswith("a,5,")][0].split(",")
    assert abs(float(last_a[3]) - 26) < 4          # x moved by 2 px/frame


def test_track_csv_keyframe_of_a_track_on_a_later_frame(tmp_path, capsys):
    """A track_id given again on frame 4 (a corrected position) is a keyframe of that track:
    one track in the output, at the given position on frame 4, tracked from there on."""
    out, lines = track_squares(tmp_path, capsys,
                               "track_id,t,y,x\na,0,18,16\nb,0,45,27\na,4,20,30\n")
    assert "wrote 2 tracks x 6 frames" in out
    rows = [r.split(",") for r in lines[1:]]
    assert len(rows) == 6 * 2 and {r[0] for r in rows} == {"a", "b"}
    a = {int(r[1]): (float(r[2]), float(r[3])) for r in rows if r[0] == "a"}
    assert a[4] == (20.0, 30.0)                        # the keyframe, as given
    assert abs(a[5][1] - 32) < 4                       # tracked on from it (+2 px/frame)


MUST_WORK = ["grey", "rgba", "uint16_tif", "single_frame", "tiny_objects", "wide", "odd",
             "ten_objects"]


@pytest.mark.parametrize("kind", MUST_WORK)
def test_inputs_that_must_simply_work(kind, tmp_path, capsys):
    frames, labels = squares_video(t=4)
    mask = labels[0]
    video = tmp_path / "v.tif"
    data = frames
    if kind == "grey":
        data = frames.mean(-1).astype(np.uint8)
    elif kind == "rgba":
        data = np.concatenate([frames, np.full(frames.shape[:3] + (1,), 255, np.uint8)], -1)
    elif kind == "uint16_tif":
        data = frames.mean(-1).astype(np.uint16) * 200
    elif kind == "single_frame":
        data = frames[:1]
    elif kind == "tiny_objects":
        mask = np.zeros_like(mask)
        mask[20, 20] = 1
        mask[40, 60] = 2
    elif kind == "wide":
        data = np.tile(frames, (1, 1, 8, 1))[:, :16]           # 16 x 640
        mask = np.tile(labels[0], (1, 8))[:16]
    elif kind == "odd":
        data = frames[:, :37, :53]
        mask = labels[0][:37, :53]
    elif kind == "ten_objects":
        mask = np.zeros_like(mask)
        for k in range(10):
            mask[(k // 5) * 30 + 2:(k // 5) * 30 + 12, (k % 5) * 16 + 2:(k % 5) * 16 + 12] = k + 1
    tifffile.imwrite(video, data)
    mpath = tmp_path / "m.png"
    write_indexed_png(mpath, mask)
    code, out, err = run(["propagate", video, "--mask", mpath, "--out", tmp_path / "o",
                          "--features", "lab"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "o").glob("*.png"))
    assert len(files) == len(data)
    first = np.array(Image.open(files[0]))
    np.testing.assert_array_equal(first, mask)
    assert set(np.unique(np.array(Image.open(files[-1])))) <= set(np.unique(mask))


# ----------------------------------------------------------------------------- bad input


def _bad_cases():
    return ["video_missing", "video_text", "video_truncated", "folder_empty", "folder_sizes",
            "mask_missing", "mask_text", "mask_rgb_antialiased", "mask_wrong_size",
            "mask_empty", "mask_frame_range", "mask_twice", "mask_frame_count",
            "points_columns", "points_outside", "points_frame", "weights_missing",
            "weights_truncated", "weights_other_arch", "weights_text", "device_cuda",
            "scale_range"]


@pytest.mark.parametrize("case", _bad_cases())
def test_bad_input_one_line_exit_2(case, tmp_path, capsys, clip):
    folder, mask, frames, labels = clip
    out = tmp_path / "out"
    args = ["propagate", folder, "--mask", mask, "--out", out, "--features", "lab"]
    expect = None
    if case == "video_missing":
        args[1], expect = tmp_path / "nope.mp4", "nope.mp4"
    elif case == "video_text":
        p = tmp_path / "notes.mp4"
        p.write_text("this is not a video\n" * 20)
        args[1], expect = p, "notes.mp4"
    elif case == "video_truncated":
        p = tmp_path / "cut.mp4"
        iio.mimwrite(p, np.repeat(frames, 3, axis=0), fps=10, macro_block_size=1)
        data = p.read_bytes()
        p.write_bytes(data[:len(data) // 2])
        args[1], expect = p, "cut.mp4"
    elif case == "folder_empty":
        p = tmp_path / "empty"
        p.mkdir()
        (p / "readme.txt").write_text("x")
        args[1], expect = p, "empty"
    elif case == "folder_sizes":
        iio.imwrite(folder / "00099.png", np.zeros((30, 30, 3), np.uint8))
        expect = "00099.png"
    elif case == "mask_missing":
        args[3], expect = tmp_path / "nomask.png", "nomask.png"
    elif case == "mask_text":
        p = tmp_path / "mask.txt.png"
        p.write_text("hello")
        args[3], expect = p, "mask.txt.png"
    elif case == "mask_rgb_antialiased":
        p = tmp_path / "aa.png"
        rgb = np.stack([*np.meshgrid(np.arange(80), np.arange(64)), np.zeros((64, 80))], -1)
        iio.imwrite(p, (rgb * 3).astype(np.uint8))
        args[3], expect = p, "aa.png"
    elif case == "mask_wrong_size":
        p = tmp_path / "small.png"
        write_indexed_png(p, labels[0][:32, :40])
        args[3], expect = p, "small.png"
    elif case == "mask_empty":
        p = tmp_path / "zero.png"
        write_indexed_png(p, np.zeros_like(labels[0]))
        args[3], expect = p, "zero.png"
    elif case == "mask_frame_range":
        args += ["--mask-frame", "99"]
        expect = "99"
    elif case == "mask_twice":
        args += ["--mask-frame", "0", "--mask", mask, "--mask-frame", "0"]
        expect = "frame 0"
    elif case == "mask_frame_count":
        args += ["--mask", mask]
        expect = "--mask-frame"
    elif case.startswith("points"):
        pts = tmp_path / "p.csv"
        text = {"points_columns": "id,t,row\n1,0,5\n",
                "points_outside": "track_id,t,y,x\n1,0,5,500\n",
                "points_frame": "track_id,t,y,x\n1,50,5,5\n"}[case]
        pts.write_text(text)
        args = ["track", folder, "--points", pts, "--out", out / "t.csv", "--features", "lab"]
        expect = {"points_columns": "track_id", "points_outside": "outside",
                  "points_frame": "frame 50"}[case]
    elif case.startswith("weights"):
        w = tmp_path / "w.pt"
        if case == "weights_truncated":
            from corrflow_napari.model import CorrFlowModel, EncoderConfig, save_checkpoint
            save_checkpoint(w, CorrFlowModel(EncoderConfig(width=0.125)))
            w.write_bytes(w.read_bytes()[:3000])
        elif case == "weights_other_arch":
            torch.save({"state_dict": {"fc.weight": torch.zeros(3, 3)}}, w)
        elif case == "weights_text":
            w.write_text("not weights")
        else:
            w = tmp_path / "missing.pt"
        args = ["propagate", folder, "--mask", mask, "--out", out, "--weights", w]
        expect = w.name
    elif case == "device_cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        args += ["--device", "cuda"]
        expect = "auto"
    elif case == "scale_range":
        args += ["--scale", "0"]
        expect = "--scale"
    code, stdout, err = run(args, capsys)
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("corrflow: error: ")
    assert "Traceback" not in err
    assert str(expect) in lines[0], lines[0]
    # nothing half-written: no output files, or only complete keyframe PNGs
    if out.exists():
        for f in out.rglob("*"):
            if f.is_file():
                assert not f.name.startswith("."), f
                Image.open(f).verify()


def test_two_masks_need_frames(tmp_path, capsys, clip):
    folder, mask, _, _ = clip
    code, _, err = run(["propagate", folder, "--mask", mask, "--mask", mask, "--out",
                        tmp_path / "o", "--features", "lab"], capsys)
    assert code == 2 and "--mask-frame" in err


def test_ctrl_c_keeps_complete_pngs(tmp_path):
    frames, labels = squares_video(t=300, h=96, w=128, step=0)
    video = tmp_path / "long.tif"
    tifffile.imwrite(video, frames)
    mask = tmp_path / "m.png"
    write_indexed_png(mask, labels[0])
    out = tmp_path / "o"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "corrflow_napari.cli", "propagate", str(video),
                             "--mask", str(mask), "--out", str(out), "--features", "lab"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            # a test run started in the background (`cmd &`) ignores SIGINT,
                            # and the child would inherit that: give it the default handler
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.png"))) < 5:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()[-500:]
    files = sorted(out.glob("*"))
    assert 5 <= len(files) < 300
    for f in files:                       # every file written is complete and valid
        assert f.suffix == ".png"
        arr = np.array(Image.open(f))
        assert arr.shape == (96, 128)
    assert "Traceback" not in err.decode()
