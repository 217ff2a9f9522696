"""One background run per dock widget: the widget supplies what to prepare, run and show;
:class:`WidgetRun` owns everything else.

* ``prepare()`` (GUI thread) gathers the inputs and returns a job; it may raise InputError,
  which becomes a one-line napari notification (and the status text); so does any other
  exception, as one line naming it (no traceback dialog).
* ``work(job, task)`` (napari worker thread) calls the core with ``task.progress`` and
  ``task.cancel``; ``task.send(item)`` hands an item to ``on_item`` in the GUI thread.
  Its exceptions become one line naming the problem (no traceback dialog).
* ``show(outcome)`` (GUI thread) writes the results; :class:`Outcome` says "done",
  "cancelled" or "error". Error messages are then notified by the helper.

The napari progress bar's animated "in progress" indicator is held still while a run
goes (the dock's label shows the progress): each of its ~30 frames a second repainted the
whole window, which under software OpenGL (remote desktops, VMs, Xvfb) took the CPU
from the run: 30 frames of a 720p clip took 20.4 s with it running, 12.9 s held still.

The helper also owns the cancel event, the napari progress bar, the busy buttons (run
buttons disabled, Cancel enabled), the already-running guard, cancel when the widget is
deleted or taken out of its dock, and an optional "frame 31/96, 0.8 s/frame, 52 s left"
label (pass any QLabel as ``progress_label``; ``unit`` names what ``progress(done, total)``
counts, e.g. "step"); when the run ends the label says "47 frames in 14 s".
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject, Signal
from qtpy.QtGui import QMovie
from qtpy.QtWidgets import QApplication, QLabel

from ..errors import InputError


@dataclass
class Outcome:
    """How a run ended: ``status`` "done" | "cancelled" | "error", the value ``work``
    returned (None on error), the one-line error ``message``; ``show`` may set ``note``
    (appended to the error notification only)."""

    status: str
    value: object = None
    message: str = ""
    note: str = ""


class _Relay(QObject):
    """Carries items and progress from the worker thread to the GUI thread (queued)."""

    item = Signal(object)
    progress = Signal(object, object, object)


class Task:
    """What ``work`` gets in the worker thread: ``cancel`` (threading.Event),
    ``progress(done, total, extra=None)`` and ``send(item)``."""

    def __init__(self, relay: _Relay):
        self.cancel = threading.Event()
        self._relay = relay

    def progress(self, done, total, extra=None) -> None:
        self._relay.progress.emit(done, total, extra)

    def send(self, item) -> None:
        self._relay.item.emit(item)


def still_spinners() -> list:
    """Pause every running animated label (napari's activity indicator) in the
    application's windows; returns the movies paused (resume them with
    ``setPaused(False)`` while they are still paused)."""
    app = QApplication.instance()
    paused = []
    for top in app.topLevelWidgets() if app is not None else []:
        for label in top.findChildren(QLabel):
            movie = label.movie()
            if movie is not None and movie.state() == QMovie.MovieState.Running:
                movie.setPaused(True)
                paused.append(movie)
    return paused


def one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def failure_message(exc: BaseException, what: str) -> str:
    """One line for the user: an InputError's own words, else what failed and why."""
    if isinstance(exc, InputError):
        return one_line(exc, 1000)
    if isinstance(exc, MemoryError):
        return f"{what} ran out of memory; use a smaller frame range or the CPU."
    return f"{what} failed ({type(exc).__name__}: {one_line(exc)})"


def _guarded(work: Callable, job, task: Task, what: str) -> Outcome:
    """Run ``work`` in the worker thread; never raise (errors become an Outcome)."""
    try:
        value = work(job, task)
    except Exception as exc:   # never crash the viewer: report as a notification
        return Outcome("error", message=failure_message(exc, what))
    return Outcome("cancelled" if task.cancel.is_set() else "done", value)


