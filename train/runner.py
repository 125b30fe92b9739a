"""``run_train``: distil a student from a sealed cache, with no teacher in memory;
``run_together``: several students from one stream of views and targets.

Every step is a pure function of (model state, optimizer state, step): views, masks and the
drop-path RNG are all derived from the seed and the step, so a resumed run repeats an
uninterrupted run's losses exactly on CPU.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
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
from proteus.train import target_space
from proteus.train.config import TrainConfig
from proteus.train.distiller import Distiller, param_groups
from proteus.train.ema import EMA
from proteus.train.feed import DeviceFeed
from proteus.train.gauge import Gauge, default_every
from proteus.train.loader import Batches, TrainBatch
from proteus.train.objective import Objective, resolve_lambdas
from proteus.train.sampler import ViewSampler
from proteus.train.schedule import CosineSchedule, EpochCosineSchedule, scaled_lr
from proteus.train.sources import Rows, open_sources, resolve_hints
from proteus.train.subset import Subset, select_images
from proteus.train.targets import StudentTargets
from proteus.train.together import check_together


@dataclass
class TrainResult:
    run: Path
    steps: int  # optimizer steps completed in total
    last: dict[str, float]  # the final step's log record
    # With several students: why this one stopped early (its loss diverged); None otherwise.
    error: str | None = None


def run_train(cfg: TrainConfig) -> TrainResult:
    return run_together([cfg])[0]


def run_together(cfgs: Sequence[TrainConfig]) -> list[TrainResult]:
    """Train several students from one stream (train/together.py): every step's views are
    rendered and their targets read once, and each student steps on them in turn, into its
    own run folder. One config is an ordinary run."""
    cfgs = list(cfgs)
    check_together(cfgs)
    device = resolve_device(cfgs[0].device)
    info = init_distributed(device)
    trainer = None
    try:
        trainer = _Trainer(cfgs, device, info)
        return trainer.run()
    finally:
        if trainer is not None:
            for source in trainer.stream.sources:
                source.close()  # a remote cache's background fetches: cancelled, not awaited
        close_distributed(info)


class _Diverged(ProteusError):
    """A student's loss is not finite: it stops, its last good checkpoint is kept."""


class _Stream:
    """What the students of a run share: the sources, the images they train on, the sampler
    and the step count (all set by the first config; check_together saw that the others
    agree)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, info: DistInfo):
        self.cfg, self.info, self.device = cfg.resolved(), info, device
        self.values = cfg.recipe_values()
        cfg = self.cfg
        cfg.check_source()
        self.sources, self.views_sha256 = open_sources(
            cfg, device, progress=cfg.progress and info.is_main
        )
        self.rows = self._rows()
        # What this run changed from what was asked, and why: printed at start, recorded.
        self.adjustments: list[str] = []
        subset = Subset(cfg.subset_classes, cfg.subset_per_class, cfg.subset_fraction)
        self.subset_info: dict = {}
        if subset.active:
            chosen, self.subset_info = select_images(self.rows.labels, subset, cfg.seed)
            self.rows = self.rows.take(chosen)

    @property
    def first(self):
        """The first source's teacher: whose views are rendered, whose mean/std feed the
        students."""
        return self.sources[0].info

    def _rows(self) -> Rows:
        """The images every source can train on (aligned caches: those no teacher failed)."""
        rows = self.sources[0].rows(self.cfg.views)
        for other in self.sources[1:]:
            rows = rows.common(other.rows(self.cfg.views))
        return rows

    def plan(self, num_patches: int) -> None:
        """The sampler and the step count; ``num_patches``: the first student's (the
        plan's masks; others get theirs from ``masks``)."""
        cfg = self.cfg
        self.sampler = ViewSampler(
            self.rows.view_ids,
            cfg.seed,
            cfg.batch_size,
            self.info.world,
            cfg.mask_probability,
            cfg.mask_ratio,
            num_patches,
            repeats=self._repeats(),
            fresh_fraction=cfg.online_fraction or 0.0,
        )
        self.total_steps = cfg.max_steps or cfg.epochs * self.sampler.steps_per_epoch
        self._check_replays()

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
        needed, teacher = views_needed(epochs), self.first.name
        self.adjustments.append(
            f"{epochs:.4g} epochs replay each of the cache's {k} views about {times:.3g} "
            f"times, past the {MAX_REPLAYS} at which cached students were measured to match "
            "online ones (docs/QUALITY.md 'Long schedules'; at 30 they fell behind): grow "
            f"the cache to {needed} views (proteus extract --views {needed} with its other "
            "options; a run resumes on it with --allow-grown-cache), or give fresh views with "
            f"--teacher {teacher} --online-fraction {fresh_needed(epochs, k):g}"
        )


