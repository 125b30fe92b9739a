"""The one place the version is written: the library stamps it into caches, checkpoints and
exports, ``proteus --version`` prints it, and pyproject.toml reads it from here."""

__version__ = "0.3.0"
