"""The run folder and checkpoint contracts: one owner each, older checkpoints upgraded on read."""

from __future__ import annotations

import pytest
import torch

from proteus.common.models.parts import Lambdas
from proteus.common.runs.checkpoint import FORMAT, Checkpoint, load_checkpoint
from proteus.common.runs.folder import RunFolder
from proteus.common.runs.records import SourceIdentity, TeacherRecord
from proteus.common.runtime.errors import ProteusError


def _checkpoint(step: int = 3) -> Checkpoint:
    teacher = TeacherRecord(
        dim=8,
        lambdas=Lambdas(1.0, 1.0, 1.0),
        source=SourceIdentity("/c", "tiny", "ab"),
        name="tiny",
        family="dinov2",
    )
    return Checkpoint(
        step=step,
        student_name="tiny_vit14",
        image_size=28,
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        teachers=[teacher],
        student={"w": torch.ones(2)},
        heads={"0.token.weight": torch.zeros(2)},
        recipe="proteus",
        eval_weights="raw",
        config={"mask_ratio": 0.5},
    )


def test_a_checkpoint_round_trips_through_the_file(tmp_path):
    saved = _checkpoint()
    saved.save(tmp_path)
    loaded = Checkpoint.load(tmp_path)
    assert loaded.format == FORMAT and loaded.step == 3 and loaded.recipe == "proteus"
    assert loaded.mean == (0.5, 0.5, 0.5) and loaded.teachers == saved.teachers
    torch.testing.assert_close(loaded.student["w"], torch.ones(2))
    # One-teacher readers still find the first teacher at the top level of the file.
    raw = load_checkpoint(tmp_path)
    assert raw["teacher_dim"] == 8 and raw["teacher"] == "tiny" and raw["cache"]["path"] == "/c"
    # The family is the teacher record's (0.2 wrote None here: it read a key the cache
    # identity never had).
    assert raw["teacher_family"] == "dinov2"


def test_format_1_is_upgraded_on_read_and_keeps_its_format_number(tmp_path):
    raw = _checkpoint().to_state()
    old = {k: v for k, v in raw.items() if k not in ("teachers", "format", "recipe")}
    old["heads"] = {"token.weight": torch.zeros(2)}
    loaded = Checkpoint.from_state(old)
    assert loaded.format == 1 and loaded.recipe == "legacy" and loaded.eval_weights == "raw"
    assert list(loaded.heads) == ["0.token.weight"]
    assert loaded.teachers[0].dim == 8 and loaded.teachers[0].hints == ()
    assert loaded.teachers[0].family == "dinov2"  # from the top-level teacher_family


def test_a_dict_without_a_student_is_named_not_a_checkpoint():
    with pytest.raises(ProteusError, match=r"x\.pt: not a proteus checkpoint \(no student_name\)"):
        Checkpoint.from_state({"step": 1}, source="x.pt")


def test_the_run_folder_knows_when_a_run_is_finished(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert not run.is_run() and not run.finished()
    with pytest.raises(ProteusError, match=r"not a training run folder \(no config\.json\)"):
        run.read_config()
    run.write_config({"total_steps": 4})
    assert run.read_config() == {"total_steps": 4} and not run.finished()
    _checkpoint(step=3).save(run.path)
    assert run.has_checkpoint() and not run.finished()
    _checkpoint(step=4).save(run.path)
    assert run.finished()
    assert run.eval_result("knn") == run.path / "eval" / "knn.json"
    run.config.write_text("{broken")
    with pytest.raises(ProteusError, match=r"config\.json: not valid JSON"):
        run.read_config()
