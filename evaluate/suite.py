"""``proteus eval suite``: every (model, data set, protocol) entry of a suite file, one table.

A suite file (YAML) names the models and the data sets::

    models:
      proteus-s14: {checkpoint: runs/vit_s14}
      dinov2-s14: {teacher: dinov2_s}
      random-s14: {student: vit_s14, random_init: true}
    datasets:
      cub: {protocols: [knn, linear], train: data/cub/train, val: data/cub/val}
      ade20k: {protocols: [seg, seg_ms], data: data/ADEChallengeData2016}
      nyud: {protocols: [depth], data: data/nyu}

A data set's other keys are options of its protocols (``iterations``, ``batch_size``,
``classes``, ``k``, …, as the ``proteus eval`` command of each names them with dashes);
relative paths are relative to the suite file. Each entry's result is written to
``OUT/results/MODEL/DATASET_PROTOCOL.json`` as it finishes, and a rerun skips every entry
already there, so a suite cut short is resumed by running it again. A model given as a run
folder also keeps each result in ``RUN/eval/DATASET_PROTOCOL.json`` for ``proteus compare``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from proteus.common.runs.folder import RunFolder
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.files import atomic_write_text, read_yaml
from proteus.evaluate.compare import Table
from proteus.evaluate.config import DenseConfig, ProbeConfig, SourceConfig

# protocol → (kind of data, the fixed options it implies, the metric the table shows)
PROTOCOLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "knn": ("folders", {}, "top1"),
    "linear": ("folders", {}, "top1"),
    "dinov2": ("folders", {"protocol": "dinov2"}, "top1"),
    "dinov2-fast": ("folders", {"protocol": "dinov2-fast"}, "top1"),
    "seg": ("dense", {}, "miou"),
    "seg_ms": ("dense", {"blocks": 4, "multiscale": True}, "miou"),
    "depth": ("dense", {}, "rmse"),
    "depth_b4": ("dense", {"blocks": 4}, "rmse"),
}
_SOURCE_KEYS = {f.name for f in fields(SourceConfig)}


@dataclass(frozen=True)
class Entry:
    model: str
    dataset: str
    protocol: str
    run: Callable[[], dict]  # computes the result

    @property
    def name(self) -> str:
        return f"{self.dataset}_{self.protocol}"


@dataclass(frozen=True)
class Suite:
    path: Path
    entries: tuple[Entry, ...]
    checkpoints: dict[str, Path]  # model → its run folder, for models given as one


def load_suite(path: Path, *, device: str = "auto", progress: bool = True) -> Suite:
    data = read_yaml(path)
    if not isinstance(data, dict) or not {"models", "datasets"} <= set(data):
        raise ProteusError(f"{path}: a suite file needs 'models:' and 'datasets:' mappings")
    unknown = set(data) - {"models", "datasets"}
    if unknown:
        raise ProteusError(f"{path}: unknown key {sorted(unknown)[0]!r} (models, datasets)")
    base = Path(path).parent
    models = {
        name: _source(path, base, name, spec) for name, spec in _mapping(path, data, "models")
    }
    entries = []
    for dataset, spec in _mapping(path, data, "datasets"):
        spec = dict(spec or {})
        protocols = spec.pop("protocols", None)
        if not protocols or not isinstance(protocols, list):
            raise ProteusError(f"{path}: datasets.{dataset} needs 'protocols: [...]'")
        for protocol in protocols:
            if protocol not in PROTOCOLS:
                raise ProteusError(
                    f"{path}: datasets.{dataset}: unknown protocol {protocol!r} "
                    f"(one of {', '.join(PROTOCOLS)})"
                )
            for model, source in models.items():
                run = _runner(path, base, dataset, protocol, spec, source, device, progress)
                entries.append(Entry(model, dataset, protocol, run))
    checkpoints = {
        name: s.checkpoint
        for name, s in models.items()
        if s.checkpoint is not None and s.checkpoint.is_dir()
    }
    return Suite(Path(path), tuple(entries), checkpoints)


def run_suite(suite: Suite, out: Path, echo: Callable[[str], None] = print) -> list[dict]:
    """Run every entry not already in ``out``; return one row per entry."""
    rows = []
    for number, entry in enumerate(suite.entries, 1):
        where = out / "results" / entry.model / f"{entry.name}.json"
        if where.is_file():
            result = json.loads(where.read_text())
            echo(f"[{number}/{len(suite.entries)}] {entry.model} {entry.name}: done before")
        else:
            echo(f"[{number}/{len(suite.entries)}] {entry.model} {entry.name} …")
            result = entry.run()
            text = json.dumps(result, indent=2) + "\n"
            where.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(where, text)
            run = suite.checkpoints.get(entry.model)
            if run is not None:
                kept = RunFolder(run).eval_result(entry.name)
                kept.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(kept, text)
        metric = PROTOCOLS[entry.protocol][2]
        rows.append(
            {
                "model": entry.model,
                "dataset": entry.dataset,
                "protocol": entry.protocol,
                "metric": metric,
                "value": result.get(metric),
            }
        )
    return rows


def suite_table(rows: list[dict]) -> Table:
    """One row per model, one column per data set and protocol (its metric in the name)."""
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        table.setdefault(r["model"], {"model": r["model"]})[_column(r)] = r["value"]
    return Table(["model", *dict.fromkeys(_column(r) for r in rows)], list(table.values()))


def _column(row: dict) -> str:
    return f"{row['dataset']}/{row['protocol']} {row['metric']}"


def _mapping(path: Path, data: dict, key: str) -> list[tuple[str, Any]]:
    value = data[key]
    if not isinstance(value, dict) or not value:
        raise ProteusError(f"{path}: '{key}:' must map names to settings, and name at least one")
    return [(str(k), v) for k, v in value.items()]


def _source(path: Path, base: Path, name: str, spec: Any) -> SourceConfig:
    if not isinstance(spec, dict):
        raise ProteusError(f"{path}: models.{name} must be a mapping, e.g. {{teacher: dinov2_s}}")
    unknown = set(spec) - _SOURCE_KEYS
    if unknown:
        raise ProteusError(
            f"{path}: models.{name}: unknown key {sorted(unknown)[0]!r} "
            f"(one of {', '.join(sorted(_SOURCE_KEYS))})"
        )
    spec = dict(spec)
    for key in ("checkpoint", "weights"):
        if spec.get(key) is not None:
            spec[key] = base / spec[key]
    return SourceConfig(**spec)


def _runner(path, base, dataset, protocol, spec, source, device, progress) -> Callable[[], dict]:
    kind, fixed, _ = PROTOCOLS[protocol]
    where = f"{path}: datasets.{dataset}"
    options = {k.replace("-", "_"): v for k, v in spec.items()}
    config: type[ProbeConfig] | type[DenseConfig]
    if kind == "folders":
        config, paths = ProbeConfig, {"train": "train_dir", "val": "val_dir"}
    else:
        config, paths = DenseConfig, {"data": "data"}
    for key, field in paths.items():
        if key not in options:
            raise ProteusError(f"{where}: protocol {protocol} needs '{key}:'")
        options[field] = base / options.pop(key)
    allowed = {f.name for f in fields(config)} - {"source", "device", "progress"}
    options = {k: v for k, v in options.items() if k in allowed or _belongs_elsewhere(k, where)}
    try:
        cfg = config(source=source, device=device, progress=progress, **options, **fixed)
    except TypeError as exc:
        raise ProteusError(f"{where}: {exc}") from exc
    return lambda: _evaluate(protocol, cfg)


def _belongs_elsewhere(key: str, where: str) -> bool:
    """Options of the data set's other protocols are passed over; unknown ones are errors."""
    known = {f.name for f in fields(ProbeConfig)} | {f.name for f in fields(DenseConfig)}
    if key not in known:
        raise ProteusError(f"{where}: unknown option {key!r}")
    return False


def _evaluate(protocol: str, cfg) -> dict:
    if protocol == "knn":
        from proteus.evaluate.runner import run_knn

        return run_knn(cfg)
    if protocol in ("linear", "dinov2", "dinov2-fast"):
        from proteus.evaluate.runner import run_linear

        return run_linear(cfg)
    from proteus.evaluate.dense_probe import run_depth, run_seg

    return run_seg(cfg) if protocol.startswith("seg") else run_depth(cfg)
