"""The proteus recipe holds the reference's values (BeSpontaneous/Proteus-pytorch, pretrain/),
its schedule is timm's scheduler driven as the reference drives it, and its students are
built as the reference builds them."""

from __future__ import annotations

import pytest
import torch

from proteus.common.models.parts import Lambdas
from proteus.common.models.students import build_student, student_style
from proteus.train.config import TrainConfig
from proteus.train.distiller import Distiller, param_groups
from proteus.train.objective import Objective
from proteus.train.recipe import LEGACY, PROTEUS, get_recipe
from proteus.train.schedule import EpochCosineSchedule, scaled_lr

# (recipe field, reference value, where the reference sets it)
REFERENCE = [
    ("lr_per_512", 5e-4, "main.py --lr 5e-4, scaled by batch × world / 512"),
    ("warmup_lr", 1e-6, "main.py --warmup-lr 1e-6"),
    ("min_lr", 1e-5, "main.py --min-lr 1e-5"),
    ("warmup_epochs", 5, "run_pretrain.sh --warmup-epochs 5"),
    ("weight_decay", 0.05, "main.py --weight-decay 0.05"),
    ("decay_tokens", True, "main.py create_optimizer: MetaArch has no no_weight_decay()"),
    ("schedule", "epoch", "main.py create_scheduler + lr_scheduler.step(epoch) per epoch"),
    ("drop_path", 0.0, "models_proteus_dinov2.py never passes --drop-path to the student"),
    ("reference_students", True, "models_proteus_{dinov2,clip,synclr}.py student builders"),
    ("ema_decay", 0.99996, "main.py --model-ema-decay 0.99996 (timm ModelEma, no warm-up)"),
    ("ema_warmup", False, "timm ModelEma"),
    ("eval_weights", "raw", "evaluation loads model.student.backbone"),
    ("repeated_aug", 3, "main.py --repeated-aug on; samplers.py RASampler(num_repeats=3)"),
]


@pytest.mark.parametrize("field, value, source", REFERENCE)
def test_proteus_recipe_holds_the_reference_value(field, value, source):
    assert getattr(PROTEUS, field) == value, source


def test_the_default_config_is_the_reference_recipe():
    cfg = TrainConfig(cache="c", student="vit_s14", out="o")
    assert cfg.recipe == "proteus"
    resolved = cfg.resolved()
    for field in TrainConfig.RECIPE_FIELDS:
        assert getattr(resolved, field) == getattr(PROTEUS, field)
    # 4 GPUs × 128, as run_pretrain.sh: 5e-4 × 512 / 512, and linear above, as the paper.
    rule = PROTEUS.lr_per_512, PROTEUS.lr_rule
    assert scaled_lr(None, 4 * 128, *rule) == 5e-4 and scaled_lr(None, 2048, *rule) == 2e-3
    # Below 512 the square-root rule (the kept difference, docs/QUALITY.md).
    assert scaled_lr(None, 64, *rule) == pytest.approx(5e-4 * (64 / 512) ** 0.5)
    assert scaled_lr(None, 64, LEGACY.lr_per_512, LEGACY.lr_rule) == 5e-4 * 64 / 512
    assert scaled_lr(3e-4, 64, *rule) == 3e-4  # --lr wins
    # Options given by the user win over the recipe.
    assert TrainConfig(cache="c", student="s", out="o", drop_path=0.2).resolved().drop_path == 0.2


def test_unknown_recipe_is_refused():
    with pytest.raises(Exception, match="--recipe 'x': unknown; choose one of proteus, legacy"):
        get_recipe("x")


def test_epoch_schedule_is_timm_cosine_stepped_after_each_epoch_as_main_py():
    from timm.scheduler import CosineLRScheduler

    epochs, per_epoch, peak = 12, 3, 4e-4
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    timm_sched = CosineLRScheduler(
        opt,
        t_initial=epochs,
        lr_min=1e-5,
        warmup_t=5,
        warmup_lr_init=1e-6,
        cycle_limit=1,
        t_in_epochs=True,
        warmup_prefix=False,
    )
    ours = EpochCosineSchedule(peak, epochs, per_epoch, 5, 1e-6, 1e-5)
    step = 0
    for epoch in range(epochs):
        for _ in range(per_epoch):  # main.py: the lr stays put during an epoch
            assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), epoch
            step += 1
        timm_sched.step(epoch)  # main.py: after train_one_epoch
    assert ours(0) == ours(per_epoch) == 1e-6  # epochs 0 and 1 both at the warm-up start


