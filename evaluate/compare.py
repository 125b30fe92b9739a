"""One table over several run folders: what differs, final losses, evaluations, speed.

Everything comes from what a run folder already holds: ``config.json`` (resolved options),
``log.jsonl`` (per-step losses and speed) and ``eval/*.json`` (written by ``proteus eval``
when it is given the run folder as --checkpoint).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from proteus.common.runs.folder import RunFolder
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.files import atomic_write_text

# Options that say nothing about the experiment, left out of the "what differs" columns.
_NOT_COMPARED = {
    "out",
    "resume",
    "progress",
    "tensorboard",
    "render_threads",
    "device",
    "checkpoint_every",
    "data",
}
_FINAL_SHARE = 0.05  # final losses: the mean over the last 5% of logged steps


@dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]

    def text(self) -> str:
        cells = [[_cell(row.get(c)) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)

    def write_csv(self, path: Path) -> None:
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: _csv(row.get(c)) for c in self.columns} for row in self.rows])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, buffer.getvalue())
        except OSError as exc:
            raise ProteusError(f"--csv {path}: cannot write ({exc.strerror or exc})") from exc


def compare_runs(runs: list[Path]) -> Table:
    """Files among ``runs`` are passed over, so ``proteus compare OUT/*`` works in a sweep's
    folder (which also holds compare.csv)."""
    runs = [Path(run) for run in runs if not Path(run).is_file()]
    if not runs:
        raise ProteusError("compare: no run folders given")
    summaries, configs = zip(*(summarize_run(run) for run in runs), strict=True)
    differ = [
        key
        for key in dict.fromkeys(k for c in configs for k in c)
        if key not in _NOT_COMPARED
        and len({json.dumps(c.get(key), sort_keys=True) for c in configs}) > 1
    ]
    for summary, config in zip(summaries, configs, strict=True):
        summary |= {key: _brief(config.get(key)) for key in differ}
    fixed = ["run", *differ, "student", "teachers", "images", "steps"]
    measured = [c for s in summaries for c in s if c not in fixed]
    order = sorted(dict.fromkeys(measured), key=_column_rank)
    return Table(fixed + order, list(summaries))


def summarize_run(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's table row, and its options (for the "what differs" columns)."""
    folder = RunFolder(run)
    resolved = folder.read_config()
    log = read_log(run)
    cfg = resolved.get("config", {})
    teachers = resolved.get("teachers") or [resolved.get("teacher", {"name": "?"})]
    row: dict[str, Any] = {
        "run": run.name,
        "student": cfg.get("student"),
        "teachers": "+".join(t["name"] for t in teachers),
        "images": resolved.get("images"),
        "steps": f"{len(log)}/{resolved.get('total_steps')}",
    }
    if log:
        tail = log[-max(1, math.ceil(len(log) * _FINAL_SHARE)) :]
        for key in log[-1]:
            if key.startswith("loss"):
                row[key] = float(np.mean([r[key] for r in tail]))
        speeds = [r["images_per_s"] for r in log[1:] or log]  # the first step warms up
        row["images_per_s"] = float(np.median(speeds))
        batch = resolved.get("global_batch", 1)
        row["train_s"] = float(sum(batch / max(r["images_per_s"], 1e-9) for r in log))
        gauged = sum(r.get("gauge_s", 0.0) for r in log)
        if gauged:  # the gauge's time next to the steps' (train/gauge.py: goal ≤ 3%)
            row["gauge_share"] = gauged / max(row["train_s"], 1e-9)
    row |= _gauge(log)
    for path in sorted(RunFolder(run).eval_dir.glob("*.json")):
        row |= _evaluation(path)
    return row, cfg


def _gauge(log: list[dict[str, Any]]) -> dict[str, Any]:
    """Per gauged set (train/gauge.py): the final loss, the best loss and the step of the best,
    and the final token and patch cosines."""
    row: dict[str, Any] = {}
    sets = dict.fromkeys(k.split("/")[1] for r in log for k in r if k.startswith("gauge/"))
    for name in sets:
        key = f"gauge/{name}/loss"
        points = [(r[key], r["step"]) for r in log if key in r]
        best, at = min(points)
        row |= {f"{name}_loss": points[-1][0], f"{name}_best": best, f"{name}_best_step": at}
        for cosine in ("token_cosine", "patch_cosine"):
            last = [r[f"gauge/{name}/{cosine}"] for r in log if f"gauge/{name}/{cosine}" in r]
            if last:
                row[f"{name}_{cosine}"] = last[-1]
    return row


def _evaluation(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return {}
    kind = path.stem
    if "top1" in result:  # eval knn / linear, or a suite's DATASET_PROTOCOL entry
        return {f"{kind}_top1": result.get("top1")}
    if result.get("task") == "seg":  # eval seg: kept under its --name (default seg, seg_b4…)
        return {f"{kind}_miou": result.get("miou")}
    if result.get("task") == "depth":
        return {f"{kind}_rmse": result.get("rmse"), f"{kind}_delta1": result.get("delta1")}
    if kind.startswith("agreement"):
        return {f"{kind}_{k}": v for k, v in result.items() if k.endswith("_cosine")}
    return {}


def _column_rank(column: str) -> tuple[int, str]:
    order = (
        *("loss", "trained_views", "heldout_views", "heldout_images"),
        *("knn", "linear", "seg", "depth"),
    )
    for rank, prefix in enumerate((*order, "agreement", "images_per_s")):
        if column.startswith(prefix):
            return (rank, "" if column == "loss" else column)
    return (9, column)


def _brief(value: Any) -> Any:
    if value is None:
        return "default"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _csv(value: Any) -> Any:
    return "" if value is None else value
