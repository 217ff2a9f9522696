"""The Fine-tune widget with a real viewer: stop keeps the best weights, "Use for
propagation" switches the Propagate widget to the new file, the painted frames reach the
core, the output path is proposed before starting and never replaced silently, and the
dock is compact."""
import time
from pathlib import Path

import numpy as np
import pytest

from corrflow_napari.model.cache import get_model
from corrflow_napari.widgets import FinetuneWidget

from .helpers import add_clip, propagate_widget, wait_done


def test_finetune_few_steps_then_propagate_uses_new_weights(make_napari_viewer, qtbot,
                                                            small_clip, tmp_path):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    prop = propagate_widget(viewer)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    ft.device.setCurrentText("cpu")
    from corrflow_napari.training import TrainConfig
    from corrflow_napari.training.label_objective import LabelTerm
    ft.train_config = TrainConfig.finetune(crop=64, batch=1, centroid_clips=2)   # tiny
    ft.label_term = LabelTerm(crop=64)
    ft.check_box.setChecked(False)      # kept weights regardless of the check (below)
    # Stop during a long run keeps the best weights so far
    stopped = tmp_path / "stopped.pt"
    ft.set_output(stopped)
    ft.set_budget(steps=1000)
    ft.step_done.connect(lambda step, loss: ft.stop())
    ft.start()
    assert not ft.start_btn.isEnabled() and ft.stop_btn.isEnabled()
    wait_done(qtbot, ft)
    assert ft.last_status == "cancelled" and stopped.exists()
    assert 1 <= len(ft.plot.steps) < 1000 and "Stopped." in ft.status.text()
    ft.step_done.disconnect()
    out = tmp_path / "clip_ft.pt"
    ft.set_output(out)
    ft.set_budget(steps=2)
    ft.start_btn.click()
    wait_done(qtbot, ft)
    assert ft.last_status == "done", ft.status.text()
    assert out.exists() and ft.plot.steps == [1, 2]
    ft.use_btn.click()
    assert prop.weights.value() == str(out.resolve())
    prop.end_spin.setValue(3)                                  # frames 0..3: quick
    prop.propagate()
    wait_done(qtbot, prop)
    assert prop.last_status == "done", prop.status.text()
    assert prop.last_weights == str(out.resolve())
    model = get_model(prop.last_weights, "cpu")               # the cached, loaded model
    assert Path(model.weights_path) == out.resolve() and model.name == "corrflow"
    assert all(labels.data[t].any() for t in range(4)) and not labels.data[4:].any()


def test_finetune_input_errors_do_not_start(make_napari_viewer, qtbot, small_clip):
    viewer = make_napari_viewer()
    add_clip(viewer, small_clip)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    ft.set_output("weights.txt")
    ft.start()
    assert not ft.running and "as a .pt file" in ft.status.text()
    assert ft.start_btn.isEnabled() and not ft.stop_btn.isEnabled()


@pytest.fixture
def fake_finetune(monkeypatch, tmp_path):
    """Replace the core's finetune: record its arguments, write a file, report 2 steps."""
    import corrflow_napari.training as training
    from corrflow_napari.training import FinetuneResult
    calls = []

    def fake(model, frames, **kw):
        calls.append(dict(kw, n=len(frames)))
        for step in (1, 2, 3):
            time.sleep(0.01)
            kw["progress"](step, kw.get("iters"), 1.0 / step)
        Path(kw["out"]).write_bytes(b"x")
        return FinetuneResult(model, 2, [1.0, 0.5], 0.75, "iters", Path(kw["out"]),
                              check="c", check_before=0.5, check_after=0.6,
                              labelled=sorted(kw["keyframes"] or []), seconds_per_step=0.1)

    monkeypatch.setattr(training, "finetune", fake)
    return calls


def test_widget_passes_the_painted_frames(make_napari_viewer, qtbot, small_clip, tmp_path,
                                          fake_finetune):
    viewer = make_napari_viewer()
    _, labels = add_clip(viewer, small_clip)
    labels.data[5] = np.where(small_clip[1] > 0, 2, 0)       # a second painted frame
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    ft.device.setCurrentText("cpu")
    assert ft.refresh_painted() == [0, 5] and "0, 5" in ft.painted.text()
    ft.set_output(tmp_path / "a.pt")
    ft.start()
    wait_done(qtbot, ft)
    assert ft.last_status == "done", ft.status.text()
    (call,) = fake_finetune
    assert sorted(call["keyframes"]) == [0, 5] and call["n"] == len(small_clip[0])
    assert np.array_equal(call["keyframes"][0], labels.data[0])
    assert np.array_equal(call["keyframes"][5], labels.data[5]) and call["check"] is True
    assert "improved" in ft.status.text() and ft.use_btn.isEnabled()
    qtbot.waitUntil(lambda: "step 3/" in ft.rate_label.text(), timeout=5000)  # queued
    assert "s/step" in ft.rate_label.text() and "left" in ft.rate_label.text()
    # unchecked: colours only; the Advanced check box reaches the core too
    ft.use_labels.setChecked(False)
    ft.check_box.setChecked(False)
    assert "colours only" in ft.painted.text()
    ft.set_output(tmp_path / "b.pt")
    ft.start()
    wait_done(qtbot, ft)
    assert fake_finetune[1]["keyframes"] is None and fake_finetune[1]["check"] is False


def test_output_path_is_proposed_numbered_and_never_replaced_silently(
        make_napari_viewer, qtbot, small_clip, tmp_path, monkeypatch, fake_finetune):
    from corrflow_napari.widgets import finetune as ftmod
    monkeypatch.setattr(ftmod, "user_data_folder", lambda: tmp_path / "data")
    viewer = make_napari_viewer()
    image, _ = add_clip(viewer, small_clip)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    # an array (e.g. the bundled sample): the user data folder, shown before starting
    ft._on_image_changed()
    first = tmp_path / "data" / "clip_finetuned.pt"
    assert ft.out_edit.text() == str(first)
    ft.start()
    wait_done(qtbot, ft)
    assert first.exists() and ft.output == first
    assert ft.out_edit.text() == str(tmp_path / "data" / "clip_finetuned_2.pt")  # next one
    # a video opened from a file: next to it
    video = tmp_path / "clips" / "walk.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    image.metadata["corrflow_source"] = str(video)
    assert ftmod.default_output(image) == video.parent / "walk_finetuned.pt"
    # an existing file chosen by the user: asked; "no" does not start
    asked = []
    ft.confirm_overwrite = lambda path: asked.append(path) or False
    ft.set_output(first)
    ft.start()
    assert not ft.running and asked == [first] and "exists" in ft.status.text()
    ft.confirm_overwrite = lambda path: True
    ft.start()
    wait_done(qtbot, ft)
    assert ft.last_status == "done" and len(fake_finetune) == 2


def test_dock_is_compact(make_napari_viewer, small_clip):
    viewer = make_napari_viewer()
    add_clip(viewer, small_clip)
    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    assert not ft.advanced.expanded
    assert ft.minimumSizeHint().height() <= 300
