"""Q1: what a student is worth, on real labelled images, against random init and the teacher.

One data set per call (``--data digits`` or ``--data skimage``, see quality_data.py); every
row trains the same student for the same steps from the same seed and is evaluated the same
way: kNN and linear top-1 on the held-out test split, and agreement with the teacher (cosine
of token and patch heads) on one unseen view of every test image.

Rows: random init; online (the teacher in the loop on a fresh view of every sample); the
cache at K = 1, 2, 4, 8, 16 (float16; one K=16 cache, smaller K use its first views: the
records are the same); K = 16 as int8 and as PCA; proteus 0.1's defaults (its view policy,
its recipe, K = 4) next to the new defaults (K = 16 here), and today's recipe on 0.1's views;
K = 2 without repeated augmentation; and K = 16 with the view presets for small images
(small, glyphs). Results go to OUT/quality-DATA.json and a Markdown table on stdout
(docs/QUALITY.md). Rows run one at a time with --rows; a finished row's run is reused.

    python benchmarks/quality.py --data digits --out /tmp/q
    python benchmarks/quality.py --data skimage --out /tmp/q
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bytes_per_image, extract_quietly, finished, quiet_train
from quality_data import write_dataset

TEACHER, STUDENT, SIZE = "effnet_lite0", "vit_ti16", 64
# proteus 0.1's default view policy, as --aug settings on top of today's.
LEGACY_AUG = (
    "interpolation=linear",
    "jitter_prob=0.8",
    "grayscale_prob=0.2",
    "randaug_layers=0",
    "erase_mode=const",
    "erase_ratio=0.3,3.3",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "skimage"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="[default: the recipe's rule]")
    parser.add_argument("--rows", default="all", help="comma-separated row names, or all")
    parser.add_argument(
        "--student",
        default=STUDENT,
        help=f"the student of every row [default: {STUDENT}]; another one's runs go to "
        "runs/<row>-<student>, beside the default's, and share the caches",
    )
    args = parser.parse_args()

    out = args.out / args.data
    train_dir, test_dir = write_dataset(args.data, args.out / "data" / args.data, SIZE)
    bench = Bench(out, train_dir, test_dir, args)
    rows = bench.run(None if args.rows == "all" else args.rows.split(","))
    (out / f"quality-{args.data}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows, args))


class Bench:
    def __init__(self, out: Path, train_dir: Path, test_dir: Path, args):
        self.out, self.train_dir, self.test_dir, self.args = out, train_dir, test_dir, args
        out.mkdir(parents=True, exist_ok=True)

    def run(self, only: list[str] | None) -> list[dict]:
        plan = [
            ("teacher", lambda: self.probe_teacher()),
            ("random-init", lambda: self.probe_random()),
            ("online", lambda: self.train_row("online", online=True)),
            *[
                (f"cache K={k}", lambda k=k: self.train_row(f"k{k}", cache="k16", views=k))
                for k in (1, 2, 4, 8, 16)
            ],
            # --repeated-aug 1: no copies of an image in a step (K = 1 gets that anyway: the
            # trainer lowers the recipe's 3 copies to K; at K = 2 it takes 2).
            (
                "cache K=2 r1",
                lambda: self.train_row("k2-r1", cache="k16", views=2, repeated_aug=1),
            ),
            ("cache K=16 int8", lambda: self.train_row("k16-int8", cache="k16-int8")),
            ("cache K=16 PCA", lambda: self.train_row("k16-pca", cache="k16-pca")),
            # PCA-64 stored as rotated int8 and learnt in coefficient space (the default).
            (
                "cache K=16 PCA int8",
                lambda: self.train_row("k16-pca-int8", cache="k16-pca-int8"),
            ),
            (
                "0.1 defaults (K=4)",
                lambda: self.train_row("legacy", cache="legacy-k4", recipe="legacy"),
            ),
            # Separates the two halves of 0.1's defaults: today's recipe on 0.1's views.
            (
                "proteus recipe on 0.1 views (K=4)",
                lambda: self.train_row("recipe-legacy-views", cache="legacy-k4"),
            ),
            # The view presets for small images (--aug-preset): small (crops of 35% or more,
            # no RandAugment, no erasing) and glyphs (that without flips: the demo's views).
            ("cache K=16 small", lambda: self.train_row("k16-small", cache="k16-small")),
            ("cache K=16 glyphs", lambda: self.train_row("k16-glyphs", cache="k16-glyphs")),
        ]
        rows = []
        for name, fn in plan:
            if only and name not in only:
                continue
            started = time.perf_counter()
            row = {"row": name, **fn()}
            row.setdefault("wall_s", round(time.perf_counter() - started, 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows

    # ---------------------------------------------------------------- the pieces
    def cache(self, name: str) -> Path:
        from proteus.common.views.records import AugPolicy, parse_policy

        path = self.out / "caches" / name
        kwargs: dict = {"views": 16}
        if name == "k16-int8":
            kwargs = {"views_from": self.cache("k16"), "dtype": "int8"}
        elif name == "k16-pca":
            kwargs = {"views_from": self.cache("k16"), "pca": 64}
        elif name == "k16-pca-int8":
            kwargs = {"views_from": self.cache("k16"), "pca": 64, "dtype": "int8"}
        elif name == "legacy-k4":
            kwargs = {"views": 4, "policy": parse_policy(list(LEGACY_AUG))}
        elif name in ("k16-small", "k16-glyphs"):
            kwargs = {"views": 16, "aug_preset": name.removeprefix("k16-")}
        elif name == "val":
            kwargs = {"views": 1, "policy": AugPolicy()}
        data = self.test_dir if name == "val" else self.train_dir
        return extract_quietly(TEACHER, data, path, SIZE, **kwargs)

    def train_row(
        self,
        name: str,
        *,
        cache: str | None = None,
        online: bool = False,
        views: int | None = None,
        recipe: str = "proteus",
        repeated_aug: int | None = None,
    ) -> dict:
        from proteus.common.runs.folder import RunFolder
        from proteus.train.runner import run_train

        student = self.args.student
        run = self.out / "runs" / (name if student == STUDENT else f"{name}-{student}")
        started = time.perf_counter()
        cache_path = None if online else self.cache(cache)
        extract_s = time.perf_counter() - started
        config = quiet_train(
            cache=cache_path,
            student=student,
            out=run,
            recipe=recipe,
            epochs=self.args.epochs,
            batch_size=self.args.batch_size,
            lr=self.args.lr,
            views=views,
            repeated_aug=repeated_aug,
            teacher=TEACHER if online else None,
            data=self.train_dir if online else None,
            image_size=SIZE if online else None,
            resume=RunFolder(run).has_checkpoint(),
        )
        train_started = time.perf_counter()
        if not finished(run):
            run_train(config)
        train_s = time.perf_counter() - train_started
        row = self.evaluate(checkpoint=run)
        row |= self.agreement(run)
        row["bytes_per_image"] = bytes_per_image(cache_path, views)
        row |= {"extract_s": round(extract_s, 1), "train_s": round(train_s, 1)}
        return row

    def evaluate(self, **source) -> dict:
        from proteus.evaluate.config import ProbeConfig, SourceConfig
        from proteus.evaluate.runner import run_knn, run_linear

        cfg = ProbeConfig(
            SourceConfig(**source), self.train_dir, self.test_dir, device="cpu", progress=False
        )
        knn, linear = run_knn(cfg), run_linear(cfg)
        return {"knn_top1": round(knn["top1"], 4), "linear_top1": round(linear["top1"], 4)}

    def agreement(self, run: Path) -> dict:
        from proteus.evaluate.agreement import run_agreement

        result = run_agreement(run, self.cache("val"), progress=False)
        return {k: round(v, 4) for k, v in result.items() if "cos" in k}

    def probe_teacher(self) -> dict:
        return self.evaluate(teacher=TEACHER, image_size=SIZE)

    def probe_random(self) -> dict:
        return self.evaluate(student=self.args.student, random_init=True, image_size=SIZE)


def markdown(rows: list[dict], args) -> str:
    cols = [
        "row",
        "knn_top1",
        "linear_top1",
        "token_cosine",
        "patch_cosine",
        "bytes_per_image",
        "extract_s",
        "train_s",
    ]
    lines = [
        f"`python benchmarks/quality.py --data {args.data} --epochs {args.epochs}`",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
