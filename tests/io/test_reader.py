"""The napari reader contribution: each supported format opens as one RGB Image layer."""
from pathlib import Path

import numpy as np
import pytest

from corrflow_napari.errors import InputError
from corrflow_napari.io import READER_EXTENSIONS
from corrflow_napari.reader import get_reader

from .media import write_with_ffmpeg

T, H, W = 5, 48, 64


@pytest.fixture(scope="module")
def clip(sample):
    frames, _ = sample
    return np.ascontiguousarray(frames[:T, 40:40 + H * 2:2, 60:60 + W * 2:2])


def write_format(kind, clip, folder):
    import tifffile
    from PIL import Image

    from corrflow_napari.io import write_video
    if kind == "mp4":
        path = folder / "bunny.mp4"
        write_video(path, clip, fps=10)
    elif kind == "gif":
        path = folder / "bunny.gif"
        write_video(path, clip, fps=10)
    elif kind == "folder":
        path = folder / "bunny_frames"
        path.mkdir()
        for t, f in enumerate(clip):
            Image.fromarray(f).save(path / f"frame{t}.png")
    else:
        path = folder / "bunny.tif"
        tifffile.imwrite(path, clip, photometric="rgb")
    return path


@pytest.mark.parametrize("kind", ["mp4", "gif", "folder", "tif"])
def test_reader_opens_each_format_as_one_rgb_image(make_napari_viewer, clip, tmp_path, kind):
    path = write_format(kind, clip, tmp_path)
    assert get_reader(str(path)) is not None
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="corrflow-napari")
    assert len(layers) == 1
    layer = layers[0]
    assert layer._type_string == "image" and layer.rgb
    assert layer.data.shape == (T, H, W, 3) and layer.data.dtype == np.uint8
    assert layer.name == ("bunny_frames" if kind == "folder" else "bunny")
    frame = np.asarray(layer.data[2])
    if kind in ("folder", "tif"):                            # lossless formats
        np.testing.assert_array_equal(frame, clip[2])
    else:
        assert np.abs(frame.astype(int) - clip[2]).mean() < 12


def test_reader_declines_what_it_cannot_read(tmp_path, clip):
    import tifffile
    (tmp_path / "notes.txt").write_text("hi")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert get_reader(str(empty)) is None
    tifffile.imwrite(tmp_path / "picture.tif", clip[0], photometric="rgb")   # one 2D image
    assert get_reader(str(tmp_path / "picture.tif")) is None


def test_reader_reports_a_claimed_broken_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01not a video at all" * 10)
    reader = get_reader(str(bad))
    assert reader is not None
    with pytest.raises(InputError) as err:
        reader(str(bad))
    assert "broken.mp4" in str(err.value) and "\n" not in str(err.value)



@pytest.mark.parametrize("ext", READER_EXTENSIONS)
def test_reader_claims_every_extension_of_the_table(tmp_path, ext):
    assert get_reader(str(tmp_path / f"clip{ext}")) is not None
    assert get_reader(str(tmp_path / f"CLIP{ext.upper()}")) is not None


def test_reader_opens_mpeg_ts_and_webp_frames(tmp_path, clip):
    from PIL import Image
    ts = write_with_ffmpeg(tmp_path / "bunny.ts", clip, fps=10)
    folder = tmp_path / "webp_frames"
    folder.mkdir()
    for t, f in enumerate(clip):
        Image.fromarray(f).save(folder / f"{t:03d}.webp", lossless=True)
    for path in (ts, folder):
        reader = get_reader(str(path))
        assert reader is not None
        [(data, meta, kind)] = reader(str(path))
        assert kind == "image" and meta["rgb"] and data.shape == (T, H, W, 3)
    np.testing.assert_array_equal(np.asarray(data), clip)


@pytest.fixture
def reader_preferences():
    """napari's reader preferences, emptied for the test and restored after it."""
    from napari.settings import get_settings
    plugins = get_settings().plugins
    saved = dict(plugins.extension2reader)
    plugins.extension2reader = {}
    yield plugins
    plugins.extension2reader = saved


def test_our_reader_is_preferred_for_videos_keeping_user_choices(reader_preferences):
    from corrflow_napari.reader import prefer_our_reader
    reader_preferences.extension2reader = {"*.avi": "napari"}      # the user's own choice
    added = prefer_our_reader()
    prefs = reader_preferences.extension2reader
    assert prefs["*.avi"] == "napari" and "*.avi" not in added
    assert prefs["*.mp4"] == prefs["*.MP4"] == prefs["*.MOV"] == "corrflow-napari"
    assert not any(p.lower().endswith((".tif", ".tiff")) for p in prefs)  # tifs: napari's
    assert prefer_our_reader() == []                                # nothing left to add


def test_opening_a_video_as_a_user_does_is_lazy(make_napari_viewer, reader_preferences,
                                                tmp_path, clip, monkeypatch):
    """File > Open and drag-and-drop of an mp4 give our lazy Video: a few frames decoded
    of 64 (napari's own reader would decode all of them)."""
    from napari.errors import MultipleReaderError

    from corrflow_napari.io import Video, write_video
    from corrflow_napari.io.ffmpeg_source import FFmpegSource
    from corrflow_napari.reader import prefer_our_reader
    path = tmp_path / "long.mp4"
    write_video(path, np.concatenate([clip] * 13)[:64], fps=10)
    decoded = []
    read = FFmpegSource.read
    monkeypatch.setattr(FFmpegSource, "read", lambda self, i: decoded.append(i) or read(self, i))
    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError):    # two readers and no preference: napari asks
        viewer.open(str(path), plugin=None)
    prefer_our_reader()                         # what activating the plugin does
    [layer] = viewer.open(str(path), plugin=None)
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)   # File > Open / drop
    for layer in viewer.layers:
        assert isinstance(layer.data, Video) and layer.data.shape == (64, H, W, 3)
    assert 2 <= len(decoded) <= 2 * 3, decoded     # measured: frames 0 and 31 per layer


def test_plugin_activation_calls_prefer_our_reader():
    from npe2 import PluginManifest

    import corrflow_napari
    from corrflow_napari import reader
    manifest = PluginManifest.from_file(Path(corrflow_napari.__file__).parent / "napari.yaml")
    module, name = manifest.on_activate.split(":")
    assert module == reader.__name__ and getattr(reader, name) is reader.activate
