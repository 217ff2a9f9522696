"""WidgetRun, the one run helper of the widgets, on a bare QWidget (no viewer)."""
import threading

import pytest
from qtpy.QtWidgets import QLabel, QPushButton, QWidget

from corrflow_napari.errors import InputError
from corrflow_napari.widgets._run import WidgetRun, duration_text, progress_text

from .helpers import error_messages, n_records

WAIT_MS = 10_000


class Dock(QWidget):
    def __init__(self, **kw):
        super().__init__()
        self.run_btn, self.cancel_btn = QPushButton("Run"), QPushButton("Cancel")
        self.status, self.rate = QLabel(), QLabel()
        self.finished, self.shown, self.items, self.extras = [], [], [], []
        self.runner = WidgetRun(self, what="counting", title="Counting",
                                run_buttons=[self.run_btn], cancel_button=self.cancel_btn,
                                status=self.status, busy_text="already counting",
                                cancel_text="stopping…", progress_label=self.rate,
                                finished=self.finished.append, **kw)

    def start(self, work, prepare=lambda: 3):
        self.texts = []
        return self.runner.start(prepare, work, self.shown.append, on_item=self.items.append,
                                 on_progress=self._on_progress, total=3)

    def _on_progress(self, done, total, extra):
        self.extras.append(extra)
        self.texts.append(self.rate.text())


def count(n, task):
    for i in range(n):
        task.send(i)
        task.progress(i + 1, n, f"x{i}")
    return "counted"


@pytest.fixture
def dock(qtbot):
    w = Dock()
    qtbot.addWidget(w)
    return w


def wait(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.runner.running, timeout=WAIT_MS)


def test_a_run_sends_items_and_progress_then_shows_its_value(qtbot, dock):
    assert not dock.cancel_btn.isEnabled()
    assert dock.start(count)
    assert dock.runner.running
    assert not dock.run_btn.isEnabled() and dock.cancel_btn.isEnabled()
    wait(qtbot, dock)
    assert dock.run_btn.isEnabled() and not dock.cancel_btn.isEnabled()
    assert dock.items == [0, 1, 2] and dock.extras == ["x0", "x1", "x2"]
    [outcome] = dock.shown
    assert (outcome.status, outcome.value, outcome.message) == ("done", "counted", "")
    assert dock.runner.last_status == "done" and dock.finished == ["done"]
    assert dock.texts[0] == "frame 1/3"                 # no rate before a second report
    assert dock.texts[-1].startswith("frame 3/3, ") and dock.texts[-1].endswith(" left")
    assert dock.rate.text() == "3 frames in 0 s"        # the summary once it has ended
    assert dock.runner.pbar is None                     # the progress bar was closed


def test_prepare_input_error_is_one_notification_and_nothing_runs(qtbot, dock):
    start = n_records()

    def bad():
        raise InputError("no video:\n open one")

    assert not dock.start(count, prepare=bad)
    assert not dock.runner.running and dock.shown == []
    assert error_messages(start) == ["no video: open one"]
    assert dock.status.text() == "no video: open one"
    start = n_records()

    def buggy():
        raise KeyError("frames")

    assert not dock.start(count, prepare=buggy)              # a bug: one line, no dialog
    assert error_messages(start) == ["counting failed (KeyError: 'frames')"]


def test_worker_exception_becomes_one_line_naming_it(qtbot, dock):
    start = n_records()

    def broken(job, task):
        raise ValueError("bad\n  value")

    def show(outcome):
        dock.shown.append(outcome)
        outcome.note = " (more)"

    dock.runner.start(lambda: None, broken, show)
    wait(qtbot, dock)
    [outcome] = dock.shown
    assert outcome.status == "error" and outcome.value is None
    assert outcome.message == "counting failed (ValueError: bad value)"
    assert error_messages(start) == ["counting failed (ValueError: bad value) (more)"]
    assert dock.status.text() == outcome.message and dock.finished == ["error"]


def test_one_run_at_a_time_and_cancel(qtbot, dock):
    gate = threading.Event()

    def until_cancelled(job, task):
        gate.set()
        task.cancel.wait(WAIT_MS / 1000)
        return "stopped"

    assert dock.start(until_cancelled)
    assert not dock.start(count)                        # already running: refused
    gate.wait(5)
    dock.cancel_btn.click()
    assert dock.status.text() == "stopping…"
    wait(qtbot, dock)
    assert [o.status for o in dock.shown] == ["cancelled"]
    assert dock.runner.cancelled
    assert dock.start(count)                            # a new run starts uncancelled
    wait(qtbot, dock)
    assert dock.shown[-1].status == "done"


def test_deleting_the_widget_cancels_the_run(qtbot):
    dock = Dock()
    started = threading.Event()

    def until_cancelled(job, task):
        started.set()
        task.cancel.wait(WAIT_MS / 1000)

    dock.start(until_cancelled)
    started.wait(5)
    task = dock.runner.task
    dock.deleteLater()
    qtbot.waitUntil(task.cancel.is_set, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not dock.runner.running, timeout=WAIT_MS)


def test_out_of_memory_in_the_worker_says_what_to_do(qtbot, dock):
    def greedy(job, task):
        raise MemoryError

    dock.start(greedy)
    wait(qtbot, dock)
    assert dock.shown[-1].message == ("counting ran out of memory; use a smaller frame "
                                      "range or the CPU.")


def test_progress_text():
    assert progress_text(0, 96, None) == "frame 0/96"
    assert progress_text(31, 96, 0.8) == "frame 31/96, 0.8 s/frame, 52 s left"
    assert progress_text(5, 0, 2.0, unit="step") == "step 5, 2 s/step"
    assert duration_text(200) == "3 min 20 s" and duration_text(3900) == "1 h 05 min"


def test_animated_indicators_are_held_still_during_a_run(qtbot, dock, tmp_path):
    """napari's "in progress" spinner repaints the whole window ~30 times a second (under
    software OpenGL that took the CPU from the run): it is paused while a run goes and
    resumed after it if nothing else stopped it."""
    from PIL import Image
    from qtpy.QtGui import QMovie
    gif = tmp_path / "spin.gif"
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(4)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=30, loop=0)
    window = QWidget()
    qtbot.addWidget(window)
    label = QLabel(window)
    movie = QMovie(str(gif))
    label.setMovie(movie)
    movie.start()
    assert movie.state() == QMovie.MovieState.Running
    go, states = threading.Event(), []

    def work(n, task):
        go.wait(5)
        return n

    assert dock.start(work)
    states.append(movie.state())
    go.set()
    wait(qtbot, dock)
    assert states == [QMovie.MovieState.Paused]
    assert movie.state() == QMovie.MovieState.Running
