"""Intermediate-layer hints: each adds exactly its own MSE term, and trains end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from extract_helpers import run_cli, tiny_cache
from train_helpers import train, train_args

from proteus.common.models.grid import resize_layer_targets
from proteus.common.models.parts import Hint, Lambdas
from proteus.common.models.students import build_student
from proteus.common.runs.checkpoint import load_checkpoint
from proteus.common.runs.logs import read_log
from proteus.common.runtime.errors import ProteusError
from proteus.evaluate.models import load_trained_student
from proteus.train.distiller import Distiller
from proteus.train.objective import Objective

DT, DL = 6, 5  # teacher width, width of its layer target


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tiny_cache(tmp_path_factory.mktemp("hints"), per_class=3, layers=(0, 1)) / "cache"


def _distiller(hints: tuple[Hint, ...], lambda_hint: float) -> Distiller:
    torch.manual_seed(0)
    student = build_student("tiny_vit14", 28)
    objective = Objective(Lambdas(1.0, 1.0, 1.0, lambda_hint), hints)
    return Distiller(student, [(DT, objective, {h.key: DL for h in hints})])


def test_a_hint_adds_exactly_its_term():
    hint = Hint(block=0, layer=3)
    plain, hinted = _distiller((), 0.7), _distiller((hint,), 0.7)
    # Hint heads come after the Proteus heads: the shared parameters start out identical.
    shared = plain.state_dict()
    assert all(torch.equal(hinted.state_dict()[k], v) for k, v in shared.items())

    torch.manual_seed(1)
    images = torch.randn(3, 3, 28, 28)
    masks = torch.zeros(2, 4, dtype=torch.bool)
    masks[:, :2] = True
    targets = {
        "cls": torch.randn(3, DT),
        "patch": torch.randn(3, 4, DT),
        "layer_3": torch.randn(3, 5, DL),
    }
    base = plain(images, masks, [targets])
    with_hint = hinted(images, masks, [targets])

    for part in ("loss_token", "loss_fea", "loss_patch"):
        torch.testing.assert_close(with_hint[part], base[part])
    assert "loss_hint" not in base  # a run without hints does not log a zero for them
    # The term, computed independently: block 0's tokens (cls + patches) through its own head.
    tokens = hinted.student(images, layers=(0,))["layers"][0]
    term = F.mse_loss(hinted.heads[0].hint_heads[hint.key](tokens), targets["layer_3"])
    torch.testing.assert_close(with_hint["loss_hint"], term)
    torch.testing.assert_close(with_hint["loss"] - base["loss"], 0.7 * term)


def test_hint_text_and_layer_grids():
    assert Hint.parse("5:19") == Hint(5, 19, 0) and Hint.parse("-1:3@2") == Hint(-1, 3, 1)
    assert str(Hint(5, 19, 1)) == "5:19@2"
    for bad in ("5", "a:b", "1:2@0", "1:2@x"):
        with pytest.raises(ProteusError, match="STUDENT_BLOCK:TEACHER_LAYER"):
            Hint.parse(bad)
    # A layer on a 2×2 grid goes to the student's 4×4: global token kept, patches resampled.
    tokens = torch.arange(5.0).reshape(1, 5, 1)
    out = resize_layer_targets(tokens, (4, 4))
    assert out.shape == (1, 17, 1) and out[0, 0, 0] == 0.0


def test_training_with_hints_logs_and_keeps_their_heads(cache, tmp_path):
    hints = (Hint(0, 1), Hint(-1, 0))
    train(cache, tmp_path / "run", max_steps=6, hints=hints, lambda_hint=0.5)
    record = read_log(tmp_path / "run")[-1]
    assert record["loss_hint"] > 0
    total = record["loss_token"] + record["loss_fea"] + record["loss_patch"]
    assert record["loss"] == pytest.approx(total + 0.5 * record["loss_hint"], rel=1e-5)
    state = load_checkpoint(tmp_path / "run")
    assert state["teachers"][0]["hints"] == [[0, 1], [1, 0]]  # -1 resolved to the last block
    assert state["teachers"][0]["lambdas"]["hint"] == 0.5
    trained = load_trained_student(tmp_path / "run")
    assert set(trained.heads[0].hint_heads) == {"block0_layer1", "block1_layer0"}
    # Resuming with other hints is refused: the objective would change mid-run.
    with pytest.raises(ProteusError, match="hints"):
        train(cache, tmp_path / "run", max_steps=8, hints=hints[:1], lambda_hint=0.5, resume=True)


def test_hints_alone_can_train(cache, tmp_path):
    train(
        cache,
        tmp_path / "run",
        max_steps=2,
        hints=(Hint(1, 1),),
        lambda_token=0.0,
        lambda_fea=0.0,
        lambda_patch=0.0,
    )
    record = read_log(tmp_path / "run")[-1]
    assert record["loss"] == pytest.approx(record["loss_hint"]) and "loss_token" not in record


def test_bad_hints_name_the_fix(cache, tmp_path):
    with pytest.raises(ProteusError, match=r"stores no layer_7 .*layer_0, layer_1.*--layers 7"):
        train(cache, tmp_path / "a", hints=(Hint(0, 7),))
    with pytest.raises(ProteusError, match="the student has 2 blocks"):
        train(cache, tmp_path / "b", hints=(Hint(2, 1),))
    with pytest.raises(ProteusError, match="only 1 --cache"):
        train(cache, tmp_path / "c", hints=(Hint(0, 1, teacher=1),))
    result = run_cli(*train_args(cache, tmp_path / "d", "--hint", "0-1"))
    assert result.returncode == 2 and "STUDENT_BLOCK:TEACHER_LAYER" in result.stderr


def test_format_1_checkpoints_still_load_for_evaluation(cache, tmp_path):
    train(cache, tmp_path / "run", max_steps=1)
    state = load_checkpoint(tmp_path / "run")
    old = {k: v for k, v in state.items() if k != "teachers"} | {"format": 1}
    old["heads"] = {k.removeprefix("0."): v for k, v in state["heads"].items()}
    torch.save(old, tmp_path / "old.pt")
    trained = load_trained_student(tmp_path / "old.pt")
    for name, value in trained.heads[0].state_dict().items():
        torch.testing.assert_close(value, state["heads"][f"0.{name}"])
    with pytest.raises(ProteusError, match="format 1"):
        (tmp_path / "old").mkdir()
        torch.save(old, tmp_path / "old" / "checkpoint.pt")
        (tmp_path / "old" / "config.json").write_text("{}")
        train(cache, tmp_path / "old", max_steps=2, resume=True)
