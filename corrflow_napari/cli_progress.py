"""What every ``corrflow`` command shows and how it stops: the one progress line
(:class:`ProgressBar`) and the one Ctrl+C handler (:class:`CancelOnSigint`)."""
from __future__ import annotations

import signal
import sys
import threading
import time


def say(msg: str) -> None:
    """One line on stderr (logs and messages; stdout carries the commands' results)."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


class ProgressBar:
    """One progress line on stderr for any long command, a ``progress`` callback:
    ``bar(done, total)`` (frames) or ``bar(step, total, loss)`` (training; ``total`` may
    be None when only a time limit bounds the run)::

        propagate 12/80 [===                     ] 0.84 s/frame ETA 0:00:57
        train 40/5000 [                        ] 1.72 s/step ETA 2:22:10 loss 4.012 (avg 4.180)

    The rate and ETA count from the first report, so start-up time is excluded. On a
    terminal the line is rewritten in place (at most every 0.2 s); otherwise (a log
    file) a full line is written at most every 30 s, and always at the end.
    """

    width = 24

    def __init__(self, label: str, unit: str = "frame", stream=None):
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.d0 = None
        self.last = -float("inf")
        self.mean = None          # running (exponential) mean of the loss

    def __call__(self, done: int, total: int | None = None, loss: float | None = None) -> None:
        if loss is not None:
            self.mean = loss if self.mean is None else 0.95 * self.mean + 0.05 * loss
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.d0 = now, done
        finished = total is not None and done >= total
        if not finished and now - self.last < (0.2 if self.tty else 30.0):
            return
        self.last = now
        line = self.line(done, total, loss, now)
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        if finished and self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def line(self, done: int, total: int | None, loss: float | None, now: float) -> str:
        """The text of the line (no line ending)."""
        parts = [self.label]
        if total:
            filled = int(self.width * min(done, total) / total)
            parts += [f"{done}/{total}", f"[{'=' * filled}{' ' * (self.width - filled)}]"]
        else:
            parts.append(str(done))
        if done > self.d0 and now > self.t0:
            per_unit = (now - self.t0) / (done - self.d0)
            parts.append(f"{1 / per_unit:.1f} {self.unit}/s" if per_unit < 1
                         else f"{per_unit:.2f} s/{self.unit}")
            if total and done < total:
                parts.append(f"ETA {_clock(per_unit * (total - done))}")
        if loss is not None:
            parts.append(f"loss {loss:.3f} (avg {self.mean:.3f})")
        return " ".join(parts)


class CancelOnSigint:
    """Ctrl+C while a command runs (a context manager; main thread only).

    With an ``event`` (a command that can stop early and keep its work): the first
    Ctrl+C sets it and prints ``message``; the command stops at its next frame or step.
    A second Ctrl+C, or the first when ``event`` is None, raises KeyboardInterrupt.
    """

    def __init__(self, event: threading.Event | None,
                 message: str = "interrupt: stopping (Ctrl+C again to abort now)", log=say):
        self.event, self.message, self.log, self.old = event, message, log, None

    def __enter__(self) -> CancelOnSigint:
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.event is None or self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        on_tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self.log(("\n" if on_tty else "") + self.message)   # below a progress line

    def __exit__(self, *exc) -> bool:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        return False
