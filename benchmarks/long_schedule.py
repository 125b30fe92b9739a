"""Q2: a long schedule, where every recorded view is replayed 30 times or more: the cache at
K = 4, 8, 32, 128 and the K that `extract --epochs` picks against online training, the hybrid
(--online-fraction) on K = 8, and a K = 8 cache grown to 32 half-way through the run.

Every row trains the same student (vit_ti16 at 64 px) from the same seed for the same steps
on the same images (a class-balanced subset of the digits training split, --images), with
the same views (--aug-preset small: the preset for images this small) and no repeated
augmentation (so K = 4 and online differ only in how many views there are). Every cache
records 2 held-out views per image, so the gauge (train --eval-every) scores the student on
views it trained on and on views it never saw, every few epochs. Columns:

- kNN and linear top-1 on the digits test split (features of the whole training split);
  token and patch cosine to the teacher on one unseen view of every test image;
- the gauge's final and best held-out-view loss and the step of the best, and the final
  trained-view loss (online: the first view of each image and never-drawn views);
- bytes per image of the targets the row read, and wall time.

The cache rows read the first K views of one 128-view cache (the same records as a cache of
K views); the hybrid and grown rows use their own K = 8 cache. The grown row trains
the planned schedule on K = 8, is stopped (SIGTERM) half-way, the cache is grown to 32 views
(extract --views 32 on it) and the run resumes with --allow-grown-cache.

Results go to OUT/long.json (a finished row is reused: rows can be run alone with --rows and
an interrupted one resumes), a Markdown table on stdout and OUT/heldout.png.

    python benchmarks/long_schedule.py --out /tmp/long [--images 150 --epochs 240]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bytes_per_image, extract_quietly, finished, quiet_train
from quality_data import write_dataset

TEACHER, STUDENT, SIZE, PRESET = "effnet_lite0", "vit_ti16", 64, "small"
HOLDOUT = 2  # held-out views per image in every cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=150, help="training images (per class: /10)")
    parser.add_argument("--epochs", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=40, help="gauge period in steps")
    parser.add_argument("--rows", default="all", help="comma-separated row names, or all")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the students' seed (init, order, masks; online: also its views); another seed's "
        "rows are kept beside seed 0's as '<row> seed S' (caches are shared)",
    )
    args = parser.parse_args()
    bench = Bench(args)
    rows = bench.run(None if args.rows == "all" else args.rows.split(","))
    print(markdown(rows, args))
    print(f"wrote {bench.plot(rows)}")


class Bench:
    def __init__(self, args):
        self.args, self.out = args, args.out
        self.out.mkdir(parents=True, exist_ok=True)
        # Students train on the subset; kNN and linear probes use the whole training split
        # (features of more labelled images: steadier numbers) and score the test split.
        self.probe_dir, self.test_dir = write_dataset("digits", self.out / "data" / "digits", SIZE)
        self.train_dir = _subset(self.probe_dir, self.out / "data" / "subset", args.images)
        self.results = self.out / "long.json"

    def run(self, only: list[str] | None) -> list[dict]:
        from proteus.common.views.replays import views_needed

        planned = views_needed(self.args.epochs)
        plan = [
            ("online", lambda: self.train_row("online", online=True)),
            *[
                (f"cache K={k}", lambda k=k: self.train_row(f"k{k}", cache="k128", views=k))
                for k in (4, 8, 32, 128)
            ],
            # The K that extract --epochs E picks (common/views/replays.py), float16 at this size.
            (
                f"cache K={planned} (what extract --epochs picks)",
                lambda: self.train_row(f"k{planned}", cache="k128", views=planned),
            ),
            *[
                (f"hybrid p={p} on K=8", lambda p=p: self.train_row(f"hybrid{p}", "k8", p=p))
                for p in (0.1, 0.25)
            ],
            ("cache grown 8→32 half-way", self.grown_row),
        ]
        if self.args.seed:
            plan = [(f"{name} seed {self.args.seed}", fn) for name, fn in plan]
        done = {r["row"]: r for r in _read(self.results)}
        for name, fn in plan:
            if (only and name not in only) or name in done:
                continue
            started = time.perf_counter()
            row = {"row": name, **fn()}
            row.setdefault("wall_s", round(time.perf_counter() - started, 1))
            print(json.dumps(row), flush=True)
            # Read again before writing: another queue of rows may have finished one since.
            done = {r["row"]: r for r in _read(self.results)} | {name: row}
            self.results.write_text(json.dumps(list(done.values()), indent=2) + "\n")
        return [done[name] for name, _ in plan if name in done]

    # ---------------------------------------------------------------- the pieces
    def cache(self, name: str, views: int | None = None) -> Path:
        path = self.out / "caches" / name
        if name == "val":  # one unseen view of every test image: the agreement columns
            data, kwargs = self.test_dir, {"views": 1}
        else:
            data = self.train_dir
            kwargs = {"views": views or int(name.removeprefix("k")), "holdout_views": HOLDOUT}
        return extract_quietly(TEACHER, data, path, SIZE, aug_preset=PRESET, **kwargs)

    def config(self, run: Path, cache: Path | None, **overrides):
        from proteus.common.runs.folder import RunFolder

        online = cache is None
        source = (
            {
                "cache": None,
                "teacher": TEACHER,
                "data": self.train_dir,
                "image_size": SIZE,
                "aug_preset": PRESET,
            }
            if online
            else {"cache": cache}
        )
        return quiet_train(
            student=STUDENT,
            out=run,
            epochs=self.args.epochs,
            batch_size=self.args.batch_size,
            repeated_aug=1,
            eval_every=self.args.eval_every,
            seed=self.args.seed,
            resume=RunFolder(run).has_checkpoint(),
            **(source | overrides),
        )

    def train_row(
        self,
        name: str,
        cache: str | None = None,
        *,
        online: bool = False,
        views: int | None = None,
        p: float | None = None,
    ) -> dict:
        from proteus.train.runner import run_train

        run = self.out / "runs" / self._seeded(name)
        started = time.perf_counter()
        cache_path = None if online else self.cache(cache)
        extract_s = time.perf_counter() - started
        hybrid = {} if p is None else {"teacher": TEACHER, "online_fraction": p}
        train_started = time.perf_counter()
        if not finished(run):
            run_train(self.config(run, cache_path, views=views, **hybrid))
        return self.row(run, cache_path, views, extract_s, time.perf_counter() - train_started)

    def grown_row(self) -> dict:
        """K = 8 for the first half of the planned steps, then the same run on the cache
        grown to 32 views (its own writable copy: growing changes the cache)."""
        from proteus.common.runtime import faults
        from proteus.common.runtime.errors import ProteusError
        from proteus.train.runner import run_train

        name = self._seeded("grown")
        run, path = self.out / "runs" / name, self.out / "caches" / name
        started = time.perf_counter()
        if not path.exists():
            self.cache(name, views=8)
        extract_s = time.perf_counter() - started
        train_started = time.perf_counter()
        if not finished(run):
            cfg = self.config(run, path)
            half = cfg.epochs * _steps_per_epoch(self.args) // 2
            if not cfg.resume:
                os.environ[faults.ENV_VAR] = f"train-step:{half}:term"
                try:
                    run_train(cfg)
                except ProteusError as exc:  # stopped by the signal: checkpoint at half-way
                    print(f"grown row: {exc}", flush=True)
                finally:
                    os.environ.pop(faults.ENV_VAR)
                    faults._hits.clear()
            started = time.perf_counter()
            self.cache(name, views=32)
            extract_s += time.perf_counter() - started
            run_train(self.config(run, path, allow_grown_cache=True))
        return self.row(run, path, None, extract_s, time.perf_counter() - train_started)

    def _seeded(self, name: str) -> str:
        return name if not self.args.seed else f"{name}-s{self.args.seed}"

    def row(self, run: Path, cache: Path | None, views, extract_s: float, train_s: float) -> dict:
        from proteus.evaluate.agreement import run_agreement
        from proteus.evaluate.compare import summarize_run
        from proteus.evaluate.config import ProbeConfig, SourceConfig
        from proteus.evaluate.runner import run_knn, run_linear

        probe = ProbeConfig(
            SourceConfig(checkpoint=run),
            self.probe_dir,
            self.test_dir,
            device="cpu",
            progress=False,
        )
        row = {
            "knn_top1": round(run_knn(probe)["top1"], 4),
            "linear_top1": round(run_linear(probe)["top1"], 4),
        }
        agreement = run_agreement(run, self.cache("val"), progress=False)
        row |= {k: round(v, 4) for k, v in agreement.items() if "cos" in k}
        summary, _ = summarize_run(run)
        for key in ("heldout_views_loss", "heldout_views_best", "heldout_views_best_step"):
            row[key] = summary.get(key)
        row["trained_views_loss"] = summary.get("trained_views_loss")
        row["bytes_per_image"] = bytes_per_image(cache, views)
        row |= {"extract_s": round(extract_s, 1), "train_s": round(train_s, 1)}
        row["run"] = str(run)
        return row

    def plot(self, rows: list[dict]) -> Path:
        """Left: the held-out-view loss against step, one line per row, from a fifth of the
        run on (before that every row is the same steep descent). Right: the same less the
        online row's at each step: every row is scored on the same held-out records, so the
        difference is paired and shows what the log scale of a shared curve hides."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from proteus.common.runs.logs import read_log

        key = "gauge/heldout_views/loss"
        curves = {
            row["row"]: {r["step"]: r[key] for r in read_log(Path(row["run"])) if key in r}
            for row in rows
        }
        start = self.args.epochs * _steps_per_epoch(self.args) // 5
        online = curves.get("online" + (f" seed {self.args.seed}" if self.args.seed else ""))
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        for index, (name, curve) in enumerate(curves.items()):
            steps = [s for s in sorted(curve) if s >= start]
            style = {"color": f"C{index % 10}", "ls": "-" if index < 10 else "--"}
            left.plot(steps, [curve[s] for s in steps], label=name, **style)
            if online is not None:
                shared = [s for s in steps if s in online]
                right.plot(shared, [curve[s] - online[s] for s in shared], label=name, **style)
        left.set_ylabel("loss on held-out views of the training images")
        right.set_ylabel("the same, less the online row's at that step")
        for ax in (left, right):
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        left.legend(fontsize=7)
        fig.suptitle(
            f"{self.args.images} digits, {self.args.epochs} epochs, {STUDENT} at {SIZE} px"
        )
        fig.tight_layout()
        out = self.out / "heldout.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def _subset(train: Path, dest: Path, images: int) -> Path:
    """The first images / 10 files of every class (sorted names), as links."""
    if (dest / ".done").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    classes = sorted(p for p in train.iterdir() if p.is_dir())
    per_class = max(1, images // len(classes))
    for folder in classes:
        (dest / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class]:
            (dest / folder.name / path.name).symlink_to(path.resolve())
    (dest / ".done").touch()
    return dest


def _steps_per_epoch(args) -> int:
    return (args.images // 10 * 10) // args.batch_size


def _read(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def markdown(rows: list[dict], args) -> str:
    cols = [
        "row",
        "knn_top1",
        "linear_top1",
        "token_cosine",
        "patch_cosine",
        "heldout_views_loss",
        "heldout_views_best",
        "heldout_views_best_step",
        "trained_views_loss",
        "bytes_per_image",
        "train_s",
    ]
    lines = [
        f"`python benchmarks/long_schedule.py --images {args.images} --epochs {args.epochs} "
        f"--batch-size {args.batch_size}`",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in rows:
        cells = [row.get(c) for c in cols]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.0f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    main()
