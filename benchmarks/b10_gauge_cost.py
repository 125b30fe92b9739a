"""B10 the held-out gauge's cost: the share of a run's time the gauge takes at its default
period (train --eval-every), against the same run without it. Goal: ≤ 3%.

One real cache (EfficientNet-Lite0 on the digits training split at 64 px, K = 2, one
held-out view per image and 100 held-out images: all three gauge sets) and a vit_ti16
student; the gauged run logs each scoring's seconds (gauge_s in log.jsonl), so its share is
measured within the run; the second run (--eval-every 0) gives the wall-time ratio.

    python benchmarks/b10_gauge_cost.py --out /tmp/b10 [--steps 201]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import extract_quietly, quiet_train, table, train_parser
from quality_data import write_dataset

TEACHER, STUDENT, SIZE = "effnet_lite0", "vit_ti16", 64


def main() -> None:
    # 201 steps at batch 64: three scorings at the default period.
    args = train_parser(__doc__, steps=201, teacher=None).parse_args()

    from proteus.common.runs.logs import read_log
    from proteus.evaluate.compare import summarize_run
    from proteus.train.runner import run_train

    train_dir, _ = write_dataset("digits", args.out / "data" / "digits", SIZE)
    cache = extract_quietly(
        TEACHER, train_dir, args.out / "cache", SIZE, views=2, holdout_views=1, holdout_images=100
    )
    rows = []
    for name, every in (("no gauge (baseline)", 0), ("gauge at its default period", None)):
        run = args.out / "runs" / ("off" if every == 0 else "on")
        shutil.rmtree(run, ignore_errors=True)
        started = time.perf_counter()
        run_train(
            quiet_train(
                cache=cache,
                student=STUDENT,
                out=run,
                max_steps=args.steps,
                batch_size=args.batch_size,
                eval_every=every,
            )
        )
        wall = time.perf_counter() - started
        summary, _ = summarize_run(run)
        config = json.loads((run / "config.json").read_text())
        scorings = sum(1 for r in read_log(run) if "gauge_s" in r)
        rows.append(
            {
                "run": name,
                "wall_s": wall,
                "vs_baseline": wall / rows[0]["wall_s"] if rows else 1.0,
                "every": config.get("gauge", {}).get("every", ""),
                "scorings": scorings,
                "gauge_share": summary.get("gauge_share", 0.0),
            }
        )
    print(
        f"\nB10  {STUDENT} at {SIZE} px from a K=2 {TEACHER} cache, batch {args.batch_size}, "
        f"{args.steps} steps"
    )
    print(table(rows, ["run", "wall_s", "vs_baseline", "every", "scorings", "gauge_share"]))


if __name__ == "__main__":
    main()
