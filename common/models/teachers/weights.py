"""Reading weight files from disk safely, whatever wrapper the trainer that wrote them used."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from proteus.common.runtime.errors import ProteusError

# Training scripts nest the state dict under one of these keys (DINO/SynCLR: "model",
# Lightning: "state_dict"); we unwrap them so users can pass checkpoints as released.
_WRAPPER_KEYS = ("state_dict", "model", "module")


def load_weights_file(path: Path, strip_prefixes: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Load a state dict from safetensors or a torch file without running pickled code.

    Torch files are opened with ``weights_only=True``: a checkpoint is untrusted input, and a
    full unpickle can execute arbitrary code. Keys under ``strip_prefixes`` (e.g. ``visual.``)
    are kept with the prefix removed and everything else is dropped, so a whole CLIP checkpoint
    yields its vision tower alone.
    """
    path = Path(path)
    if not path.is_file():
        raise ProteusError(f"--weights {path}: no such file")
    state = _read(path)
    state = _unwrap(state, path)
    # DistributedDataParallel wraps every key in "module."; drop it before family prefixes.
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    prefixes = tuple(strip_prefixes)
    if prefixes and any(k.startswith(prefixes) for k in state):
        state = {_after(k, prefixes): v for k, v in state.items() if k.startswith(prefixes)}
    return state


def _after(key: str, prefixes: tuple[str, ...]) -> str:
    prefix = next(p for p in prefixes if key.startswith(p))
    return key[len(prefix) :]


def _read(path: Path) -> Mapping:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ProteusError(
                f"--weights {path}: not a readable safetensors file ({exc})"
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch reports a pickled class or function as an "Unsupported global"; anything
        # else is a file that is not a pickle at all.
        if "unsupported global" not in str(exc).lower():
            raise ProteusError(f"--weights {path}: not a readable torch file ({exc})") from exc
        raise ProteusError(
            f"--weights {path}: refused to load: the file holds Python objects other than "
            "tensors, and unpickling them could run code. Convert it once, in an environment "
            "you trust, to a plain state dict or safetensors file."
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ProteusError(f"--weights {path}: not a readable torch file ({exc})") from exc


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(state, Mapping) and not _is_state_dict(state):
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not _is_state_dict(state):
        raise ProteusError(
            f"--weights {path}: no state dict found (expected a mapping of names to tensors, "
            f"possibly under one of {', '.join(_WRAPPER_KEYS)})"
        )
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(state: Mapping) -> bool:
    return bool(state) and any(isinstance(v, torch.Tensor) for v in state.values())


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that says what did not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ProteusError(f"{what}: weights do not fit the architecture: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)
