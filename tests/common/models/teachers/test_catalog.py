"""The 2026 teacher set: every record's numbers are timm's, and each family's targets are
what its model defines, read back from a cache extracted with --weights."""

from __future__ import annotations

from dataclasses import replace

import imagegen
import numpy as np
import pytest
import timm
import torch
from extract_helpers import extract
from safetensors.torch import load_file

from proteus.common.cache.reader import Cache
from proteus.common.models.teachers import build_teacher, get_teacher_spec, register_teacher
from proteus.common.models.teachers.catalog import MODERN_TEACHERS
from proteus.common.runtime.errors import ProteusError
from proteus.common.views.renderer import RenderConfig, Renderer


def test_every_family_of_the_issue_is_registered():
    sizes = {
        "dinov3": ["s", "s_plus", "b", "l", "h_plus", "7b", "l_sat", "7b_sat"],
        "siglip2": ["b16", "l16", "so400m14", "so400m16", "g16"],
        "pe_core": ["t16", "s16", "b16", "l14", "g14"],
        "pe_spatial": ["t16", "s16", "b16", "l14", "g14"],
        "pe_lang": ["l14", "g14"],
        "aimv2": ["l14", "h14", "1b14", "3b14"],
        "eva02_clip": ["b16", "l14"],
        "radio": ["v3_b", "v3_l", "v3_h", "v3_g", "v4_so400m", "v4_h"],
    }
    wanted = {f"{family}_{size}" for family, names in sizes.items() for size in names}
    assert wanted == set(MODERN_TEACHERS)


@pytest.mark.parametrize("name", MODERN_TEACHERS)
def test_record_matches_timm(name):
    """dim, depth, patch, native size, mean/std and the pooling are what timm has (meta)."""
    spec = get_teacher_spec(name)
    cfg = timm.models.get_pretrained_cfg(spec.arch)
    with torch.device("meta"):
        model = timm.create_model(spec.arch, num_classes=0, global_pool=spec.global_pool)
    assert (spec.embed_dim, spec.depth) == (model.num_features, len(model.blocks))
    assert spec.patch_size == model.patch_embed.patch_size[0]
    assert spec.image_size == cfg.input_size[-1] and spec.image_size % spec.patch_size == 0
    np.testing.assert_allclose(spec.mean, cfg.mean, atol=1e-3)
    np.testing.assert_allclose(spec.std, cfg.std, atol=1e-3)
    # "token" needs a class token; models without one are pooled by their own head.
    has_cls = getattr(model, "cls_token", None) is not None
    assert spec.global_pool != "token" or has_cls
    assert spec.global_pool == "map" or not has_cls or spec.global_pool == "token"


# One tiny stand-in per family: the real record, shrunk (arch_kwargs), at a small size.
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
FAMILIES = {
    "dinov3": "dinov3_s",
    "dinov3_7b": "dinov3_7b",  # SwiGLU MLP, another RoPE layout
    "siglip2": "siglip2_b16",
    "pe_core": "pe_core_t16",
    "pe_spatial": "pe_spatial_t16",
    "pe_lang": "pe_lang_g14",
    "aimv2": "aimv2_l14",
    "eva02_clip": "eva02_clip_b16",
    "radio": "radio_v3_b",
}


def _tiny(real: str) -> str:
    spec = get_teacher_spec(real)
    size = 2 * spec.patch_size
    register_teacher(replace(spec, name=f"tiny_{real}", arch_kwargs=TINY, image_size=size))
    return f"tiny_{real}"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return imagegen.image_folder(tmp_path_factory.mktemp("modern") / "data", per_class=2)


@pytest.mark.parametrize("family", FAMILIES)
def test_stored_targets_equal_the_models_own_forward(family, images, tmp_path):
    name = _tiny(FAMILIES[family])
    spec = get_teacher_spec(name)
    weights = imagegen.save_teacher_weights(name, tmp_path / "w.safetensors", seed=1)
    registers = spec.family in ("dinov3", "radio")
    extract(
        images, tmp_path / "c", weights, teacher=name, views=2, layers=(0,), registers=registers
    )
    cache = Cache(tmp_path / "c")
    m = cache.manifest
    # The model as timm builds it, with the saved weights: the definition of the targets.
    model = timm.create_model(
        spec.arch, num_classes=0, img_size=spec.image_size, global_pool=spec.global_pool, **TINY
    ).eval()
    model.load_state_dict(load_file(str(weights)))
    ids = cache.usable_views()
    views = cache.views[ids]
    pixels = Renderer(RenderConfig.from_manifest(m, max_batch=8)).render(
        [cache.encoded(i) for i in views.image], views
    )
    with torch.no_grad():
        tokens = model.forward_features(pixels)
        summary = model.forward_head(tokens, pre_logits=True)
    prefix = model.num_prefix_tokens
    expected = {"cls": summary, "patch": tokens[:, prefix:]}
    if spec.global_pool == "token":  # the class token after the final norm
        torch.testing.assert_close(summary, tokens[:, 0])
    if registers:
        expected["registers"] = tokens[:, 1:prefix]
        assert m.targets["registers"] == [prefix - 1, 32]
    for target, want in expected.items():
        stored = torch.from_numpy(cache.read(target, ids).astype(np.float32))
        torch.testing.assert_close(stored, want, rtol=2e-3, atol=2e-3, msg=target)
    assert m.teacher_family == spec.family and m.grid == (2, 2)
    assert "layer_0" in m.targets and set(m.stats) >= {"cls", "patch", "layer_0"}


def test_weights_of_another_family_are_a_one_line_error(tmp_path):
    dinov3, siglip = _tiny("dinov3_s"), _tiny("siglip2_b16")
    weights = imagegen.save_teacher_weights(siglip, tmp_path / "s.safetensors")
    with pytest.raises(ProteusError, match=r"weights do not fit the architecture: \d+ missing"):
        build_teacher(dinov3, weights=weights)


def test_registers_are_refused_where_there_are_none():
    with pytest.raises(ProteusError, match="has no register tokens"):
        build_teacher(_tiny("siglip2_b16"), pretrained=False, registers=True)