def duration_text(seconds: float) -> str:
    """``52 s``, ``3 min 20 s``, ``1 h 05 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_text(done: int, total: int, seconds_per_unit: float | None,
                  unit: str = "frame") -> str:
    """``frame 31/96, 0.8 s/frame, 52 s left`` (rate and time left once measured)."""
    text = f"{unit} {done}/{total}" if total else f"{unit} {done}"
    if seconds_per_unit is not None:
        text += f", {seconds_per_unit:.2g} s/{unit}"
        if total:
            text += f", {duration_text((total - done) * seconds_per_unit)} left"
    return text


def summary_text(done: int, seconds: float, unit: str = "frame") -> str:
    """``47 frames in 14 s`` (what a finished run did)."""
    return f"{done} {unit}{'' if done == 1 else 's'} in {duration_text(seconds)}"


class WidgetRun:
    """Runs one job at a time for a dock ``widget`` (see the module docstring).

    what: words for errors ("propagation"); title: the progress bar's text; status: the
    widget's status QLabel; busy_text: notification when a run is already going;
    cancel_text: status text while cancelling; progress_label/unit: optional label for
    :func:`progress_text`; summary(done, seconds): its text once the run has ended
    (default :func:`summary_text`); finished(status): called after ``show``.
    """

    def __init__(self, widget, *, what: str, title: str, run_buttons, cancel_button, status,
                 busy_text: str, cancel_text: str | None = None, progress_label=None,
                 unit: str = "frame", finished: Callable[[str], None] | None = None,
                 summary: Callable[[int, float], str] | None = None):
        self.what, self.title, self.status = what, title, status
        self.run_buttons, self.cancel_button = list(run_buttons), cancel_button
        self.busy_text, self.cancel_text = busy_text, cancel_text
        self.progress_label, self.unit, self._finished = progress_label, unit, finished
        self._summary = summary or (lambda done, seconds: summary_text(done, seconds, unit))
        self.last_status: str | None = None
        self.task: Task | None = None
        self.pbar = None
        self._paused: list = []           # spinners held still during the run
        self._worker = None
        self._show = self._on_item = self._on_progress = None
        self._closed = False
        self._first: tuple[float, int] | None = None
        self._started, self._done, self._seconds = 0.0, 0, None
        cancel_button.setEnabled(False)
        cancel_button.clicked.connect(lambda *_: self.cancel())
        widget.destroyed.connect(self._on_destroyed)
        self._filter = _RemovedFilter(self._cancel_quietly)
        widget.installEventFilter(self._filter)

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def cancelled(self) -> bool:
        return self.task is not None and self.task.cancel.is_set()

    def start(self, prepare: Callable[[], object], work: Callable, show: Callable,
              *, on_item: Callable | None = None, on_progress: Callable | None = None,
              total: int = 0, what: str | None = None, title: str | None = None) -> bool:
        """Prepare and start a run; False (and a notification) when it cannot start.
        ``total``: the progress bar's length until the first report; ``what``, ``title``:
        this run's words for errors and its progress bar (default: the constructor's)."""
        if self.running:
            show_info(self.busy_text)
            return False
        try:
            job = prepare()
        except Exception as exc:   # InputError: the user's to fix; anything else: a bug
            self._report(failure_message(exc, what or self.what))
            return False
        relay = _Relay()
        relay.item.connect(self._item)
        relay.progress.connect(self._progress)
        self._relay, self.task = relay, Task(relay)
        self._show, self._on_item, self._on_progress = show, on_item, on_progress
        self._first = None
        self._started, self._done, self._seconds = time.perf_counter(), 0, None
        if self.progress_label is not None:
            self.progress_label.setText("starting…")
        self.pbar = napari_progress(total=total, desc=title or self.title)
        self._paused = still_spinners()
        worker = create_worker(_guarded, work, job, self.task, what or self.what,
                               _start_thread=False)
        worker.returned.connect(self._returned)
        worker.finished.connect(self._ended)
        self._worker = worker
        self._set_busy(True)
        worker.start()
        return True

    def cancel(self) -> bool:
        """Ask the run to stop at its next check; True when one was running."""
        if self.task is not None:
            self.task.cancel.set()
        if self.running and self.cancel_text and not self._closed:
            self.status.setText(self.cancel_text)
        return self.running

    # ------------------------------------------------------------------ GUI thread
    def _report(self, message: str, note: str = "") -> None:
        show_error(message + note)
        if not self._closed:
            self.status.setText(message)

    def _set_busy(self, busy: bool) -> None:
        if self._closed:
            return
        for b in self.run_buttons:
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _item(self, item) -> None:
        if self._on_item is not None and self._worker is not None:
            self._guard(self._on_item, item)

    def _progress(self, done, total, extra) -> None:
        # the label first: napari's progress bar may process events (the run's end too)
        self._done = max(self._done, int(done))
        if self.progress_label is not None and not self._closed:
            self.progress_label.setText(
                progress_text(int(done), int(total or 0), self._rate(int(done)), self.unit)
                if self._seconds is None      # a report may arrive after the run returned
                else self._summary(self._done, self._seconds))
        pbar = self.pbar
        if pbar is not None and total is not None:
            if pbar.total != total:
                pbar.total = total
            pbar.update(int(done) - pbar.n)
        if self._on_progress is not None:
            self._guard(self._on_progress, done, total, extra)

    def _rate(self, done: int) -> float | None:
        """Seconds per unit since the first report of the run (model loading excluded)."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done)
        t0, d0 = self._first
        return (now - t0) / (done - d0) if done > d0 else None

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except RuntimeError:
            if not self._closed:       # a deleted Qt widget is expected after closing
                raise

    def _returned(self, outcome: Outcome) -> None:
        self._close_pbar()
        self._seconds = time.perf_counter() - self._started
        if self.progress_label is not None and not self._closed:
            self.progress_label.setText(self._summary(self._done, self._seconds))
        self._guard(self._show, outcome)
        if outcome.status == "error":
            self._report(outcome.message, outcome.note)
        self.last_status = outcome.status
        if self._finished is not None:
            self._guard(self._finished, outcome.status)

    def _ended(self) -> None:
        self._close_pbar()
        self._worker = None
        self._set_busy(False)

    def _close_pbar(self) -> None:
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None
        for movie in self._paused:      # still paused: other progress bars are running
            if movie.state() == QMovie.MovieState.Paused:
                movie.setPaused(False)
        self._paused = []

    def _cancel_quietly(self) -> None:
        if self.task is not None:
            self.task.cancel.set()

    def _on_destroyed(self, *_) -> None:
        self._closed = True
        self._cancel_quietly()


class RunsInBackground:
    """Mixin for dock widgets whose ``runner`` is a :class:`WidgetRun`."""

    runner: WidgetRun

    @property
    def running(self) -> bool:
        """Whether a run is going."""
        return self.runner.running

    @property
    def last_status(self) -> str | None:
        """"done", "cancelled" or "error" after a run."""
        return self.runner.last_status


class _RemovedFilter(QObject):
    """Calls ``on_removed`` when the watched widget loses its parent (napari's dock close
    button takes it out of the window without deleting it)."""

    def __init__(self, on_removed):
        super().__init__()
        self._on_removed = on_removed

    def eventFilter(self, obj, event):  # noqa: N802 - Qt API
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._on_removed()
        return False
