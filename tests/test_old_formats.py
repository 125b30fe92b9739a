"""What proteus 0.2 wrote still works: a cache (format 1) and a run folder (checkpoint
format 2) made before the package layout moved (tests/fixtures/v0_2, by make_v0_2.py) load,
train, resume and evaluate with today's code, to the numbers 0.2 itself gave.

Old import paths (plugins written against 0.2) keep working for one release too."""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from extract_helpers import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "v0_2"
sys.path.insert(0, str(FIXTURE.parent))

import make_v0_2  # noqa: E402

EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """The fixture's images and teacher weights, made again from their seeds."""
    return make_v0_2.make_inputs(tmp_path_factory.mktemp("v0_2"))


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_an_old_cache_trains_as_0_2_trained_on_it(inputs, tmp_path):
    data, _ = inputs
    out = tmp_path / "run"
    args = [*make_v0_2.TRAIN[1:], "--cache", str(FIXTURE / "cache"), "--data", str(data)]
    run = run_cli("train", *args, "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert _losses(out) == pytest.approx(_losses(FIXTURE / "run"), rel=1e-5)


def test_an_old_cache_renders_its_views_byte_for_byte_as_0_2_did(inputs):
    """Its targets were computed on revision 1's pixels (ColorIncreasing wrapping in uint8),
    so it replays those; today's kernels change only the view that drew ColorIncreasing."""
    from dataclasses import replace

    from proteus.common.cache.reader import Cache
    from proteus.common.views.randaugment import OPS
    from proteus.common.views.renderer import REVISION, RenderConfig, Renderer

    data, _ = inputs
    cache = Cache(FIXTURE / "cache", data_root=data)
    assert cache.manifest.render_revision == 1
    config = RenderConfig.from_manifest(cache.manifest, "cpu", threads=1, max_batch=18)
    encoded = [cache.encoded(i) for i in cache.views.image]

    def digests(cfg: RenderConfig) -> tuple[str, list[str]]:
        pixels = Renderer(cfg).render(encoded, cache.views).numpy()
        whole = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
        return whole, [hashlib.sha256(p.tobytes()).hexdigest()[:16] for p in pixels]

    whole, per_view = digests(config)
    assert whole == EXPECTED["pixels_sha256"]
    _, today = digests(replace(config, revision=REVISION))
    color = [i for i, ops in enumerate(cache.views.ra_op) if OPS.index("ColorIncreasing") in ops]
    changed = [i for i, (a, b) in enumerate(zip(per_view, today, strict=True)) if a != b]
    assert color and changed == color


def test_an_old_checkpoint_resumes_to_the_losses_0_2_gave(inputs, tmp_path):
    data, _ = inputs
    out = shutil.copytree(FIXTURE / "run", tmp_path / "run")
    train = [a if a != "6" else "9" for a in make_v0_2.TRAIN[1:]]  # --max-steps 9
    args = [*train, "--cache", str(FIXTURE / "cache"), "--data", str(data), "--resume"]
    run = run_cli("train", *args, "--out", str(out))
    assert run.returncode == 0, run.stderr
    resumed = _losses(out)[6:]
    assert resumed == pytest.approx(EXPECTED["resumed_losses_steps_6_to_8"], rel=1e-5)


def test_an_old_checkpoint_evaluates_to_0_2s_features_and_knn(inputs, tmp_path):
    from proteus.evaluate.models import load_trained_student

    trained = load_trained_student(FIXTURE / "run")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        out = trained.student(x)
        token = trained.heads[0].token_head(out["cls"])
    assert out["cls"][:, :4].flatten().tolist() == pytest.approx(EXPECTED["student_cls"], abs=1e-5)
    assert token[:, :4].flatten().tolist() == pytest.approx(EXPECTED["token_head"], abs=1e-5)
    assert trained.checkpoint.teachers[0].name == "tiny_dinov2"
    data, _ = inputs
    run = shutil.copytree(FIXTURE / "run", tmp_path / "run")  # eval writes into RUN/eval/
    knn = tmp_path / "knn.json"
    args = ["--train", str(data), "--val", str(data), "--k", "3", "--device", "cpu"]
    result = run_cli("eval", "knn", "--checkpoint", str(run), *args, "--json", str(knn))
    assert result.returncode == 0, result.stderr
    assert json.loads(knn.read_text())["top1"] == EXPECTED["knn_top1_k3"]


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("proteus.common.teachers", "proteus.common.models.teachers", "register_teacher"),
        ("proteus.common.teachers.spec", "proteus.common.models.teachers.spec", "TeacherSpec"),
        (
            "proteus.common.teachers.timm_teachers",
            "proteus.common.models.teachers.timm_teachers",
            "build_vit",
        ),
        ("proteus.common.students", "proteus.common.models.students", "register_student"),
        ("proteus.common.errors", "proteus.common.runtime.errors", "ProteusError"),
        ("proteus.common.renderer", "proteus.common.views.renderer", "Renderer"),
        ("proteus.train.checkpoint", "proteus.common.runs.checkpoint", "Checkpoint"),
        ("proteus.extract.writer", "proteus.common.cache.writer", "CacheWriter"),
    ],
)
def test_0_2_import_paths_still_work_with_a_deprecation_warning(old, new, name):
    for module in [m for m in sys.modules if m == old or m.startswith(old + ".")]:
        del sys.modules[module]  # an earlier import would answer without a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        legacy = importlib.import_module(old)
    assert getattr(legacy, name) is getattr(importlib.import_module(new), name)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_views_package_still_answers_for_the_0_2_views_module():
    from proteus.common.views import AugPolicy, sample_views
    from proteus.common.views.records import AugPolicy as Policy
    from proteus.common.views.records import sample_views as sample

    assert AugPolicy is Policy and sample_views is sample
