"""B9 several students from one stream: N = 2 and 4 small students trained together
(`proteus train --student … --student …`, each step rendered and read once) against the same
students trained one after another, total wall time of each; and the share of a single
student's step that is the stream's work (rendering the views, reading and decoding their
targets), measured by running the loader alone over the same steps.

The students are the 4-block, 96-wide ViT /16 of the other benchmarks and vit_ti16 (other
architectures and lrs: what an ablation sweep trains), on the real EfficientNet-Lite0 cache
of the digits set at 128 px. Goal on this CPU: N = 2 together ≤ 0.8 × the two apart.

    python benchmarks/b9_together.py --out /tmp/b9 [--steps 12 --rounds 2 --batch-size 64]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bench_vit, extract_quietly, table
from quality_data import write_dataset

SIZE = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--teacher", default="effnet_lite0")
    args = parser.parse_args()

    import torch

    from proteus.train.config import TrainConfig
    from proteus.train.runner import run_together

    torch.set_num_threads(2)
    train_dir, _ = write_dataset("digits", args.out / "data" / "digits", SIZE)
    cache = extract_quietly(args.teacher, train_dir, args.out / "cache", SIZE, views=2)
    small = bench_vit(16)
    students = [(small, 1e-3), ("vit_ti16", 1e-3), (small, 3e-4), ("vit_ti16", 3e-4)]
    base = TrainConfig(
        cache=cache,
        student=small,
        out=args.out,
        max_steps=args.steps,
        batch_size=args.batch_size,
        eval_every=0,
        device="cpu",
        tensorboard=False,
        progress=False,
        render_threads=2,
        checkpoint_every=10**9,  # the last step's checkpoint only, in both ways
    )

    def configs(n: int, where: Path) -> list[TrainConfig]:
        return [
            replace(base, student=s, lr=lr, out=where / f"{i}-{s}")
            for i, (s, lr) in enumerate(students[:n])
        ]

    def wall(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for n in (2, 4) if round_ % 2 == 0 else (4, 2):
            where = args.out / "runs" / str(round_)
            shutil.rmtree(where, ignore_errors=True)
            apart = configs(n, where / f"apart{n}")
            together = configs(n, where / f"together{n}")
            times.setdefault(f"{n} apart", []).append(
                sum(wall(lambda c=c: run_together([c])) for c in apart)
            )
            times.setdefault(f"{n} together", []).append(wall(lambda c=together: run_together(c)))
    stream = stream_seconds(base, args.steps)
    one = statistics.median(times["2 apart"]) / 2  # one student alone, on average
    rows = []
    for n in (2, 4):
        apart, together = (statistics.median(times[f"{n} {k}"]) for k in ("apart", "together"))
        rows.append(
            {
                "students": n,
                "apart_s": apart,
                "together_s": together,
                "together_vs_apart": together / apart,
            }
        )
    print(
        f"\nB9  {args.steps} steps of batch {args.batch_size} at {SIZE} px from the "
        f"{args.teacher} cache, median of {args.rounds} rounds (wall time of the whole runs)"
    )
    print(table(rows, ["students", "apart_s", "together_s", "together_vs_apart"]))
    print(
        f"\nthe stream's work (render + read + decode, the loader alone): {stream:.2f} s of a "
        f"single student's {one:.2f} s run ({stream / one:.0%})"
    )


def stream_seconds(cfg, steps: int) -> float:
    """The loader of a run of ``cfg`` iterated over its steps without a student: what each
    student's run pays again when trained apart."""
    import torch

    from proteus.common.views.renderer import RenderConfig, Renderer
    from proteus.train.loader import Batches
    from proteus.train.sampler import ViewSampler
    from proteus.train.sources import open_sources

    sources, _ = open_sources(cfg, torch.device("cpu"), progress=False)
    rows = sources[0].rows(None)
    sampler = ViewSampler(rows.view_ids, 0, cfg.batch_size, 1, 0.5, 0.5, 64, repeats=2)
    render = RenderConfig.from_manifest(
        sources[0].info, "cpu", device_id=0, threads=2, max_batch=cfg.batch_size
    )
    names = [("cls", "patch")]
    loader = Batches(sources, rows, sampler, Renderer(render), names, 0)
    start = time.perf_counter()
    for batch in loader.iterate(0, steps):
        loader.targets(batch, torch.device("cpu"))
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
