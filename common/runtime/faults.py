"""Fault injection for the reliability tests: named points where a run can be made to die.

``PROTEUS_FAULT=<point>:<n>[:<action>]`` makes the n-th pass through ``failpoint(<point>)``
either SIGKILL the process (``kill``, the default: what a node failure or the OOM killer
does), send it SIGTERM (``term``: a scheduler's preemption notice) or raise
``OSError(ENOSPC)`` (``enospc``: a full disk). Unset, a failpoint is one dict lookup.
"""

from __future__ import annotations

import errno
import os
import signal

ENV_VAR = "PROTEUS_FAULT"
_hits: dict[str, int] = {}


def failpoint(point: str) -> None:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    count, _, action = rest.partition(":")
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] != int(count or 1):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"<{point}>")
    os.kill(os.getpid(), signal.SIGTERM if action == "term" else signal.SIGKILL)
