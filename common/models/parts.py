"""The parts of what a student learns from each teacher, as plain data: the loss parts'
names, how predictions meet targets, their weights and the intermediate-layer hints.

Configs, the command line and run records hold these without torch (``proteus --help`` does
not load it); ``heads.py`` builds the heads they call for, ``train/objective.py`` computes
the losses.
"""

from __future__ import annotations

from dataclasses import dataclass

from proteus.common.runtime.errors import ProteusError

# The one table of loss parts: λ names (Lambdas' fields), logged as loss_<part>, in this order.
LOSS_PARTS = ("token", "fea", "patch", "hint")
# How a prediction is compared with its target (--loss): Proteus's MSE, or RADIO's
# cosine (+ smooth-L1 on spatial tokens).
LOSS_KINDS = ("mse", "cosine-smooth-l1")


@dataclass(frozen=True)
class Lambdas:
    token: float = 1.0
    fea: float = 1.0
    patch: float = 1.0
    hint: float = 1.0  # weight of each hint's MSE; unused without hints

    def needed_targets(self) -> tuple[str, ...]:
        """Only these arrays are read from the cache: a token-only run never touches patch."""
        names = ["cls"] if self.token or self.fea else []
        if self.fea or self.patch:
            names.append("patch")
        return tuple(names)


@dataclass(frozen=True)
class Hint:
    """Student block ``block`` (0-based output of that block) learns the teacher's stored
    ``layer_<layer>`` target of the ``teacher``-th cache (0-based) through its own head."""

    block: int
    layer: int
    teacher: int = 0

    @property
    def target(self) -> str:
        return f"layer_{self.layer}"

    @property
    def key(self) -> str:  # a ModuleDict key: no dots
        return f"block{self.block}_layer{self.layer}"

    def __str__(self) -> str:
        return f"{self.block}:{self.layer}" + (f"@{self.teacher + 1}" if self.teacher else "")

    @classmethod
    def parse(cls, text: str) -> Hint:
        """``S:T`` (first cache) or ``S:T@C`` (the C-th --cache, from 1): the --hint form."""
        pair, _, cache = text.partition("@")
        block, sep, layer = pair.partition(":")
        try:
            if not sep:
                raise ValueError
            teacher = int(cache) - 1 if cache else 0
            if teacher < 0:
                raise ValueError
            return cls(int(block), int(layer), teacher)
        except ValueError:
            raise ProteusError(
                f"--hint {text}: write STUDENT_BLOCK:TEACHER_LAYER, e.g. 5:19, or 5:19@2 for the "
                "second --cache"
            ) from None
