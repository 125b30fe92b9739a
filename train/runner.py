"""``run_train``: distil a student from a sealed cache, with no teacher in memory.

Every step is a pure function of (model state, optimizer state, step): views, masks and the
drop-path RNG are all derived from the seed and the step, so a resumed run repeats an
uninterrupted run's losses exactly on CPU.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from proteus.common.cache.stats import TargetStats
from proteus.common.models.parts import LOSS_PARTS, Hint
from proteus.common.models.students import build_student, get_student_spec, student_style
from proteus.common.runs.checkpoint import Checkpoint
from proteus.common.runs.folder import RunFolder
from proteus.common.runs.logs import RunLog
from proteus.common.runs.records import RunRecord, SourceIdentity, TeacherRecord
from proteus.common.runs.resume import check_resume
from proteus.common.runtime.distributed import (
    DistInfo,
    barrier,
    close_distributed,
    init_distributed,
    resolve_device,
)
from proteus.common.runtime.errors import Interrupted, ProteusError
from proteus.common.runtime.faults import failpoint
from proteus.common.runtime.progress import notice, progress_bar
from proteus.common.runtime.version import __version__
from proteus.common.views.renderer import RenderConfig, Renderer
from proteus.common.views.replays import MAX_REPLAYS, fresh_needed, replays, views_needed
from proteus.train.config import TrainConfig
from proteus.train.distiller import Distiller, param_groups
from proteus.train.ema import EMA
from proteus.train.gauge import Gauge, default_every
from proteus.train.loader import Batches, TrainBatch
from proteus.train.objective import Objective, resolve_lambdas
from proteus.train.sampler import ViewSampler
from proteus.train.schedule import CosineSchedule, EpochCosineSchedule, scaled_lr
from proteus.train.sources import Rows, open_sources, resolve_hints
from proteus.train.subset import Subset, select_images
from proteus.train.targets import StudentTargets


@dataclass
class TrainResult:
    run: Path
    steps: int  # optimizer steps completed in total
    last: dict[str, float]  # the final step's log record


def run_train(cfg: TrainConfig) -> TrainResult:
    device = resolve_device(cfg.device)
    info = init_distributed(device)
    trainer = None
    try:
        trainer = _Trainer(cfg, device, info)
        return trainer.run()
    finally:
        if trainer is not None:
            for source in trainer.sources:
                source.close()  # a remote cache's background fetches: cancelled, not awaited
        close_distributed(info)


class _Trainer:
    def __init__(self, cfg: TrainConfig, device: str, info: DistInfo):
        # The options as given (config.json's "config", what `proteus sweep` compares) and
        # with the recipe's values filled in (what this run uses).
        self.given, self.cfg, self.info = cfg, cfg.resolved(), info
        self.recipe = cfg.recipe_of()
        self.values = cfg.recipe_values()
        cfg = self.cfg
        self.device = torch.device(f"cuda:{info.local_rank}" if device == "cuda" else "cpu")
        cfg.check_source()
        self.sources, self.views_sha256 = open_sources(
            cfg, self.device, progress=cfg.progress and info.is_main
        )
        first = self.sources[0].info  # whose views are rendered, whose mean/std feed the student
        torch.manual_seed(cfg.seed)  # initialisation: the same on every rank
        self.student_style = student_style(
            first.family, self.recipe.reference_students, get_student_spec(cfg.student).kind
        )
        student = build_student(
            cfg.student,
            first.image_size,
            drop_path=self.values.drop_path,
            style=self.student_style,
            grid=first.grid,
        )
        self.student_grid = student.grid
        hints = resolve_hints(cfg.hints, student.depth, self.sources)
        self.objectives = [self._objective(i, hints) for i in range(len(self.sources))]
        self.standardize, self.target_stats = self._target_stats()
        self.rows = self._rows()
        # What this run changed from what was asked, and why (and what in the plan works
        # against it): printed at start, recorded.
        self.adjustments: list[str] = []
        subset = Subset(cfg.subset_classes, cfg.subset_per_class, cfg.subset_fraction)
        self.subset_info: dict = {}
        if subset.active:
            chosen, self.subset_info = select_images(self.rows.labels, subset, cfg.seed)
            self.rows = self.rows.take(chosen)
        self.sampler = ViewSampler(
            self.rows.view_ids,
            cfg.seed,
            cfg.batch_size,
            info.world,
            cfg.mask_probability,
            cfg.mask_ratio,
            student.grid[0] * student.grid[1],
            repeats=self._repeats(),
            fresh_fraction=cfg.online_fraction or 0.0,
        )
        self._check_masking()
        self.total_steps = cfg.max_steps or cfg.epochs * self.sampler.steps_per_epoch
        self._check_replays()
        heads = [
            (t.dim, o, t.hint_dims) for t, o in zip(self._teachers(), self.objectives, strict=True)
        ]
        if cfg.balance_teachers and len(self.sources) < 2:
            raise ProteusError("--balance-teachers weighs several teachers: give several --cache")
        self.model = Distiller(student, heads, balance=cfg.balance_teachers).to(self.device)
        self.parts = ("loss", *self.model.part_names())
        self.ddp: torch.nn.Module = self.model
        if info.active:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[info.local_rank] if self.device.type == "cuda" else None
            )
        global_batch = cfg.batch_size * info.world
        self.peak_lr = scaled_lr(cfg.lr, global_batch, self.recipe.lr_per_512, self.recipe.lr_rule)
        self.schedule = self._schedule()
        groups = param_groups(self.model, self.values.weight_decay, self.recipe.decay_tokens)
        self.optimizer = torch.optim.AdamW(groups, lr=self.peak_lr, betas=(0.9, 0.999))
        self.ema = None
        if self.values.ema_decay > 0:
            self.ema = EMA(self.model.student, self.values.ema_decay, warmup=self.recipe.ema_warmup)
        self.start_step = 0
        self._stop_signal: int | None = None

    # ----------------------------------------------------------------------- set-up
    def _rows(self) -> Rows:
        """The images every source can train on (aligned caches: those no teacher failed)."""
        rows = self.sources[0].rows(self.cfg.views)
        for other in self.sources[1:]:
            rows = rows.common(other.rows(self.cfg.views))
        return rows

    def _repeats(self) -> int:
        """--repeated-aug, unless it is more than the recorded views: the r copies of an image
        in a step must be r different views, so with K < r views it takes each image K times."""
        asked, k = self.values.repeated_aug, self.rows.view_ids.shape[1]
        if k and asked > k:
            self.adjustments.append(
                f"--repeated-aug {asked} needs {asked} different views of an image per step and "
                f"the cache has {k}: each image is taken {k} times per epoch instead (extract "
                f"--views {asked} or more to keep {asked})"
            )
            return k
        return asked

    def _check_replays(self) -> None:
        """A word at start when the planned epochs replay each cached view more often than
        the rule allows (common/views/replays.py), naming both ways to fresh views."""
        k = self.rows.view_ids.shape[1]
        if not k:  # online: every view is fresh
            return
        epochs = self.total_steps / self.sampler.steps_per_epoch
        times = replays(epochs, k, self.cfg.online_fraction or 0.0)
        if times <= MAX_REPLAYS:
            return
        needed, teacher = views_needed(epochs), self.sources[0].info.name
        self.adjustments.append(
            f"{epochs:.4g} epochs replay each of the cache's {k} views about {times:.3g} "
            f"times, past the {MAX_REPLAYS} at which cached students were measured to match "
            "online ones (docs/QUALITY.md 'Long schedules'; at 30 they fell behind): grow "
            f"the cache to {needed} views (proteus extract --views {needed} with its other "
            "options; a run resumes on it with --allow-grown-cache), or give fresh views with "
            f"--teacher {teacher} --online-fraction {fresh_needed(epochs, k):g}"
        )

    def _schedule(self) -> CosineSchedule | EpochCosineSchedule:
        values, per_epoch = self.values, self.sampler.steps_per_epoch
        warmup_epochs = self._warmup_epochs(self.total_steps / per_epoch)
        if self.recipe.schedule == "epoch":
            if warmup_epochs > 0 and self.total_steps <= 2 * per_epoch:
                # timm's scheduler as main.py steps it: epochs 0 and 1 both get lr(0).
                self.adjustments.append(
                    f"this run is {self.total_steps / per_epoch:.3g} epochs and the recipe sets "
                    "the lr once per epoch from the second on (as the reference's main.py), so "
                    f"all of it trains at the warm-up start lr {values.warmup_lr:g}; train 3 "
                    "epochs or more, or use --recipe legacy (a per-step schedule)"
                )
            return EpochCosineSchedule(
                self.peak_lr,
                math.ceil(self.total_steps / per_epoch),
                per_epoch,
                warmup_epochs,
                values.warmup_lr,
                values.min_lr,
            )
        warmup = round(warmup_epochs * per_epoch)
        return CosineSchedule(self.peak_lr, self.total_steps, warmup, values.min_lr)

    # A warm-up longer than this share of the run leaves the lr mostly below its peak; the
    # recipe's (5 epochs, made for 300) is then cut to WARMUP_CUT_SHARE of the run.
    WARMUP_MAX_SHARE, WARMUP_CUT_SHARE = 0.5, 0.25

    def _warmup_epochs(self, epochs: float) -> float:
        """The recipe's warm-up, unless it would cover most of a short run (then a quarter
        of it, said and recorded); a warm-up given with --warmup-epochs is kept, with a
        word when it covers most of the run."""
        warmup = self.values.warmup_epochs
        if warmup <= self.WARMUP_MAX_SHARE * epochs:
            return warmup
        share = f"{warmup / epochs:.0%} of this {epochs:.3g}-epoch run"
        if self.given.warmup_epochs is not None:
            self.adjustments.append(
                f"--warmup-epochs {warmup:g} is {share}: the lr stays below its peak for most "
                "of it (kept as given; lower --warmup-epochs to train at the peak)"
            )
            return warmup
        cut = self.WARMUP_CUT_SHARE * epochs
        self.adjustments.append(
            f"the recipe's {warmup:g} warm-up epochs are {share}, so the lr would barely leave "
            f"its warm-up: warming up for {cut:.3g} epochs, a quarter of the run, instead "
            "(--warmup-epochs sets it)"
        )
        return cut

    def _target_stats(self) -> tuple[bool, list[TargetStats | None]]:
        """Whether targets are standardised (--standardize; default: with several caches)
        and, per teacher, the statistics its targets are standardised with."""
        on = self.cfg.standardize
        if on is None:
            on = len(self.sources) > 1
        if not on:
            return False, [None] * len(self.sources)
        return True, [
            s.statistics(o.needed_targets())
            for s, o in zip(self.sources, self.objectives, strict=True)
        ]

    def _objective(self, index: int, hints: tuple[Hint, ...]) -> Objective:
        source, cfg = self.sources[index], self.cfg
        own = tuple(h for h in hints if h.teacher == index)
        token, fea, patch, hint = (cfg.per_teacher(n, index) for n in LOSS_PARTS)
        try:
            lambdas = resolve_lambdas(source.info.family, token, fea, patch, hint, hints=bool(own))
        except ProteusError as exc:
            if len(self.sources) == 1:
                raise
            raise ProteusError(f"{exc} (for --cache {source.name}, teacher {index + 1})") from None
        if own and not lambdas.hint:
            raise ProteusError(
                f"--lambda-hint 0 turns off the hints of --cache {source.name} "
                f"({', '.join(map(str, own))}); drop those --hint options instead"
            )
        objective = Objective(lambdas, own, loss=cfg.loss)
        source.check(objective.needed_targets())
        return objective

    def _check_masking(self) -> None:
        if not any(o.lambdas.patch for o in self.objectives):
            return
        if self.sampler.n_masked == 0 or self.sampler.masked_patches == 0:
            raise ProteusError(
                f"--mask-probability {self.cfg.mask_probability} × --batch-size "
                f"{self.cfg.batch_size} or --mask-ratio {self.cfg.mask_ratio} masks nothing, so "
                "the patch loss has no tokens; raise them or set --lambda-patch 0"
            )

    def _prepare_run_folder(self) -> None:
        run = RunFolder(self.cfg.out)
        if self.cfg.resume:
            if not run.has_checkpoint():
                raise ProteusError(
                    f"--resume: no checkpoint in {run.path}; drop --resume to start a new run there"
                )
            self._restore(Checkpoint.load(run.checkpoint))
        elif run.checkpoint.exists():
            raise ProteusError(
                f"--out {run.path}: already holds a run ({run.CHECKPOINT}); pass --resume to "
                "continue it, or choose a new --out"
            )

    def _run_record(self) -> RunRecord:
        return RunRecord(
            config=self.given.to_json(),
            recipe=self.recipe.to_json(),
            resolved=self.cfg.to_json(),
            student_style=self.student_style,
            lr=self.peak_lr,
            world=self.info.world,
            global_batch=self.cfg.batch_size * self.info.world,
            steps_per_epoch=self.sampler.steps_per_epoch,
            total_steps=self.total_steps,
            warmup_steps=self.schedule.warmup_steps,
            student_grid=self.student_grid,
            standardize=self.standardize,
            subset=self.subset_info,
            images=len(self.sampler.image_views),
            teachers=self._teachers(),
            views_sha256=self.views_sha256,
            proteus_version=__version__,
            repeated_aug=self.sampler.repeats,
            adjustments=list(self.adjustments),
            gauge=self._gauge_record(),
        )

    def _teachers(self) -> list[TeacherRecord]:
        """Per source: the teacher, its source's identity, its λ and hints (config and
        checkpoint)."""
        out = []
        for source, objective in zip(self.sources, self.objectives, strict=True):
            t = source.info
            out.append(
                TeacherRecord(
                    dim=t.dim,
                    lambdas=objective.lambdas,
                    source=SourceIdentity(source.name, t.name, t.weights_sha256, t.digest),
                    name=t.name,
                    family=t.family,
                    grid=t.grid,
                    image_size=t.image_size,
                    mean=tuple(t.mean),
                    std=tuple(t.std),
                    hints=objective.hints,
                    hint_dims={h.key: t.targets[h.target][-1] for h in objective.hints},
                    targets_read=objective.needed_targets(),
                )
            )
        return out

    # ----------------------------------------------------------------- checkpoints
    def _checkpoint(self, next_step: int) -> Checkpoint:
        m = self.sources[0].info
        return Checkpoint(
            step=next_step,
            student_name=self.cfg.student,
            student_style=self.student_style,
            recipe=self.recipe.name,
            eval_weights=self.recipe.eval_weights,
            image_size=m.image_size,
            mean=tuple(m.mean),
            std=tuple(m.std),
            teachers=self._teachers(),
            batch_size=self.cfg.batch_size,
            world=self.info.world,
            student=self.model.student.state_dict(),
            heads=self.model.heads.state_dict(),
            ema=self.ema.model.state_dict() if self.ema else None,
            optimizer=self.optimizer.state_dict(),
            config=self.given.to_json(),
            student_grid=list(self.student_grid),
            target_stats=[s.to_state() if s else None for s in self.target_stats],
        )

    def _restore(self, saved: Checkpoint) -> None:
        grown = [s.info.grown_from for s in self.sources]
        check_resume(saved, self._checkpoint(0), grown, self.cfg.allow_grown_cache)
        self.model.student.load_state_dict(saved.student)
        self.model.heads.load_state_dict(saved.heads)
        if self.ema and saved.ema is not None:
            self.ema.model.load_state_dict(saved.ema)
        if saved.optimizer is not None:
            self.optimizer.load_state_dict(saved.optimizer)
        self.start_step = int(saved.step)

    def _save(self, next_step: int) -> None:
        if self.info.is_main:
            self._checkpoint(next_step).save(Path(self.cfg.out))
        barrier(self.info)

    # ------------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        self._prepare_run_folder()
        render = RenderConfig.from_manifest(
            self.sources[0].info,
            self.device,
            device_id=self.info.local_rank,
            threads=self.cfg.render_threads,
            max_batch=self.cfg.batch_size,
        )
        names = [o.needed_targets() for o in self.objectives]
        self.loader = Batches(
            self.sources, self.rows, self.sampler, Renderer(render), names, self.info.rank
        )
        grids = [s.info.grid for s in self.sources]
        self.targets = StudentTargets(
            self.loader, grids, self.student_grid, self.device, stats=self.target_stats
        )
        self.gauge = self._gauge(render, names)
        if self.info.is_main:
            for line in self.adjustments + (self.gauge.notes if self.gauge else []):
                notice(line)
            RunFolder(self.cfg.out).write_config(self._run_record().to_json())
        log = (
            RunLog(Path(self.cfg.out), self.start_step, self.cfg.tensorboard)
            if self.info.is_main
            else None
        )
        bar = progress_bar(
            total=self.total_steps,
            initial=self.start_step,
            unit="step",
            desc="train",
            disable=not (self.info.is_main and self.cfg.progress),
        )
        last: dict[str, float] = {}
        step = self.start_step
        try:
            with self._signals():
                tick = time.perf_counter()
                for batch in self.loader.iterate(self.start_step, self.total_steps):
                    parts = self._step(batch)
                    now = time.perf_counter()
                    last = self._record(batch.step, parts, now - tick)
                    if self.gauge is not None and self._gauge_due(batch.step):
                        last |= self.gauge.score(self.model, self.cfg.batch_size)
                        # Its own time, logged: the next step's time is the step's alone.
                        scored = time.perf_counter()
                        last["gauge_s"], now = scored - now, scored
                    tick = now
                    if log:
                        log.write(last)
                    bar.update(1)
                    bar.set_postfix(_postfix(last))
                    step = batch.step + 1
                    failpoint("train-step")  # after a step, before its checkpoint
                    if step % self.cfg.checkpoint_every == 0 or step == self.total_steps:
                        self._save(step)
                    if self._stop_signal is not None:
                        if step % self.cfg.checkpoint_every and step != self.total_steps:
                            self._save(step)
                        raise Interrupted(
                            f"stopped by signal {self._stop_signal} after step {step}; the "
                            "checkpoint is saved — rerun with --resume to continue"
                        )
        finally:
            bar.close()
            if log:
                log.close()
        return TrainResult(Path(self.cfg.out), step, last)

    def _gauge(self, render: RenderConfig, names: list[tuple[str, ...]]) -> Gauge | None:
        """The held-out gauge, on the main process (--eval-every 0: none)."""
        if self.cfg.eval_every == 0 or not self.info.is_main:
            return None
        gauge = Gauge(
            self.sources,
            self.rows,
            render,
            self.targets,
            names,
            self.sampler.num_patches,
            self.cfg.mask_ratio,
            self.cfg.seed,
            self.device,
        )
        global_batch = self.cfg.batch_size * self.info.world
        self.eval_every = self.cfg.eval_every or default_every(
            self.sampler.steps_per_epoch, gauge.views, global_batch
        )
        return gauge

    def _gauge_due(self, step: int) -> bool:
        return (step + 1) % self.eval_every == 0 or step + 1 == self.total_steps

    def _gauge_record(self) -> dict[str, Any]:
        if self.gauge is None:
            return {}
        sets = {p.name: len(p.pixels) for p in self.gauge.probes}
        return {"every": self.eval_every, "sets": sets}

    def _step(self, batch: TrainBatch) -> dict[str, float]:
        cfg, step = self.cfg, batch.step
        # Drop path draws from the global RNG: seed it from the step, so resuming needs no
        # RNG state and every step is reproducible on its own.
        torch.manual_seed(_step_seed(cfg.seed, step, self.info.rank))
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = batch.images.to(self.device, non_blocking=True)
        masks = torch.from_numpy(batch.masks).to(self.device)
        targets = self.targets(batch)
        self.ddp.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"):
            parts = self.ddp(images, masks, targets)
        values = self._reduce(parts)
        if not math.isfinite(values["loss"]):
            raise ProteusError(
                f"step {step}: the loss is {values['loss']} ({_describe(values)}); stopping. "
                f"The last good checkpoint in {cfg.out} is kept; lower --lr or set --grad-clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.ema:
            self.ema.update(self.model.student, step)
        return values | {"lr": lr}

    def _reduce(self, parts: dict[str, torch.Tensor]) -> dict[str, float]:
        """Loss parts averaged over ranks: the global batch's loss, the same on every rank."""
        stacked = torch.stack([parts[k].detach().float() for k in self.parts])
        if self.info.active:
            dist.all_reduce(stacked)
            stacked /= self.info.world
        return dict(zip(self.parts, stacked.tolist(), strict=True))

    def _record(self, step: int, values: dict[str, float], seconds: float) -> dict[str, float]:
        global_batch = self.cfg.batch_size * self.info.world
        return {
            "step": step,
            "epoch": self.sampler.epoch_of(step),
            **{k: values[k] for k in self.parts},
            "lr": values["lr"],
            "images_per_s": global_batch / max(seconds, 1e-9),
            "time": time.time(),
        }

    @contextmanager
    def _signals(self):
        """SIGTERM/SIGINT (preemption, Ctrl-C): finish the step, checkpoint, stop cleanly."""

        def handler(signum, frame):
            self._stop_signal = signum

        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        except ValueError:  # not the main thread (e.g. called from a worker): no handlers
            previous = {}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _postfix(record: dict[str, float]) -> dict[str, str]:
    parts = {k.removeprefix("loss_"): f"{v:.4g}" for k, v in record.items() if k.startswith("loss")}
    return parts | {"img/s": f"{record['images_per_s']:.0f}"}


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, 3, step, rank]).generate_state(1)[0])


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "loss")
