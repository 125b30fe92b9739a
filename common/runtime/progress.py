"""Progress of long work: tqdm's bar on a terminal, plain lines everywhere else.

A bar redraws itself with carriage returns; written to a file (a SLURM log, a pipe into
``tee``) every redraw stays, and a day's run leaves megabytes of them. Off a terminal,
:func:`progress_bar` prints one line every ``PROTEUS_PROGRESS_SECONDS`` seconds (default 30)
instead: position, rate, ETA and the caller's postfix (the training loss parts), and one last
line when the work ends.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any

from tqdm import tqdm

from proteus.common.runtime.errors import ProteusError

ENV_SECONDS = "PROTEUS_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    initial: int = 0,
    **bar_options: Any,
):
    """A tqdm bar when stderr is a terminal, else a :class:`PlainProgress` with the same
    ``update`` / ``set_postfix`` / ``close`` / iteration interface. ``bar_options`` go to tqdm
    only (``leave``, ``smoothing``)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    if not disable and not _is_terminal():
        return PlainProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)
    return tqdm(
        iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial, **bar_options
    )


class PlainProgress:
    """One line per interval on stderr: ``train: 1200/5000 step (24%), 3.1 step/s, ETA 20m
    | loss 0.4 token 0.1 img/s 398``."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None,
        desc: str,
        unit: str,
        initial: int = 0,
        seconds: float | None = None,
        stream=None,
    ):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._start = initial
        self.seconds = _interval() if seconds is None else seconds
        self.stream = stream
        self.postfix: dict[str, Any] = {}
        self._began = self._printed = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("PlainProgress: nothing to iterate over (pass an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._printed >= self.seconds:
            self._printed = now
            self._print(now)

    def set_postfix(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        self.postfix = {**(values or {}), **more}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self._start:
            self._print(time.monotonic(), final=True)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self._began, 1e-9)
        rate = (self.n - self._start) / elapsed
        where = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        if self.total:
            where += f" {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            where += f" {self.unit}"
        text = f"{self.desc}: {where}, {rate:.3g} {self.unit}/s"
        if final:
            text += f", {_duration(elapsed)}"
        elif self.total and rate > 0:
            text += f", ETA {_duration((self.total - self.n) / rate)}"
        if self.postfix:
            text += " | " + " ".join(f"{k} {v}" for k, v in self.postfix.items())
        return text

    def _print(self, now: float, final: bool = False) -> None:
        stream = self.stream or sys.stderr
        print(self.line(now, final), file=stream, flush=True)


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _interval() -> float:
    raw = os.environ.get(ENV_SECONDS)
    if raw is None:
        return DEFAULT_SECONDS
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ProteusError(f"{ENV_SECONDS}={raw!r}: give a number of seconds, e.g. 30") from None


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def notice(text: str) -> None:
    """One line to the person running the command (stderr, so it survives pipes): what the
    run changed from what was asked, and why."""
    print(f"proteus: {text}", file=sys.stderr, flush=True)
