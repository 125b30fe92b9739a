"""B11 the hybrid step (--online-fraction p) against the cached step and the online step, in
one run of the benchmark: median images per second of the same student on the same images,
targets from the cache, from the cache and the teacher (p = 0.1, 0.25, 0.5), or from the
teacher alone (online training).

A teacher scores only the fresh share, so a hybrid step costs about the cached step plus p
times the teacher's forward; with a teacher many times the student's size the cached step is
the fast one. EfficientNet-Lite0 here is smaller than a foundation model: the ratios are a
floor on what a large teacher gains.

    python benchmarks/b11_hybrid_step.py --out /tmp/b11 [--steps 12 --rounds 3]
"""

from __future__ import annotations

import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import extract_quietly, finished, quiet_train, table, train_parser
from quality_data import write_dataset

STUDENT, SIZE = "vit_ti16", 64


def main() -> None:
    args = train_parser(__doc__, steps=12, rounds=3).parse_args()

    from proteus.evaluate.compare import summarize_run
    from proteus.train.runner import run_train

    train_dir, _ = write_dataset("digits", args.out / "data" / "digits", SIZE)
    cache = extract_quietly(args.teacher, train_dir, args.out / "cache", SIZE, views=2)
    variants = [("targets from the cache (baseline)", {"cache": cache})]
    for p in (0.1, 0.25, 0.5):
        variants.append(
            (f"hybrid p = {p}", {"cache": cache, "teacher": args.teacher, "online_fraction": p})
        )
    online = {"cache": None, "teacher": args.teacher, "data": train_dir, "image_size": SIZE}
    variants.append(("teacher in the loop (online)", online))
    # Rounds in alternating order (ABC…CBA…): a shared machine's load drifts, and each
    # variant then meets the same drift on average; the median round is reported.
    speeds: dict[str, list[float]] = {name: [] for name, _ in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for name, source in order:
            run = args.out / "runs" / f"{round_}-{variants.index((name, source))}"
            if not finished(run):  # else: a round of an earlier, interrupted run
                shutil.rmtree(run, ignore_errors=True)
                run_train(
                    quiet_train(
                        student=STUDENT,
                        out=run,
                        max_steps=args.steps,
                        batch_size=args.batch_size,
                        eval_every=0,
                        **source,
                    )
                )
            speeds[name].append(summarize_run(run)[0]["images_per_s"])
    base = statistics.median(speeds[variants[0][0]])
    rows = [
        {
            "training": name,
            "images/s": statistics.median(v),
            "vs_cached": statistics.median(v) / base,
        }
        for name, v in speeds.items()
    ]
    print(
        f"\nB11  {STUDENT} at {SIZE} px, teacher {args.teacher}, batch {args.batch_size}, "
        f"{args.steps} steps a variant, median step of the median of {args.rounds} rounds"
    )
    print(table(rows, ["training", "images/s", "vs_cached"]))


if __name__ == "__main__":
    main()