def _distiller(style: str):
    student = build_student("tiny_vit14", 28, style=style)
    return Distiller(student, [(8, Objective(Lambdas()), {})])


def test_weight_decay_covers_tokens_in_the_reference_only():
    model = _distiller("dinov2")
    names = {id(p): n for n, p in model.named_parameters()}

    def decayed(decay_tokens):
        groups = param_groups(model, 0.05, decay_tokens)
        return {names[id(p)] for p in groups[0]["params"]}

    tokens = {"student.vit.pos_embed", "student.vit.cls_token", "student.mask_token"}
    assert tokens <= decayed(True) and not tokens & decayed(False)
    # Biases and norms never decay.
    assert not any(n.endswith(".bias") or ".norm" in n for n in decayed(True))


def test_reference_students_per_teacher_family():
    assert student_style("dinov2", True) == "dinov2" and student_style("effnet", True) == "dinov2"
    assert student_style("clip", True) == "clip-ref" and student_style("synclr", True) == "synclr"
    assert student_style("clip", False) == "arch"
    dino = build_student("tiny_vit14", 28, style="dinov2")
    assert torch.all(dino.vit.blocks[0].ls1.gamma == 1.0)  # LayerScale init 1.0
    assert torch.all(dino.mask_token == 0)  # dinov2: torch.zeros
    legacy = build_student("tiny_vit14", 28, style="arch")
    assert torch.all(legacy.vit.blocks[0].ls1.gamma == 1e-5) and legacy.mask_token.std() > 0
    clip = build_student("tiny_vit14", 28, style="clip-ref")
    assert isinstance(clip.vit.norm_pre, torch.nn.LayerNorm)  # ln_pre
    assert isinstance(clip.vit.blocks[0].ls1, torch.nn.Identity)  # no LayerScale
    assert type(clip.vit.blocks[0].mlp.act).__name__ == "QuickGELU"
    synclr = build_student("tiny_vit14", 28, style="synclr")
    assert isinstance(synclr.vit.blocks[0].ls1, torch.nn.Identity)
    assert synclr.mask_token.std() > 0  # models_synclr.py: normal_(std=.02)


def test_clip_students_are_built_as_the_reference_builds_them():
    """Reference pretrain/models_clip.py: torch LayerNorms (eps 1e-5) for ln_pre, ln_1, ln_2,
    ln_post; attention as nn.MultiheadAttention (in_proj_weight (3d, d) xavier-uniform, zero
    in_proj_bias; out_proj is an nn.Linear, so init_weights_vit_timm gives it trunc-normal
    0.02); ln_post on the class token only (x_norm_patchtokens = x[:, 1:], unnormed); a zero
    mask token."""
    torch.manual_seed(0)
    student = build_student("vit_s14", 56, style="clip-ref")
    vit, d = student.vit, 384
    norms = [m for m in vit.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 + 2 * len(vit.blocks) and all(m.eps == 1e-5 for m in norms)
    bound = (6 / (d + 3 * d)) ** 0.5  # xavier_uniform_ on (3d, d)
    for block in vit.blocks:
        qkv = block.attn.qkv.weight.detach()
        assert qkv.shape == (3 * d, d) and qkv.abs().max() <= bound
        assert abs(float(qkv.std()) - bound / 3**0.5) < 0.02 * bound
        assert torch.all(block.attn.qkv.bias == 0)
        assert abs(float(block.attn.proj.weight.detach().std()) - 0.02) < 0.002
    assert torch.all(student.mask_token == 0)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        out = student(x)
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        tokens = vit.blocks(tokens)
    torch.testing.assert_close(out["patch"], tokens[:, 1:])  # raw: no ln_post on patches
    torch.testing.assert_close(out["cls"], vit.norm(tokens)[:, 0])
    # proteus 0.2's "clip" style is kept as it was, so its checkpoints rebuild as trained.
    old = build_student("vit_s14", 56, style="clip")
    assert {m.eps for m in old.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    assert old.norm_patches


def test_legacy_recipe_keeps_proteus_0_1_defaults():
    assert (LEGACY.drop_path, LEGACY.ema_decay, LEGACY.min_lr, LEGACY.repeated_aug) == (
        0.1,
        0.9999,
        1e-6,
        1,
    )
    assert not LEGACY.reference_students and LEGACY.eval_weights == "ema"
