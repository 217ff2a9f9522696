"""``make demo``'s headless path on the first frames of the bundled sample (half size, to
stay fast on a CPU): the mask PNGs and the overlay are written, with the shipped weights
and with the Lab fallback used when they are not installed."""
import numpy as np
import pytest
from PIL import Image

import corrflow_napari.model
import corrflow_napari.sample_data
from corrflow_napari import demo

N_FRAMES = 2


@pytest.fixture
def short_sample(monkeypatch, small_clip):
    """The demo sees only the first N_FRAMES frames of the (half-size) sample."""
    frames, mask = small_clip
    monkeypatch.setattr(corrflow_napari.sample_data, "load_sample",
                        lambda: (frames[:N_FRAMES], mask))
    return frames[:N_FRAMES], mask


def check_outputs(out, frames, mask):
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(len(frames))]
    first = Image.open(pngs[0])
    assert first.mode == "P" and first.size == (frames.shape[2], frames.shape[1])
    np.testing.assert_array_equal(np.array(first), mask)        # the given frame is kept
    assert all(np.array(Image.open(p)).any() for p in pngs)     # the object is not lost
    gif = Image.open(out / "overlay.gif")
    assert gif.size == (frames.shape[2], frames.shape[1]) and gif.n_frames == len(frames)


def test_headless_demo_with_shipped_weights(tmp_path, short_sample):
    if not corrflow_napari.model.SHIPPED_WEIGHTS.exists():
        pytest.skip("the shipped weights are not installed")
    lines = []
    assert demo.run_headless(tmp_path, device="cpu", log=lines.append) == tmp_path
    assert any("shipped CorrFlow weights" in s for s in lines)
    check_outputs(tmp_path, *short_sample)


def test_demo_main_without_viewer_falls_back_to_lab(tmp_path, short_sample, monkeypatch,
                                                    capsys):
    monkeypatch.setattr(corrflow_napari.model, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    assert demo.main(["--out", str(tmp_path / "out"), "--no-viewer", "--device", "cpu"]) == 0
    assert "Lab-colour baseline" in capsys.readouterr().out
    check_outputs(tmp_path / "out", *short_sample)


def test_demo_viewer_opens_the_computed_result_on_frame_0(tmp_path, short_sample, monkeypatch,
                                                          qtbot):
    """``make demo`` with a display: the result it just wrote, loaded (not recomputed), on
    frame 0, the window on the whole screen, the axis named t, the frame fitted."""
    from qtpy.QtWidgets import QApplication

    import corrflow_napari.propagation
    monkeypatch.setattr(corrflow_napari.model, "SHIPPED_WEIGHTS", tmp_path / "absent.pt")
    demo.run_headless(tmp_path, device="cpu", log=lambda s: None)
    monkeypatch.setattr(corrflow_napari.propagation, "propagate",
                        lambda *a, **k: pytest.fail("the demo viewer must not recompute"))
    viewer, docks = demo.open_viewer(tmp_path, show=True)
    try:
        qtbot.wait(300)                                  # docks laid out, view reset
        frames, mask = short_sample
        labels = viewer.layers["bunny labels"]
        for t in range(N_FRAMES):
            np.testing.assert_array_equal(
                labels.data[t], np.array(Image.open(tmp_path / "masks" / f"{t:05d}.png")))
        assert labels.data[1].any()                      # the propagated frame is shown too
        assert viewer.dims.current_step[0] == 0
        assert tuple(viewer.dims.axis_labels) == ("t", "y", "x")
        g = QApplication.primaryScreen().availableGeometry()     # 800x600 under pytest-xvfb
        x, y, w, h = viewer.window.geometry()
        assert (x, y) == (g.x(), g.y()) and h == g.height()
        assert w == max(g.width(), viewer.window._qt_window.minimumSizeHint().width())
        assert docks["propagate"][0].keyframes() == [0]  # propagated frames are not painted
        ch, cw = viewer.canvas.size
        fit = min(cw / frames.shape[2], ch / frames.shape[1])
        zoom = viewer.scene.camera.zoom
        assert 0.8 * fit <= zoom <= fit, (zoom, fit)     # the whole frame, filling the canvas
    finally:
        viewer.close()
