"""The one exception type users see."""


class ProteusError(Exception):
    """A problem the user can fix (bad option, missing file, wrong cache).

    The message names the thing that is wrong and how to fix it. The command-line layer prints
    it on one line and exits non-zero, with no traceback: a traceback is for our bugs, not for
    a typo in a path.
    """


class Interrupted(ProteusError):
    """Stopped on purpose (SIGTERM, Ctrl-C) with the state saved: callers running several jobs
    stop too, instead of treating it as one job's failure."""
