"""The Fine-tune widget with a real viewer: stop keeps the best weights, "Use for
propagation" switches the Propagate widget to the new file."""
from pathlib import Path

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
    ft.train_config = TrainConfig.finetune(crop=64, batch=1, centroid_clips=2)   # tiny
    # Stop during a long run keeps the best weights so far
    stopped = tmp_path / "stopped.pt"
    ft.set_output(stopped)
    ft.set_budget(steps=1000)
    ft.step_done.connect(lambda step, loss: ft.stop())
    ft.start()
    assert not ft.start_btn.isEnabled() and ft.stop_btn.isEnabled()
    wait_done(qtbot, ft)
    assert ft.last_status == "cancelled" and stopped.exists()
    assert 1 <= len(ft.plot.steps) < 1000
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
