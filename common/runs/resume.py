"""Whether a saved checkpoint may continue this run: what ``--resume`` refuses, and why.

A resumed run repeats an uninterrupted one's losses exactly only if everything that shapes a
step is what it was: the student, the recipe, the batch and world size, each teacher's
objective and targets. The trainer describes itself as the checkpoint it would write
(:class:`Checkpoint` at its first step), and :func:`check_resume` compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proteus.common.runs.checkpoint import FORMAT, Checkpoint
from proteus.common.runtime.errors import ProteusError


def _key(checkpoint: Checkpoint) -> dict[str, Any]:
    """What must be equal, by the name --resume's message gives it."""
    config = checkpoint.config
    return {
        "student_name": checkpoint.student_name,
        "recipe": checkpoint.recipe,
        "batch_size": checkpoint.batch_size,
        "world": checkpoint.world,
        "objective (λ, hints)": [t.objective_key() for t in checkpoint.teachers],
        # Runs from before these options existed trained with MSE, raw and unbalanced.
        "loss": config.get("loss", "mse"),
        "standardize": any(checkpoint.target_stats or ()),
        "balance_teachers": config.get("balance_teachers", False),
        "online_fraction": config.get("online_fraction") or 0.0,
    }


def check_resume(
    saved: Checkpoint,
    current: Checkpoint,
    grown_from: Sequence[Sequence[str]] = (),
    allow_grown: bool = False,
) -> None:
    """Raise unless ``saved`` can continue the run that would write ``current``.
    ``grown_from``: per teacher, the digests its cache had before it grew; a run that
    trained on one of them resumes only when ``allow_grown`` (--allow-grown-cache)."""
    if saved.format != FORMAT:
        raise ProteusError(
            f"--resume: the checkpoint has format {saved.format}, this proteus "
            f"resumes format {FORMAT}; evaluate or export it, or start a new run"
        )
    had, want = _key(saved), _key(current)
    for key in had:
        if had[key] != want[key]:
            raise ProteusError(
                f"--resume: the checkpoint has {key}={had[key]!r}, this run asks {want[key]!r}; "
                "resume with the original options"
            )
    trained_on = [t.weights_sha256 for t in saved.teachers]
    if trained_on != [t.weights_sha256 for t in current.teachers]:
        raise ProteusError("--resume: the checkpoint was trained on another teacher's cache")
    for was, now, earlier in zip(saved.teachers, current.teachers, grown_from, strict=False):
        digest = was.source.manifest_sha256
        if (
            digest
            and digest != now.source.manifest_sha256
            and digest in earlier
            and not allow_grown
        ):
            raise ProteusError(
                f"--resume: --cache {now.source.path} grew since this run started (it trained "
                f"on manifest {digest[:12]}…, the cache now has more views); its remaining steps "
                "would sample views it did not plan: pass --allow-grown-cache to continue on "
                "all of them, or start a new run"
            )
