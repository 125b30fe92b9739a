"""Targets as the losses read them: per teacher, decoded to float on the training device,
token grids on the student's, keyed by target name (``cls``, ``patch``, ``layer_<i>``).

Where they come from differs (a cache's stored bytes, decoded on the device; an online
teacher's forward: ``train/sources/``), what the losses get does not: :class:`StudentTargets`
is the one path between the two, for cached, aligned-cache and online training alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from proteus.common.cache.stats import TargetStats
from proteus.common.models.grid import resize_layer_targets, resize_patch_targets


class StudentTargets:
    """``teacher_grids[i]``: the patch grid of teacher i's targets; ``student_grid``: the
    grid they are resampled to (bilinear, as the reference resizes nothing: equal grids pass
    through untouched)."""

    def __init__(
        self,
        teacher_grids: Sequence[tuple[int, int]],
        student_grid: tuple[int, int],
        device: torch.device,
        stats: Sequence[TargetStats | None] | None = None,
        names: Sequence[tuple[str, ...]] | None = None,
        expand: Sequence[dict] | None = None,
    ):
        """``stats``: per teacher, the statistics to standardise its targets with (None:
        raw, as Proteus distils). ``names``: per teacher, the targets this student reads
        (None: all given); students trained together are handed every student's.
        ``expand``: per teacher, name -> PCABasis of targets given as coefficients that this
        student learns in teacher units (another student of the stream reads them so)."""
        # On the training device once: standardising must not copy them every step.
        given = list(stats) if stats is not None else [None] * len(teacher_grids)
        self.stats = [s.to(device) if s else None for s in given]
        self.teacher_grids = [(int(g[0]), int(g[1])) for g in teacher_grids]
        self.student_grid = (int(student_grid[0]), int(student_grid[1]))
        self.device = device
        self.names = [set(n) for n in names] if names is not None else None
        self.expand = list(expand) if expand is not None else [{} for _ in teacher_grids]

    def prepare(self, decoded: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """Per teacher: standardised (when asked) and on the student's grid."""
        wanted: list[set[str] | None] = [None] * len(decoded)
        if self.names is not None:
            wanted = list(self.names)
        out = []
        for own, grid, stats, keep, expand in zip(
            decoded, self.teacher_grids, self.stats, wanted, self.expand, strict=True
        ):
            prepared = {}
            for name, t in own.items():
                if keep is not None and name not in keep:
                    continue
                if name in expand:
                    t = t @ expand[name].components + expand[name].mean
                if stats:
                    t = stats.standardize(name, t)
                prepared[name] = self._on_student_grid(name, t, grid)
            out.append(prepared)
        return out

    def _on_student_grid(self, name: str, target: torch.Tensor, grid) -> torch.Tensor:
        if name == "cls":
            return target
        if name == "patch":
            return resize_patch_targets(target, grid, self.student_grid)
        return resize_layer_targets(target, self.student_grid)
