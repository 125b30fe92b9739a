"""GPU proof: what only a GPU shows (DALI's GPU renderer, a bf16 ViT-g teacher, GPU-side
target decoding, nccl), in one command that prints a table and writes it as JSON.

    python benchmarks/gpu_proof.py --json proof.json          # on a GPU machine, < 8 min
    python benchmarks/gpu_proof.py --cpu-rehearsal            # the same steps, toy size, CPU

Sections, each against a baseline measured in the same run:
- renderer: the GPU renderer (nvJPEG, device="gpu") against the CPU one (libjpeg-turbo) on the
  same recorded views: pixel differences in 0-255 levels, and views/s.
- extract: `proteus extract` end to end (render, teacher, encode, write) against the teacher's
  forward alone on in-memory batches (goal ≥ 0.85); a ViT-g/14-shaped teacher, random
  weights, bfloat16, 224 px; model FLOP utilisation against the GPU's peak.
- train: a ViT-S/14 student's step fed from float16, int8 and PCA caches (stored bytes read in
  the prefetch thread, moved, decoded on the GPU) against the same step with the targets
  already decoded in GPU memory (goal ≥ 0.95); images/s and the target bytes/s each needs.
  A PCA cache's patch target is also learnt in coefficient space (train/target_space.py).
- ddp: `torchrun --nproc_per_node N` (N = the GPUs present, nccl) runs `proteus train` for a few
  steps; its losses must equal one process's at the same global batch.
- together: 4 students (the train student, 4 lrs) trained from one stream of the extract
  section's cache against one of them alone: wall time, and the first student's losses
  equal its losses alone.

DALI on a device-tool machine: benchmarks/gpu_proof_dali.sh packs its wheels into parts of
under 60 MB, carried one per run and joined there (docs/PERFORMANCE.md, "GPU proof").

--cpu-rehearsal runs every step at toy size on the CPU (tests/test_gpu_proof.py runs it in CI,
so it cannot rot) and says which checks it skips because they need CUDA. A section whose
inputs are missing (no DALI, one GPU) is skipped with the reason; nothing is faked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from _common import synthetic_cache, table, target_loop_speed, timed

HERE = Path(__file__).resolve().parent
# Dense bf16 tensor-core peaks (TFLOP/s), for the model FLOP utilisation.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "B200": 2250.0}
RENDER_TOLERANCE = 1.0  # mean |GPU - CPU| in 0-255 levels (nvJPEG's IDCT is not libjpeg's)
DDP_RTOL = {"cpu": 1e-4, "cuda": 2e-2}  # float32 on the CPU; bf16 autocast sums differently
SECTIONS = ("extract", "renderer", "train", "ddp", "together")
TOGETHER = 4  # students in the several-students row


@dataclass(frozen=True)
class Size:
    images: int  # synthetic 500×375 JPEGs (ImageNet-sized)
    views: int  # recorded views per image
    teacher: str
    image_size: int
    extract_batch: int
    student: str
    train_batch: int
    train_steps: int
    train_views: int  # views in each synthetic training cache
    pca_k: int
    ddp_steps: int


FULL = Size(1024, 2, "dinov2_g", 224, 128, "vit_s14", 128, 20, 2048, 256, 6)
TOY = Size(16, 2, "proof_toy_g14", 56, 8, "proof_toy_s14", 8, 4, 64, 16, 3)


class Proof:
    def __init__(self, size: Size, root: Path, device: str):
        self.size, self.root, self.device = size, root, device
        self.cuda = device == "cuda"
        self.results: dict[str, dict] = {}

    def section(self, name: str, fn: Callable[[], dict]) -> None:
        started = time.perf_counter()
        try:
            result = fn()
        except Skip as skip:
            result = {"skipped": str(skip)}
        except Exception as exc:  # one failed section must not lose the others' numbers
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
            result["checks"] = [_check(f"{name} ran", False)]
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.results[name] = result
        _print_section(name, result)

    # ------------------------------------------------------------------ the sections
    def extract(self) -> dict:
        s = self.size
        precision = "bfloat16" if self.cuda else "float32"
        alone, flops = self._forward_alone(precision)
        rows = [{"what": "teacher forward alone, in memory (baseline)", "views/s": alone}]
        result = {
            "teacher": f"{s.teacher} (random init, {precision}, {s.image_size} px)",
            "gflop_per_view": flops / 1e9,
            "rows": rows,
        }
        peak = _peak_tflops() if self.cuda else None
        if peak:  # the physical limit, and how near the forward alone comes to it
            result["limit_views_per_s"] = peak * 1e12 / flops
            result["mfu_forward"] = alone * flops / (peak * 1e12)
        if not _has_dali():
            result["skipped_checks"] = [f"proteus extract end to end: {NO_DALI}"]
            return result
        whole = self._extract_whole()
        rows.append({"what": "proteus extract, end to end", "views/s": whole})
        for row in rows:
            row["ratio"] = row["views/s"] / alone
        result["checks"] = [self.goal("extract / forward ≥ 0.85", whole / alone >= 0.85)]
        if peak:
            result["mfu_extract"] = whole * flops / (peak * 1e12)
        return result

    def renderer(self) -> dict:
        from proteus.common.cache.reader import Cache
        from proteus.common.views.renderer import RenderConfig, Renderer

        cache = Cache(self.need_cache())
        m = cache.manifest
        ids = np.arange(min(m.counts["views"], 8 * self.size.extract_batch))
        views = cache.views[ids]
        encoded = [cache.encoded(i) for i in views.image.tolist()]
        batch = self.size.extract_batch

        def build(device: str) -> Renderer:
            threads = min(os.cpu_count() or 2, 16)
            return Renderer(
                RenderConfig.for_policy(
                    m.policy,
                    m.image_size,
                    m.mean,
                    m.std,
                    device=device,
                    threads=threads,
                    max_batch=batch,
                )
            )

        def render_all(renderer: Renderer) -> torch.Tensor:
            parts = [
                renderer.render(
                    encoded[i : i + batch], views[np.arange(i, min(i + batch, len(ids)))]
                )
                for i in range(0, len(ids), batch)
            ]
            return torch.cat([p.float().cpu() for p in parts])

        cpu = build("cpu")
        cpu_rate = len(ids) / timed(lambda: render_all(cpu), repeats=3)
        rows = [{"what": "CPU renderer (baseline)", "views/s": cpu_rate, "ratio": 1.0}]
        result = {"views": len(ids), "policy": _policy_line(m.policy), "rows": rows}
        if not self.cuda:
            result["skipped_checks"] = ["GPU renderer: needs CUDA"]
            return result
        gpu = build("gpu")
        gpu_rate = len(ids) / self.timed(lambda: render_all(gpu), repeats=3)
        rows.append(
            {
                "what": "GPU renderer (nvJPEG, GPU ops)",
                "views/s": gpu_rate,
                "ratio": gpu_rate / cpu_rate,
            }
        )
        # Differences in 0-255 levels: undo the normalisation channel by channel.
        std = torch.tensor(m.std).view(1, 3, 1, 1) * 255
        diff = (render_all(gpu) - render_all(cpu)).abs() * std
        result |= {"max_abs_levels": diff.max().item(), "mean_abs_levels": diff.mean().item()}
        result["checks"] = [
            _check(f"mean |GPU - CPU| ≤ {RENDER_TOLERANCE} level", diff.mean() <= RENDER_TOLERANCE)
        ]
        return result

    def train(self) -> dict:
        from proteus.common.models.teachers import get_teacher_spec

        s = self.size
        spec = get_teacher_spec(s.teacher)
        grid = (s.image_size // spec.patch_size) ** 2
        shapes = {"cls": (spec.embed_dim,), "patch": (grid, spec.embed_dim)}
        folder = self.root / "train-caches"
        caches = {
            "float16": synthetic_cache(folder / "f16", s.train_views, shapes, "float16"),
            "int8": synthetic_cache(folder / "int8", s.train_views, shapes, "int8"),
            f"PCA {s.pca_k}": synthetic_cache(
                folder / "pca", s.train_views, shapes, "float16", pca_k=s.pca_k
            ),
        }
        rows, checks = [], []
        # Each cache's loop in teacher units, then the PCA cache's in coefficient space.
        loops = [(f"{kind} cache", kind, cache, False) for kind, cache in caches.items()]
        pca = caches[f"PCA {s.pca_k}"]
        loops.append((f"PCA {s.pca_k} coefficient space", "coefficient space", pca, True))
        for label, kind, cache, coefficients in loops:
            measured = target_loop_speed(
                [cache],
                s.student,
                s.image_size,
                s.train_steps,
                s.train_batch,
                self.device,
                label,
                baseline="decoded",
                coefficients=coefficients,
            )
            per_view = cache.manifest.counts["target_bytes"] / cache.manifest.counts["views"]
            for row in measured:
                row["images/s"] = row.pop("steps/s") * s.train_batch
                row["target MB/s"] = row["images/s"] * per_view / 1e6
            rows += measured
            checks.append(
                self.goal(f"{kind}: cache / in memory ≥ 0.95", measured[1]["ratio"] >= 0.95)
            )
            self.free()
        return {
            "student": f"{s.student} at {s.image_size} px, batch {s.train_batch}",
            "targets": f"{s.teacher}'s cls + {grid} patch tokens of {spec.embed_dim}",
            "rows": rows,
            "checks": checks,
        }

    def ddp(self) -> dict:
        self.need_cache()
        n = torch.cuda.device_count() if self.cuda else 2
        if n < 2:
            raise Skip(f"{n} GPU present: data parallelism needs at least 2")
        global_batch = self.size.train_batch
        one = self._train_run("one", global_batch, [])
        torchrun = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(n),
        ]
        many = self._train_run(f"ddp{n}", global_batch // n, torchrun)
        close = np.allclose(many, one, rtol=DDP_RTOL[self.device], atol=0)
        worst = float(np.max(np.abs(np.array(many) - one) / np.abs(one)))
        backend = "nccl" if self.cuda else "gloo"
        return {
            "rows": [
                {"what": f"1 process, batch {global_batch}", "losses": _short(one)},
                {
                    "what": f"{n} processes ({backend}), {global_batch // n} each",
                    "losses": _short(many),
                },
            ],
            "max_rel_diff": worst,
            "checks": [_check(f"losses equal (rtol {DDP_RTOL[self.device]})", close)],
        }

    def together(self) -> dict:
        from dataclasses import replace

        from proteus.common.runs.logs import read_log
        from proteus.train.config import TrainConfig
        from proteus.train.runner import run_together

        cache = self.need_cache()
        s = self.size
        folder = self.root / "together"
        shutil.rmtree(folder, ignore_errors=True)
        base = TrainConfig(
            cache=cache,
            student=s.student,
            out=folder / "alone",
            max_steps=s.train_steps,
            batch_size=s.train_batch,
            warmup_epochs=0,
            eval_every=0,
            device=self.device,
            tensorboard=False,
            progress=False,
            checkpoint_every=10**9,
        )
        started = time.perf_counter()
        run_together([base])
        alone = time.perf_counter() - started
        several = [replace(base, lr=1e-4 * (i + 1), out=folder / f"s{i}") for i in range(TOGETHER)]
        several[0] = replace(several[0], lr=base.lr)
        started = time.perf_counter()
        run_together(several)
        together = time.perf_counter() - started
        one = [r["loss"] for r in read_log(base.out)]
        first = [r["loss"] for r in read_log(several[0].out)]
        close = np.allclose(first, one, rtol=DDP_RTOL[self.device], atol=0)
        ratio = together / (TOGETHER * alone)
        return {
            "student": f"{s.student} at {s.image_size} px, batch {s.train_batch}",
            "rows": [
                {"what": "1 student alone (baseline)", "seconds": alone, "ratio": 1.0},
                {
                    "what": f"{TOGETHER} students from one stream",
                    "seconds": together,
                    "ratio": together / alone,
                },
            ],
            "together_vs_apart": ratio,
            "checks": [
                _check(f"first student's losses as alone (rtol {DDP_RTOL[self.device]})", close),
                self.goal(f"{TOGETHER} together < {TOGETHER} apart", ratio < 1),
            ],
        }

    # ------------------------------------------------------------------ helpers
    def _extract_whole(self) -> float:
        """views/s of `proteus extract` into ROOT/cache, timing the shard-filling loop alone
        (render, forward, encode, write): building and hashing a random ViT-g is not
        extraction."""
        from proteus.extract import runner
        from proteus.extract.config import ExtractConfig

        s = self.size
        spans: list[float] = []
        fill = runner._fill_shards

        def timed_fill(*args, **kwargs):
            started = time.perf_counter()
            fill(*args, **kwargs)
            spans.append(time.perf_counter() - started)

        config = ExtractConfig(
            teacher=s.teacher,
            data=_jpegs(self.root / "images", s.images),
            out=self.root / "cache",
            views=s.views,
            image_size=s.image_size,
            batch_size=s.extract_batch,
            pretrained=False,
            device=self.device,
            progress=False,
            render_threads=min(os.cpu_count() or 2, 16),
        )
        runner._fill_shards = timed_fill
        try:
            runner.run_extract(config)
        finally:
            runner._fill_shards = fill
        return s.images * s.views / sum(spans)

    def _forward_alone(self, precision: str) -> tuple[float, int]:
        """The baseline: views/s of the teacher's forward on in-memory batches, and its FLOPs
        per view (the teacher is freed on return, before extraction builds its own)."""
        from proteus.common.models.teachers import build_teacher
        from proteus.extract.encode import forward

        s = self.size
        teacher = build_teacher(s.teacher, image_size=s.image_size, pretrained=False).eval()
        teacher.to(self.device)
        pixels = torch.randn(s.extract_batch, 3, s.image_size, s.image_size, device=self.device)
        per_batch = self.timed(lambda: forward(teacher, pixels, precision))
        flops = _flops(lambda: forward(teacher, pixels[:1], precision))
        return s.extract_batch / per_batch, flops

    def _train_run(self, name: str, batch: int, launcher: list[str]) -> list[float]:
        from proteus.common.runs.logs import read_log

        out = self.root / "runs" / name
        args = [
            "-m",
            "proteus",
            "train",
            "--cache",
            str(self.root / "cache"),
            "--student",
            self.size.student,
            "--out",
            str(out),
            "--max-steps",
            str(self.size.ddp_steps),
            "--batch-size",
            str(batch),
            "--warmup-epochs",
            "0",
            "--device",
            self.device,
            "--no-tensorboard",
        ]
        command = [*launcher, *args] if launcher else [sys.executable, *args]
        done = subprocess.run(command, env=_plugin_env(), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return [r["loss"] for r in read_log(out)]

    def goal(self, what: str, ok) -> dict:
        """A speed goal: judged on a GPU only (at toy size on a CPU the ratios mean nothing)."""
        return {"check": what, "ok": bool(ok) if self.cuda else None}

    def timed(self, fn: Callable[[], object], repeats: int = 5) -> float:
        def synced():
            fn()
            if self.cuda:
                torch.cuda.synchronize()

        return timed(synced, repeats=repeats)

    def need_cache(self) -> Path:
        """The cache the extract section wrote (the renderer and ddp sections replay it)."""
        _need_dali()
        cache = self.root / "cache"
        if not cache.exists():
            raise Skip("needs the cache the extract section writes (run extract first)")
        return cache

    def free(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()


class Skip(Exception):
    """A section whose inputs this machine lacks."""


NO_DALI = "NVIDIA DALI is not installed (pip install nvidia-dali-cuda130)"


def _has_dali() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def _need_dali() -> None:
    if not _has_dali():
        raise Skip(f"{NO_DALI}; this section renders views")


def _check(what: str, ok) -> dict:
    return {"check": what, "ok": bool(ok)}


def _flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _peak_tflops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def _jpegs(folder: Path, count: int) -> Path:
    """ImageNet-sized JPEGs with some structure (smooth noise), made here, never downloaded."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 255, (47, 63, 3), dtype=np.uint8)
        Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(folder / f"{i:05d}.jpg")
    return folder


