"""proteus: distil vision foundation models into small ViTs from a teacher-feature cache.

This package is the command line; the library (``proteus.common``, ``.extract``, ``.train``,
``.evaluate``) never imports it.
"""

from proteus.common.runtime.version import __version__

__all__ = ["__version__"]
