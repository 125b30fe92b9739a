"""Training recipes: named sets of defaults, recorded in config.json.

``proteus`` is the reference recipe (BeSpontaneous/Proteus-pytorch, ``pretrain/``), value by
value; each field names the line it comes from. ``legacy`` keeps proteus 0.1's defaults so
old runs can be reproduced and compared (docs/QUALITY.md).

A recipe only fills what the user did not set: every ``--lr``, ``--drop-path`` … given on the
command line wins, and config.json records both the recipe name and the resolved values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from proteus.common.runtime.errors import ProteusError


@dataclass(frozen=True)
class Recipe:
    name: str
    # Peak lr per 512 images of global batch: main.py `--lr 5e-4`, scaled by
    # `args.lr * batch_size * world_size / 512` unless --unscale-lr.
    lr_per_512: float
    # How the peak lr follows the global batch (train/schedule.py scaled_lr).
    lr_rule: str
    # main.py `--warmup-lr 1e-6`: the lr the linear warm-up starts from.
    warmup_lr: float
    # main.py `--min-lr 1e-5`: the floor of the cosine.
    min_lr: float
    # run_pretrain.sh `--warmup-epochs 5`.
    warmup_epochs: float
    # main.py `--weight-decay 0.05`.
    weight_decay: float
    # timm create_optimizer skips decay only for ndim <= 1 (biases, norms) and the names in a
    # model's no_weight_decay(); MetaArch has none, so pos_embed, cls and mask tokens decay.
    decay_tokens: bool
    # "epoch": timm CosineLRScheduler stepped once per epoch, as main.py's
    # `lr_scheduler.step(epoch)` after each epoch (so epoch e trains at the value for e - 1).
    # "step": linear warm-up and cosine per optimizer step (proteus 0.1).
    schedule: str
    # main.py parses `--drop-path 0.1` but MetaArch never passes it: students train with 0.
    drop_path: float
    # Students built as the reference builds them for the teacher's family (common/models/students/
    # STUDENT_STYLES): DINOv2 ViTs with LayerScale init 1.0 and a zero mask token,
    # CLIP-style ViTs for CLIP teachers, no LayerScale for SynCLR. False: the timm arch as is.
    reference_students: bool
    # main.py `--model-ema-decay 0.99996` (timm ModelEma: no warm-up).
    ema_decay: float
    ema_warmup: bool  # proteus 0.1: min(decay, (1 + step) / (10 + step))
    # The reference evaluates `model.student.backbone`, the raw weights, not the EMA.
    eval_weights: str
    # main.py `--repeated-aug` (on), samplers.py RASampler(num_repeats=3).
    repeated_aug: int

    def to_json(self) -> dict:
        return asdict(self)


PROTEUS = Recipe(
    name="proteus",
    lr_per_512=5e-4,
    # The one departure from the reference: its linear rule from a global batch of 512 up,
    # the square-root rule below, where the linear one starves short small-batch runs
    # (docs/QUALITY.md measures both).
    lr_rule="sqrt-below-512",
    warmup_lr=1e-6,
    min_lr=1e-5,
    warmup_epochs=5.0,
    weight_decay=0.05,
    decay_tokens=True,
    schedule="epoch",
    drop_path=0.0,
    reference_students=True,
    ema_decay=0.99996,
    ema_warmup=False,
    eval_weights="raw",
    repeated_aug=3,
)

# proteus 0.1's defaults (kept to reproduce and compare against, not recommended).
LEGACY = Recipe(
    name="legacy",
    lr_per_512=5e-4,
    lr_rule="linear",
    warmup_lr=0.0,
    min_lr=1e-6,
    warmup_epochs=5.0,
    weight_decay=0.05,
    decay_tokens=False,
    schedule="step",
    drop_path=0.1,
    reference_students=False,
    ema_decay=0.9999,
    ema_warmup=True,
    eval_weights="ema",
    repeated_aug=1,
)

RECIPES = {r.name: r for r in (PROTEUS, LEGACY)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ProteusError(f"--recipe {name!r}: unknown; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
