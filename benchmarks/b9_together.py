"""B9 several students from one stream: N = 2 and 4 small students trained together
(`proteus train --student … --student …`, each step rendered and read once) against the same
students trained one after another, total wall time of each; and the share of a single
student's step that is the stream's work (rendering the views, reading and decoding their
targets), measured by running the loader alone over the same steps.

Two architectures at two lrs each (what an ablation sweep trains), from a real
EfficientNet-Lite0 cache: the 4-block, 96-wide ViT /16 of the other benchmarks and vit_ti16
on the digits set at 128 px (`--data digits`), or 64-wide ViTs /16 of 2 and 3 blocks on
ImageNet-sized JPEGs (500×375 crops of scikit-image's photos, `--data photos`) at 224 px,
where decoding weighs against a student step as it does against a ViT-S's on a GPU.
Goal on this CPU: N = 2 together ≤ 0.8 × the two apart.

    python benchmarks/b9_together.py --out /tmp/b9 [--data digits|photos --steps 12 --rounds 2]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import bench_vit, extract_quietly, quiet_train, table, train_parser
from quality_data import write_dataset

SIZE = 128


def main() -> None:
    parser = train_parser(__doc__, steps=12, rounds=2)
    parser.add_argument("--data", choices=("digits", "photos"), default="digits")
    args = parser.parse_args()

    import torch

    from proteus.train.config import TrainConfig
    from proteus.train.runner import run_together

    torch.set_num_threads(2)
    size = SIZE if args.data == "digits" else 224
    if args.data == "digits":
        train_dir, _ = write_dataset("digits", args.out / "data" / "digits", size)
    else:
        train_dir = photos(args.out / "data" / "photos")
    cache = extract_quietly(args.teacher, train_dir, args.out / f"cache-{args.data}", size, views=2)
    if args.data == "digits":
        small, other = bench_vit(16), "vit_ti16"
    else:  # students whose step is as short as a GPU makes a ViT-S's, next to decoding
        small, other = tiny_vit(2), tiny_vit(3)
    students = [(small, 1e-3), (other, 1e-3), (small, 3e-4), (other, 3e-4)]
    base = quiet_train(
        cache=cache,
        student=small,
        out=args.out,
        max_steps=args.steps,
        batch_size=args.batch_size,
        eval_every=0,
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
        f"\nB9  {args.steps} steps of batch {args.batch_size} at {size} px from the "
        f"{args.teacher} cache of {args.data}, median of {args.rounds} rounds (wall time of "
        "the whole runs)"
    )
    print(table(rows, ["students", "apart_s", "together_s", "together_vs_apart"]))
    print(
        f"\nthe stream's work (render + read + decode, the loader alone): {stream:.2f} s of a "
        f"single student's {one:.2f} s run ({stream / one:.0%})"
    )


def photos(folder: Path, per_class: int = 48) -> Path:
    """ImageNet-sized JPEGs: seeded 500×375 crops of scikit-image's photos, one class each."""
    import numpy as np
    import skimage.data as data
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        picture = Image.fromarray(getattr(data, name)()).convert("RGB")
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / name / f"{i:03d}.jpg"
            if path.exists():
                continue
            w, h = picture.size
            cw, ch = int(rng.integers(w // 2, w + 1)), int(rng.integers(h // 2, h + 1))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = picture.crop((x, y, x + cw, y + ch)).resize((500, 375))
            crop.save(path, quality=90)
    return folder


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
    grid = cfg_grid(sources[0])
    sampler = ViewSampler(rows.view_ids, 0, cfg.batch_size, 1, 0.5, 0.5, grid, repeats=2)
    render = RenderConfig.from_manifest(
        sources[0].info, "cpu", device_id=0, threads=2, max_batch=cfg.batch_size
    )
    names = [("cls", "patch")]
    loader = Batches(sources, rows, sampler, Renderer(render), names, 0)
    start = time.perf_counter()
    for batch in loader.iterate(0, steps):
        loader.targets(batch, torch.device("cpu"))
    return time.perf_counter() - start


def tiny_vit(depth: int) -> str:
    """A 64-wide ViT /16 of ``depth`` blocks, registered under b9_vit16_d<depth>."""
    from proteus.common.models.students import StudentSpec, register_student

    kwargs = {"embed_dim": 64, "depth": depth, "num_heads": 2}
    spec = StudentSpec(f"b9_vit16_d{depth}", "vit_small_patch16_224", 16, 64, kwargs)
    return register_student(spec).name


def cfg_grid(source) -> int:
    """The token count of a /16 student at the cache's image size (the masks' length)."""
    return (source.info.image_size // 16) ** 2


if __name__ == "__main__":
    main()
