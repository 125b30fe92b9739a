"""Per-channel statistics of a cache's targets, in teacher units: the one owner of how they
are accumulated, stored and applied.

Extraction accumulates, per target, the count, sum and sum of squares of every token of every
usable view (before encoding, so int8 and PCA caches get the teacher's own statistics), one
file per shard beside its marker (``progress/shard-<k>.stats.npz``), so a resumed extraction
keeps the shards it already has. Sealing merges them into the manifest's ``stats``:
``{name: {"mean": [D], "std": [D], "tokens": n}}``, covered by the manifest digest.

Training with ``--standardize`` learns ``(t − mean) / std`` per channel, so no teacher
dominates a multi-teacher loss by the scale of its features (as Theia stores per-teacher mean
and variance, and RADIO's PHI-S standardises); evaluation and export map predictions back with
:meth:`TargetStats.restore`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.files import atomic_write_bytes

MIN_STD = 1e-6  # a channel that never varies is divided by this, not by zero


class StatsSums:
    """Running count / sum / sum of squares per target and channel (float64)."""

    def __init__(self) -> None:
        self.sums: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}

    def update(self, name: str, values: torch.Tensor) -> None:
        """``values``: (B, D) or (B, N, D) in teacher units, failed views already left out."""
        flat = values.detach().reshape(-1, values.shape[-1]).double()
        if name not in self.sums:
            zeros = flat.new_zeros(flat.shape[-1])
            self.sums[name] = (0, zeros, zeros)
        count, total, squares = self.sums[name]
        self.sums[name] = (count + flat.shape[0], total + flat.sum(0), squares + (flat**2).sum(0))

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {}
        for name, (count, total, squares) in self.sums.items():
            arrays |= {
                f"{name}.count": np.array(count, np.int64),
                f"{name}.sum": total.cpu().numpy(),
                f"{name}.sumsq": squares.cpu().numpy(),
            }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        # Like the marker written after it: fsynced, then renamed, so a marker never points
        # at a torn statistics file.
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def merged(cls, paths: Iterable[Path]) -> StatsSums:
        out = cls()
        for path in paths:
            with np.load(path) as data:
                one = cls()
                for name in {key.rsplit(".", 1)[0] for key in data.files}:
                    one.sums[name] = (
                        int(data[f"{name}.count"]),
                        torch.from_numpy(data[f"{name}.sum"]),
                        torch.from_numpy(data[f"{name}.sumsq"]),
                    )
                out.add(one)
        return out

    @classmethod
    def from_manifest(cls, stats: dict[str, dict]) -> StatsSums:
        """Sums that give back a manifest's merged statistics (a grown cache adds its new
        shards to them; float32 means and stds: equal to about 1e-7 relative)."""
        out = cls()
        for name, entry in stats.items():
            count = int(entry["tokens"])
            mean = torch.tensor(entry["mean"], dtype=torch.float64)
            std = torch.tensor(entry["std"], dtype=torch.float64)
            out.sums[name] = (count, mean * count, (std**2 + mean**2) * count)
        return out

    def add(self, other: StatsSums) -> StatsSums:
        for name, (count, total, squares) in other.sums.items():
            if name in self.sums:
                c0, t0, s0 = self.sums[name]
                count, total, squares = c0 + count, t0 + total, s0 + squares
            self.sums[name] = (count, total, squares)
        return self

    def to_manifest(self) -> dict[str, dict]:
        out = {}
        for name, (count, total, squares) in sorted(self.sums.items()):
            if not count:
                continue
            mean = total / count
            var = (squares / count - mean**2).clamp_min(0)
            out[name] = {
                "mean": [float(v) for v in mean.float()],
                "std": [float(v) for v in var.sqrt().float()],
                "tokens": int(count),
            }
        return out


@dataclass(frozen=True)
class TargetStats:
    """One teacher's per-channel mean and std for each standardised target."""

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]

    @classmethod
    def from_manifest(cls, stats: dict[str, dict], names: Iterable[str], where: str) -> TargetStats:
        missing = [n for n in names if n not in stats]
        if missing:
            have = "no target statistics" if not stats else f"statistics of {', '.join(stats)}"
            raise ProteusError(
                f"--standardize: {where} has {have}, not of {', '.join(missing)} (caches "
                "extracted before proteus 0.2 have none); re-extract it, or train with "
                "--no-standardize"
            )
        return cls(
            {n: torch.tensor(stats[n]["mean"], dtype=torch.float32) for n in names},
            {
                n: torch.tensor(stats[n]["std"], dtype=torch.float32).clamp_min(MIN_STD)
                for n in names
            },
        )

    def to_state(self) -> dict[str, dict[str, list[float]]]:
        return {n: {"mean": self.mean[n].tolist(), "std": self.std[n].tolist()} for n in self.mean}

    @classmethod
    def from_state(cls, state: dict[str, dict[str, list[float]]]) -> TargetStats:
        return cls(
            {n: torch.tensor(s["mean"], dtype=torch.float32) for n, s in state.items()},
            {n: torch.tensor(s["std"], dtype=torch.float32) for n, s in state.items()},
        )

    def to(self, device: torch.device | str) -> TargetStats:
        """The same statistics on ``device`` (once, not per batch)."""
        return TargetStats(
            {n: t.to(device) for n, t in self.mean.items()},
            {n: t.to(device) for n, t in self.std.items()},
        )

    def standardize(self, name: str, target: torch.Tensor) -> torch.Tensor:
        if name not in self.mean:
            return target
        mean, std = self.mean[name].to(target.device), self.std[name].to(target.device)
        return (target - mean) / std

    def restore(self, name: str, prediction: torch.Tensor) -> torch.Tensor:
        """A prediction of the standardised target, back in teacher units."""
        if name not in self.mean:
            return prediction
        mean, std = self.mean[name].to(prediction.device), self.std[name].to(prediction.device)
        return prediction * std + mean
