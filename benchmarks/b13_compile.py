"""B13 `--compile`: the same run eager and with torch.compile of the student's step, from the
same cache: the compile cost (the first steps' extra seconds) and the gain (median images/s
of the steps after the first few, from each run's log), in one run of the benchmark.

CPU numbers say what inductor's C++ backend does for a small ViT on two cores; a GPU's
(Triton kernels, bf16) differ and belong in gpu_proof.

    python benchmarks/b13_compile.py --out /tmp/b13 [--steps 40 --batch-size 64]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bench_vit, extract_quietly, quiet_train, table, train_parser
from quality_data import write_dataset

SIZE, WARM = 64, 5  # steps left out of the steady-state speed


def main() -> None:
    args = train_parser(__doc__, steps=40).parse_args()

    from proteus.common.runs.logs import read_log
    from proteus.train.runner import run_train

    train_dir, _ = write_dataset("digits", args.out / "data" / "digits", SIZE)
    cache = extract_quietly(args.teacher, train_dir, args.out / "cache", SIZE, views=2)
    rows = []
    for name, compiled in (("eager (baseline)", False), ("--compile", True)):
        run = args.out / "runs" / ("compiled" if compiled else "eager")
        shutil.rmtree(run, ignore_errors=True)
        started = time.perf_counter()
        run_train(
            quiet_train(
                cache=cache,
                student=bench_vit(16),
                out=run,
                max_steps=args.steps,
                batch_size=args.batch_size,
                eval_every=0,
                compile=compiled,
            )
        )
        wall = time.perf_counter() - started
        log = read_log(run)
        steady = statistics.median(r["images_per_s"] for r in log[WARM:])
        first = sum(args.batch_size / r["images_per_s"] for r in log[:WARM])
        rows.append({"run": name, "wall_s": wall, "first_steps_s": first, "images/s": steady})
    for row in rows:
        row["speed_vs_eager"] = row["images/s"] / rows[0]["images/s"]
    compile_cost = rows[1]["first_steps_s"] - rows[0]["first_steps_s"]
    print(
        f"\nB13  bench_vit16 at {SIZE} px, batch {args.batch_size}, {args.steps} steps; speed: "
        f"median images/s after the first {WARM} steps"
    )
    print(table(rows, ["run", "wall_s", "first_steps_s", "images/s", "speed_vs_eager"]))
    print(f"\ncompile cost: {compile_cost:.1f} s in the first {WARM} steps")


if __name__ == "__main__":
    main()
