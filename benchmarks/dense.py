"""Q2: dense quality: DINOv2's linear segmentation and depth probes on real textures.

The data (dense_data.py): texture mosaics with labels known by construction, and textures on a
ground plane and a wall seen by a tilted camera with depth known per pixel; train and test
from disjoint halves of each scikit-image plate. Rows: the teacher (EfficientNet-Lite0), the
student distilled with the default recipe on the train images of both sets, the same student
distilled from the same cache with --lambda-patch 0 --lambda-fea 0 (the class token alone),
and the random-init student. Every row gets the same probes (same iterations, batch, seed).

    python benchmarks/dense.py --out /tmp/dense/out [--rows teacher,random-init] [--data D]
    python benchmarks/dense.py --out /tmp/dense/out --spread   # the features' spread per row

Rows run one at a time with --rows (or side by side, in separate calls); the students' runs
and each finished probe (OUT/results/ROW-TASK.json) are reused, so a row cut off is re-run
alone. Results: OUT/dense.json (all rows so far) and a Markdown table on stdout
(docs/QUALITY.md "Dense tasks").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import extract_quietly, finished, quiet_train
from dense_data import write_dense_sets

TEACHER, STUDENT, SIZE, CLASSES = "effnet_lite0", "vit_ti16", 128, 10
ROWS = ("teacher", "distilled", "distilled without patch/fea losses", "random-init")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None, help="[default: OUT/data]")
    parser.add_argument("--rows", default="all", help="comma-separated row names, or all")
    parser.add_argument("--epochs", type=int, default=20, help="the students' distillation")
    parser.add_argument("--iterations", type=int, default=600, help="each probe's")
    parser.add_argument("--tasks", default="seg,depth")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="instead: each row's patch-feature spread on one batch of depth training crops",
    )
    args = parser.parse_args()
    data = write_dense_sets(args.data or args.out / "data", SIZE)
    if args.spread:
        for row in ROWS:
            print(json.dumps({"row": row, **spread(_source(row, data, args), data)}))
        return
    folder = args.out / "results"  # one file per row and task: rows may run side by side
    folder.mkdir(parents=True, exist_ok=True)
    for row in ROWS if args.rows == "all" else args.rows.split(","):
        if row not in ROWS:
            raise SystemExit(f"--rows {row}: one of {', '.join(ROWS)}")
        source = _source(row, data, args)
        for task in args.tasks.split(","):
            path = folder / f"{_slug(row)}-{task}.json"
            if path.is_file():
                continue
            started = time.perf_counter()
            result = _probe(task, source, data, args.iterations)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            path.write_text(json.dumps({"row": row, **result}, indent=2) + "\n")
            print(json.dumps({"row": row, **result}), flush=True)
    results = {
        f"{r['row']}|{r['task']}": r
        for r in (json.loads(p.read_text()) for p in sorted(folder.glob("*.json")))
    }
    (args.out / "dense.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))


def _slug(row: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in row)


def _source(row: str, data: Path, args) -> dict:
    if row == "teacher":
        return {"teacher": TEACHER, "image_size": SIZE}
    if row == "random-init":
        return {"student": STUDENT, "random_init": True, "image_size": SIZE}
    name = "default" if row == "distilled" else "no-patch-fea"
    run = args.out / "runs" / name
    if not finished(run):
        _distil(run, data, args, ablation=row != "distilled")
    return {"checkpoint": run}


def _distil(run: Path, data: Path, args, ablation: bool) -> None:
    from proteus.common.runs.folder import RunFolder
    from proteus.train.runner import run_train

    cache = extract_quietly(
        TEACHER, data / "distil", args.out / "caches" / "distil", SIZE, epochs=args.epochs
    )
    zero = {"lambda_patch": (0.0,), "lambda_fea": (0.0,)} if ablation else {}
    config = quiet_train(
        cache=cache,
        student=STUDENT,
        out=run,
        epochs=args.epochs,
        batch_size=64,
        resume=RunFolder(run).has_checkpoint(),
        render_threads=1,
        **zero,
    )
    run_train(config)


def _probe(task: str, source: dict, data: Path, iterations: int) -> dict:
    from proteus.evaluate.config import DenseConfig, SourceConfig
    from proteus.evaluate.dense_probe import run_depth, run_seg

    cfg = DenseConfig(
        SourceConfig(**source),
        data / task,
        classes=CLASSES if task == "seg" else None,
        iterations=iterations,
        device="cpu",
        progress=False,
    )
    result = run_seg(cfg) if task == "seg" else run_depth(cfg)
    return {k: v for k, v in result.items() if k != "per_class_iou"}


def spread(source: dict, data: Path) -> dict:
    """How much a model's last-block patch features vary over 16 depth training crops: the
    per-channel standard deviation over images and positions (mean over channels), and the
    mean absolute value. A BatchNorm-free head (DINOv2's depth head) sees exactly these."""
    import torch

    from proteus.evaluate.dense_probe import _DepthSamples
    from proteus.evaluate.dense_sets import find_depth
    from proteus.evaluate.models import load_source

    split = find_depth(data / "depth", "train", depth_scale=None, min_depth=1e-3, max_depth=10)
    images, _ = next(_DepthSamples(split, SIZE).batches(16, 1, 0))
    model = load_source(**source)
    mean = torch.tensor(model.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(model.std).view(1, 3, 1, 1) * 255
    pixels = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - mean) / std
    ((patch, _),) = model.dense(pixels)
    return {
        "channel_std": round(float(patch.std((0, 2, 3)).mean()), 3),
        "mean_abs": round(float(patch.abs().mean()), 3),
    }


def markdown(results: dict) -> str:
    lines = [
        "| row | mIoU | pixel acc. | RMSE (m) | AbsRel | δ1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        seg, depth = results.get(f"{row}|seg", {}), results.get(f"{row}|depth", {})
        if not seg and not depth:
            continue
        cells = [
            seg.get("miou"),
            seg.get("pixel_accuracy"),
            depth.get("rmse"),
            depth.get("abs_rel"),
            depth.get("delta1"),
        ]
        text = ["" if c is None else f"{c:.3f}" for c in cells]
        lines.append(f"| {row} | " + " | ".join(text) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
