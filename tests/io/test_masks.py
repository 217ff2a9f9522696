"""Label masks and their colours: davis_palette and read_mask (indexed, grey, RGB(A))."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from corrflow_napari.errors import InputError
from corrflow_napari.io import davis_palette, read_mask

from .media import assert_one_line_naming


def test_davis_palette_standard_colours():
    pal = davis_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[3].tolist() == [128, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[7].tolist() == [128, 128, 128]
    assert pal[8].tolist() == [64, 0, 0]
    assert pal[15].tolist() == [192, 128, 128]    # VOC "person"
    assert pal[255].tolist() == [224, 224, 192]   # VOC "void"
    assert len({tuple(c) for c in pal}) == 256
    assert davis_palette(5).shape == (5, 3)
    np.testing.assert_array_equal(davis_palette(5), pal[:5])


def test_read_indexed_png_mask(tmp_path):
    lab = np.zeros((20, 30), np.uint8)
    lab[2:8, 3:9] = 3
    lab[10:15, 20:28] = 7
    pal = davis_palette(256).copy()
    pal[3] = (10, 20, 30)
    p = tmp_path / "m.png"
    im = Image.fromarray(lab)
    im.putpalette(pal.reshape(-1).tolist())
    assert im.mode == "P"
    im.save(p)
    ids, palette = read_mask(p, shape=(20, 30))
    assert ids.dtype == np.int32 and ids.shape == (20, 30)
    np.testing.assert_array_equal(ids, lab)
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert palette[3].tolist() == [10, 20, 30] and palette[7].tolist() == pal[7].tolist()


def test_read_grey_masks(tmp_path):
    lab = np.zeros((12, 14), np.uint8)
    lab[1:4, 1:4] = 2
    lab[6:9, 6:9] = 5
    Image.fromarray(lab).save(tmp_path / "l.png")
    ids, pal = read_mask(tmp_path / "l.png")
    np.testing.assert_array_equal(ids, lab)
    assert pal is None
    big = lab.astype(np.uint16) * 100                          # ids up to 500
    Image.fromarray(big).save(tmp_path / "i16.png")
    ids, pal = read_mask(tmp_path / "i16.png")
    np.testing.assert_array_equal(ids, big)
    assert pal is None
    tifffile.imwrite(tmp_path / "m.tif", big)
    ids, pal = read_mask(tmp_path / "m.tif", shape=(12, 14))
    np.testing.assert_array_equal(ids, big)


def test_read_rgb_mask_with_davis_colours(tmp_path):
    pal = davis_palette()
    lab = np.zeros((16, 16), np.int32)
    lab[:4] = 1
    lab[8:, 8:] = 12
    lab[5, 5] = 3
    Image.fromarray(pal[lab]).save(tmp_path / "rgb.png")
    ids, palette = read_mask(tmp_path / "rgb.png")
    np.testing.assert_array_equal(ids, lab)
    np.testing.assert_array_equal(palette, pal)


def test_read_rgb_mask_with_arbitrary_colours(tmp_path):
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[6:, 6:] = (250, 10, 200)           # appears second in raster order
    rgb[1:3, 1:3] = (17, 230, 90)          # appears first
    Image.fromarray(rgb).save(tmp_path / "c.png")
    ids, palette = read_mask(tmp_path / "c.png")
    assert ids[0, 0] == 0 and ids[1, 1] == 1 and ids[7, 7] == 2
    assert set(np.unique(ids)) == {0, 1, 2}
    assert palette[1].tolist() == [17, 230, 90] and palette[2].tolist() == [250, 10, 200]
    # RGBA: fully transparent pixels are background
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., :3] = (255, 255, 255)
    rgba[2:5, 2:5, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    ids, _ = read_mask(tmp_path / "a.png")
    assert ids.sum() == 9 and ids[3, 3] == 1


def test_read_mask_errors(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    aa = np.stack([xx * 4, yy * 4, (xx + yy) * 2], -1).astype(np.uint8)   # > 255 colours
    Image.fromarray(aa).save(tmp_path / "aa.png")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "aa.png")
    assert_one_line_naming(e, "aa.png")
    assert "indexed PNG" in str(e.value)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "small.png", shape=(40, 60))
    assert_one_line_naming(e, "small.png")
    assert "30x20" in str(e.value) and "60x40" in str(e.value)
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "missing.png")
    assert_one_line_naming(e, "missing.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "text.png")
    assert_one_line_naming(e, "text.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "lossy.jpg")
    with pytest.raises(InputError) as e:
        read_mask(tmp_path / "lossy.jpg")
    assert_one_line_naming(e, "lossy.jpg")


@pytest.mark.parametrize("dtype, white", [(np.uint8, 255), (np.uint16, 65535)])
def test_black_and_white_mask_is_object_1_with_a_note(tmp_path, dtype, white):
    from corrflow_napari.io.masks import BinaryMaskNote
    lab = np.zeros((20, 30), dtype)
    lab[4:9, 5:12] = white
    p = tmp_path / "bw.png"
    Image.fromarray(lab).save(p)
    with pytest.warns(BinaryMaskNote, match="only 0 and") as notes:
        ids, palette = read_mask(p)
    assert len(notes) == 1 and "bw.png" in str(notes[0].message)
    np.testing.assert_array_equal(ids, (lab == white).astype(np.int32))
    assert palette is None


def test_grey_ids_with_255_among_others_are_kept(tmp_path, recwarn):
    lab = np.zeros((20, 30), np.uint8)
    lab[2:5, 2:5] = 255
    lab[10:15, 10:15] = 3                     # a real id next to 255: ids are ids
    p = tmp_path / "grey.png"
    Image.fromarray(lab).save(p)
    ids, _ = read_mask(p)
    np.testing.assert_array_equal(ids, lab)
    assert not recwarn.list


def test_cli_notes_a_black_and_white_mask_in_one_line(tmp_path, capsys):
    from corrflow_napari.cli import main
    from corrflow_napari.io import write_video
    frames = np.full((3, 32, 48, 3), 90, np.uint8)
    frames[:, 8:20, 10:26] = (230, 40, 40)
    write_video(tmp_path / "v.mp4", frames, fps=5)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:20, 10:26] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    code = main(["propagate", str(tmp_path / "v.mp4"), "--mask", str(tmp_path / "m.png"),
                 "--out", str(tmp_path / "out"), "--features", "lab", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and notes[0].startswith("corrflow: note: mask ") \
        and "object 1" in notes[0], err
    out, _ = read_mask(tmp_path / "out" / "00002.png")
    assert set(np.unique(out)) <= {0, 1} and out.any()
