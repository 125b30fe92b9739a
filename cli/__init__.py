"""proteus: distil vision foundation models into small ViTs from a teacher-feature cache."""

__version__ = "0.1.0"