def _policy_line(policy: dict) -> str:
    layers, erase = policy.get("randaug_layers", 0), policy.get("erase_mode")
    return f"{policy.get('interpolation')} crops, RandAugment {layers} layers, erase {erase}"


def _short(losses: list[float]) -> str:
    return " ".join(f"{v:.4f}" for v in losses)


def _plugin_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["PROTEUS_PLUGINS"] = "gpu_proof_toys"
    env.setdefault("OMP_NUM_THREADS", "1")  # each rank one thread: the same float sums
    return env


def _print_section(name: str, result: dict) -> None:
    print(f"\n== {name} ({result['seconds']} s)")
    if "skipped" in result:
        print(f"   skipped: {result['skipped']}")
        return
    for key, value in result.items():
        if key not in ("rows", "checks", "skipped_checks", "seconds"):
            print(f"   {key}: {value:.3f}" if isinstance(value, float) else f"   {key}: {value}")
    if result.get("rows"):
        columns = list(dict.fromkeys(k for row in result["rows"] for k in row))
        print("\n".join("   " + line for line in table(result["rows"], columns).splitlines()))
    for check in result.get("checks", []):
        verdict = {True: "ok", False: "FAILED", None: "not judged at toy size"}[check["ok"]]
        print(f"   [{verdict}] {check['check']}")
    for what in result.get("skipped_checks", []):
        print(f"   [skipped] {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-rehearsal",
        action="store_true",
        help="every step at toy size on the CPU; CUDA-only checks are skipped",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset, in this order (renderer and ddp use extract's cache)",
    )
    args = parser.parse_args()
    import gpu_proof_toys  # noqa: F401  (registers the toy teacher and student)

    if args.cpu_rehearsal:
        size, device = TOY, "cpu"
    elif torch.cuda.is_available():
        size, device = FULL, "cuda"
    else:
        print("gpu_proof: no CUDA device visible; run with --cpu-rehearsal on a CPU machine")
        return 2
    root = Path(tempfile.mkdtemp(prefix="proteus-gpu-proof-"))
    proof = Proof(size, root, device)
    header = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (rehearsal)",
        "gpus": torch.cuda.device_count() if device == "cuda" else 0,
        "torch": torch.__version__,
        "size": asdict(size),
    }
    print(f"gpu_proof on {header['device']}, torch {header['torch']}")
    sections = args.sections.split(",")
    unknown = [n for n in sections if n not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}; choose from {','.join(SECTIONS)}")
    try:
        for name in sections:
            proof.section(name, getattr(proof, name))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"header": header, "sections": proof.results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
    checks = [c for r in proof.results.values() for c in r.get("checks", [])]
    failed = [c["check"] for c in checks if c["ok"] is False]
    judged = sum(c["ok"] is not None for c in checks)
    print(
        f"\n{judged} check(s) judged, {len(failed)} failed"
        + (f": {'; '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