class _Learner:
    """One student of the stream: its model, heads, objectives, optimizer, schedule, EMA,
    gauge, log and checkpoints, in its own run folder."""

    def __init__(self, cfg: TrainConfig, stream: _Stream, several: bool):
        # The options as given (config.json's "config", what `proteus sweep` compares) and
        # with the recipe's values filled in (what this run uses).
        self.given, self.cfg, self.info = cfg, cfg.resolved(), stream.info
        self.stream, self.device = stream, stream.device
        self.recipe = cfg.recipe_of()
        self.values = cfg.recipe_values()
        # Messages name the student when several train together.
        self.label = f"student {cfg.student} ({cfg.out}): " if several else ""
        cfg = self.cfg
        sources, first = stream.sources, stream.first
        torch.manual_seed(cfg.seed)  # initialisation: the same on every rank, and alone
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
        self.num_patches = student.grid[0] * student.grid[1]
        hints = resolve_hints(cfg.hints, student.depth, sources)
        self.objectives = [self._objective(i, hints) for i in range(len(sources))]
        self.names = [o.needed_targets() for o in self.objectives]
        self.standardize, self.target_stats = self._target_stats()
        self.adjustments: list[str] = []
        self.spaces = self._spaces()
        dense_dims, heads = [], []
        for t, o, space in zip(self._teachers(), self.objectives, self.spaces, strict=True):
            dense, hint_widths = target_space.head_widths(space, t.dim, o.hints, t.hint_dims)
            dense_dims.append(dense if space else None)
            heads.append((t.dim, o, hint_widths))
        if cfg.balance_teachers and len(sources) < 2:
            raise ProteusError("--balance-teachers weighs several teachers: give several --cache")
        self.model = Distiller(
            student, heads, balance=cfg.balance_teachers, dense_dims=dense_dims
        ).to(self.device)
        self.model.coefficient_bases = [
            {n: c.basis.to(self.device) for n, c in space.items()} for space in self.spaces
        ]
        self.parts = ("loss", *self.model.part_names())
        self.ddp: torch.nn.Module = self.model
        if self.info.active:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.info.local_rank] if self.device.type == "cuda" else None,
            )
        # --compile: the forward (both passes and the losses) compiled; eager on failure.
        self.compiled: Any = torch.compile(self.ddp) if cfg.compile else None
        global_batch = cfg.batch_size * self.info.world
        self.peak_lr = scaled_lr(cfg.lr, global_batch, self.recipe.lr_per_512, self.recipe.lr_rule)
        groups = param_groups(self.model, self.values.weight_decay, self.recipe.decay_tokens)
        self.optimizer = torch.optim.AdamW(groups, lr=self.peak_lr, betas=(0.9, 0.999))
        self.ema = None
        if self.values.ema_decay > 0:
            self.ema = EMA(self.model.student, self.values.ema_decay, warmup=self.recipe.ema_warmup)
        self.start_step = 0
        self.stopped: str | None = None  # why it stopped early (a diverged loss)
        self.last: dict[str, float] = {}
        self.steps_done = 0

    def plan(self) -> None:
        """After the stream's plan: the masking check and the lr schedule."""
        self.sampler, self.total_steps = self.stream.sampler, self.stream.total_steps
        self._check_masking()
        self.schedule = self._schedule()

    # ----------------------------------------------------------------------- set-up
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
        sources = self.stream.sources
        on = self.cfg.standardize
        if on is None:
            on = len(sources) > 1
        if not on:
            return False, [None] * len(sources)
        return True, [
            s.statistics(o.needed_targets()) for s, o in zip(sources, self.objectives, strict=True)
        ]

    def _spaces(self) -> list[dict[str, target_space.Coefficients]]:
        """Per teacher, the targets learnt as PCA coefficients (--target-space); each
        objective is told their teacher widths."""
        spaces = []
        for index, (source, objective) in enumerate(
            zip(self.stream.sources, self.objectives, strict=True)
        ):
            space, note = target_space.choose(
                self.cfg.target_space,
                source,
                objective.needed_targets(),
                self.cfg.loss,
                self.standardize,
            )
            if note and self.cfg.target_space == "auto":
                self.adjustments.append(note)
            widths = tuple((name, c.dim) for name, c in space.items())
            self.objectives[index] = replace(objective, coefficients=widths)
            spaces.append(space)
        return spaces

    def _objective(self, index: int, hints: tuple[Hint, ...]) -> Objective:
        sources, cfg = self.stream.sources, self.cfg
        source = sources[index]
        own = tuple(h for h in hints if h.teacher == index)
        token, fea, patch, hint = (cfg.per_teacher(n, index) for n in LOSS_PARTS)
        try:
            lambdas = resolve_lambdas(source.info.family, token, fea, patch, hint, hints=bool(own))
        except ProteusError as exc:
            if len(sources) == 1:
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
        if self.sampler.n_masked == 0 or round(self.num_patches * self.cfg.mask_ratio) == 0:
            raise ProteusError(
                f"{self.label}--mask-probability {self.cfg.mask_probability} × --batch-size "
                f"{self.cfg.batch_size} or --mask-ratio {self.cfg.mask_ratio} masks nothing, so "
                "the patch loss has no tokens; raise them or set --lambda-patch 0"
            )

    def prepare_run_folder(self) -> None:
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
        self.steps_done = self.start_step

    def run_record(self) -> RunRecord:
        stream = self.stream
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
            subset=stream.subset_info,
            images=len(self.sampler.image_views),
            teachers=self._teachers(),
            views_sha256=stream.views_sha256,
            proteus_version=__version__,
            repeated_aug=self.sampler.repeats,
            adjustments=stream.adjustments + self.adjustments,
            gauge=self._gauge_record(),
            target_space=[{n: c.record() for n, c in space.items()} for space in self.spaces],
        )

    def _teachers(self) -> list[TeacherRecord]:
        """Per source: the teacher, its source's identity, its λ and hints (config and
        checkpoint)."""
        out = []
        for source, objective in zip(self.stream.sources, self.objectives, strict=True):
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
        m = self.stream.first
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
            # Heads in teacher units (what eval, export and viz read), and as trained.
            heads=self._heads_in_teacher_units(),
            coefficient_heads=self.model.heads.state_dict() if any(self.spaces) else None,
            ema=self.ema.model.state_dict() if self.ema else None,
            optimizer=self.optimizer.state_dict(),
            config=self.given.to_json(),
            student_grid=list(self.student_grid),
            target_stats=[s.to_state() if s else None for s in self.target_stats],
        )

    def _heads_in_teacher_units(self) -> dict[str, torch.Tensor]:
        state = self.model.heads.state_dict()
        if not any(self.spaces):
            return state
        hints = [o.hints for o in self.objectives]
        return target_space.fold_heads(state, self.spaces, hints)

    def _restore(self, saved: Checkpoint) -> None:
        grown = [s.info.grown_from for s in self.stream.sources]
        check_resume(saved, self._checkpoint(0), grown, self.cfg.allow_grown_cache)
        self.model.student.load_state_dict(saved.student)
        coefficient_heads = any(self.spaces)
        if coefficient_heads and saved.coefficient_heads is None:
            raise ProteusError(
                f"--resume: {self.cfg.out} was trained in teacher units; resume it with "
                "--target-space teacher"
            )
        heads = saved.coefficient_heads if coefficient_heads else saved.heads
        assert heads is not None  # checked just above
        self.model.heads.load_state_dict(heads)
        if self.ema and saved.ema is not None:
            self.ema.model.load_state_dict(saved.ema)
        if saved.optimizer is not None:
            self.optimizer.load_state_dict(saved.optimizer)
        self.start_step = int(saved.step)

    def save(self, next_step: int) -> None:
        if self.info.is_main:
            self._checkpoint(next_step).save(Path(self.cfg.out))
        barrier(self.info)

    # ------------------------------------------------------------------- the loop
    @property
    def active(self) -> bool:
        return self.stopped is None and self.steps_done < self.total_steps

    def open(self, render: RenderConfig, loader: Batches) -> None:
        """Its targets' path, gauge, config.json and log, before the first step."""
        sources = self.stream.sources
        # Targets the stream gives as coefficients that this student learns in teacher units.
        expand = [
            {
                n: c.fitted.to(self.device)
                for n, c in s.pca_codecs(tuple(s.coefficients - set(space))).items()
            }
            for s, space in zip(sources, self.spaces, strict=True)
        ]
        self.targets = StudentTargets(
            [s.info.grid for s in sources],
            self.student_grid,
            self.device,
            stats=self.target_stats,
            names=self.names,
            expand=expand,
        )
        self.gauge = self._gauge(render)
        self.log = None
        if self.info.is_main:
            for line in self.adjustments + (self.gauge.notes if self.gauge else []):
                notice(self.label + line)
            RunFolder(self.cfg.out).write_config(self.run_record().to_json())
            self.log = RunLog(Path(self.cfg.out), self.start_step, self.cfg.tensorboard)

    def close(self) -> None:
        if self.log:
            self.log.close()

    def train_step(
        self,
        batch: TrainBatch,
        images: torch.Tensor,
        decoded: list[dict[str, torch.Tensor]],
        seconds: float,
    ) -> None:
        """One optimizer step on the stream's batch (``seconds``: the time since the last
        step's end, shared out to its record), its gauge, log and checkpoint."""
        start = time.perf_counter()
        parts = self._step(batch, images, decoded)
        now = time.perf_counter()
        last = self._record(batch.step, parts, seconds + now - start)
        if self.gauge is not None and self._gauge_due(batch.step):
            last |= self.gauge.score(self.model, self.cfg.batch_size)
            last["gauge_s"] = time.perf_counter() - now
        if self.log:
            self.log.write(last)
        self.last, self.steps_done = last, batch.step + 1
        step = self.steps_done
        failpoint("train-step")  # after a step, before its checkpoint
        if step % self.cfg.checkpoint_every == 0 or step == self.total_steps:
            self.save(step)

    def save_on_stop(self) -> None:
        """A stop signal arrived: checkpoint the steps since the last save."""
        step = self.steps_done
        if step % self.cfg.checkpoint_every and step != self.total_steps:
            self.save(step)

    def _gauge(self, render: RenderConfig) -> Gauge | None:
        """The held-out gauge, on the main process (--eval-every 0: none)."""
        if self.cfg.eval_every == 0 or not self.info.is_main:
            return None
        stream = self.stream
        gauge = Gauge(
            stream.sources,
            stream.rows,
            render,
            self.targets,
            self.names,
            self.num_patches,
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

    def _step(
        self, batch: TrainBatch, images: torch.Tensor, decoded: list[dict[str, torch.Tensor]]
    ) -> dict[str, float]:
        cfg, step = self.cfg, batch.step
        # Drop path draws from the global RNG: seed it from the step, so resuming needs no
        # RNG state and every step is reproducible on its own (and alone or together).
        torch.manual_seed(_step_seed(cfg.seed, step, self.info.rank))
        lr = self.schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        masks = torch.from_numpy(batch.masks_for(self.num_patches)).to(self.device)
        targets = self.targets.prepare(decoded)
        self.ddp.train()
        parts = self._forward(step, images, masks, targets)
        values = self._reduce(parts)
        if not math.isfinite(values["loss"]):
            raise _Diverged(
                f"{self.label}step {step}: the loss is {values['loss']} ({_describe(values)}); "
                f"stopping. The last good checkpoint in {cfg.out} is kept; lower --lr or set "
                "--grad-clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if self.ema:
            self.ema.update(self.model.student, step)
        return values | {"lr": lr}

    def _forward(self, step: int, images, masks, targets) -> dict[str, torch.Tensor]:
        """The loss parts of the two passes: compiled with --compile, unless torch cannot
        compile here (then one line, and eager from this step on)."""
        autocast = torch.autocast(
            self.device.type, torch.bfloat16, enabled=self.device.type == "cuda"
        )
        if self.compiled is not None:
            try:
                with autocast:
                    return self.compiled(images, masks, targets)
            except Exception as exc:  # any compiler failure: train eager
                reason = next((x for x in str(exc).splitlines() if x.strip()), type(exc).__name__)
                if self.info.is_main:
                    notice(
                        f"{self.label}--compile: torch cannot compile this student here "
                        f"({type(exc).__name__}: {reason[:200]}); training uncompiled"
                    )
                self.compiled = None
                # The failed attempt may have drawn drop-path numbers: the step's seed again.
                torch.manual_seed(_step_seed(self.cfg.seed, step, self.info.rank))
        with autocast:
            return self.ddp(images, masks, targets)

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

    def result(self) -> TrainResult:
        return TrainResult(Path(self.cfg.out), self.steps_done, self.last, self.stopped)


class _Trainer:
    """The stream and its students: each step is rendered and read once, then every student
    that is still training steps on it."""

    def __init__(self, cfgs: list[TrainConfig], device: str, info: DistInfo):
        torch_device = torch.device(f"cuda:{info.local_rank}" if device == "cuda" else "cpu")
        self.info = info
        self.stream = _Stream(cfgs[0], torch_device, info)
        several = len(cfgs) > 1
        self.learners = [_Learner(cfg, self.stream, several) for cfg in cfgs]
        self.stream.plan(self.learners[0].num_patches)
        for index, source in enumerate(self.stream.sources):
            # Read once as coefficients where any student learns them so (the others expand).
            source.coefficients = frozenset(n for x in self.learners for n in x.spaces[index])
        for learner in self.learners:
            learner.plan()
        self._stop_signal: int | None = None

    def run(self) -> list[TrainResult]:
        stream, learners = self.stream, self.learners
        for learner in learners:
            learner.prepare_run_folder()
        render = RenderConfig.from_manifest(
            stream.first,
            stream.device,
            device_id=self.info.local_rank,
            threads=stream.cfg.render_threads,
            max_batch=stream.cfg.batch_size,
        )
        # Per source, every target some student reads, once.
        names = [
            tuple(dict.fromkeys(n for learner in learners for n in learner.names[i]))
            for i in range(len(stream.sources))
        ]
        patch_counts = tuple(dict.fromkeys(learner.num_patches for learner in learners))
        self.loader = Batches(
            stream.sources,
            stream.rows,
            stream.sampler,
            Renderer(render),
            names,
            self.info.rank,
            patch_counts=patch_counts,
            feed=DeviceFeed(stream.device),
        )
        if self.info.is_main:
            for line in stream.adjustments:
                notice(line)
        for learner in learners:
            learner.open(render, self.loader)
        start = min((learner.start_step for learner in learners), default=0)
        total = stream.total_steps
        bar = progress_bar(
            total=total,
            initial=start,
            unit="step",
            desc="train" if len(learners) == 1 else f"train ×{len(learners)}",
            disable=not (self.info.is_main and stream.cfg.progress),
        )
        try:
            with self._signals():
                self._loop(start, total, bar)
        finally:
            bar.close()
            for learner in learners:
                learner.close()
        return [learner.result() for learner in learners]

    def _loop(self, start: int, total: int, bar) -> None:
        learners = self.learners
        tick = time.perf_counter()
        for batch in self.loader.iterate(start, total):
            due = [x for x in learners if x.active and x.steps_done <= batch.step]
            if due:
                DeviceFeed.wait(batch)  # a GPU's copies, issued in the loader's thread
                images = batch.images.to(self.stream.device, non_blocking=True)
                decoded = self.loader.targets(batch, self.stream.device)
                # The shared work (waiting for the batch, its copy and decoding) is shared out.
                shared = (time.perf_counter() - tick) / len(due)
                for learner in due:
                    self._train(learner, batch, images, decoded, shared)
            tick = time.perf_counter()
            bar.update(1)
            bar.set_postfix(_postfix(learners))
            if not any(x.active for x in learners):
                break
            if self._stop_signal is not None:
                for learner in learners:
                    if learner.stopped is None:
                        learner.save_on_stop()
                raise Interrupted(
                    f"stopped by signal {self._stop_signal} after step {batch.step + 1}; the "
                    "checkpoint is saved — rerun with --resume to continue"
                )
        stopped = [x.stopped for x in learners if x.stopped]
        if len(stopped) == len(learners):
            raise ProteusError(stopped[0] if len(stopped) == 1 else "; ".join(stopped))

    def _train(self, learner: _Learner, batch, images, decoded, shared: float) -> None:
        try:
            learner.train_step(batch, images, decoded, shared)
        except _Diverged as exc:
            if len(self.learners) == 1:
                raise
            # The others go on: this one's last good checkpoint stays in its folder.
            learner.stopped = str(exc)
            if self.info.is_main:
                notice(str(exc).replace("stopping.", "it stops, the others go on."))

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


def _postfix(learners: Sequence[_Learner]) -> dict[str, str]:
    if len(learners) > 1:  # each student's loss, by run folder name
        return {Path(x.cfg.out).name: f"{x.last['loss']:.4g}" if x.last else "-" for x in learners}
    record = learners[0].last
    if not record:
        return {}
    parts = {k.removeprefix("loss_"): f"{v:.4g}" for k, v in record.items() if k.startswith("loss")}
    return parts | {"img/s": f"{record['images_per_s']:.0f}"}


def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, 3, step, rank]).generate_state(1)[0])


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "loss")
