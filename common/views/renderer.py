"""The one renderer: view records + encoded images -> normalised tensors, with DALI.

Both stages call :class:`Renderer` with the same configuration (read from the cache
manifest), so the teacher's targets and the student's inputs come from the same pixels.
On the CPU (``device="cpu"``, no GPU needed) the output is byte-identical run to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from proteus.common.runtime.errors import ProteusError
from proteus.common.views.randaugment import NONE, layer_feeds
from proteus.common.views.records import AugPolicy, ViewTable

_INTERP = {"linear": "INTERP_LINEAR", "cubic": "INTERP_CUBIC"}

# What the RandAugment kernels render, by revision. A cache records the revision its views
# were rendered with (manifest renderer.revision; caches from before it was recorded are 1),
# and both stages render that one, so targets and student inputs keep the same pixels.
#   1  proteus ≤ 0.2: ColorIncreasing subtracted two uint8 images, so negative differences
#      wrapped mod 256 (about 6.6% of default views differ from timm's by ~80 levels)
#   2  proteus 0.3: ColorIncreasing blends in float, as PIL's ImageEnhance.Color does
REVISION = 2
REVISIONS = (1, 2)


@dataclass(frozen=True)
class RenderConfig:
    image_size: int  # output side in pixels
    mean: tuple[float, float, float]  # the teacher's normalisation, in [0, 1] units
    std: tuple[float, float, float]
    device: str = "cpu"  # "cpu" (device_id=None) or "gpu" (decode with nvJPEG, ops on GPU)
    device_id: int = 0  # GPU index when device == "gpu"
    threads: int = 2  # DALI CPU worker threads
    max_batch: int = 64  # largest number of views rendered in one call
    # From the view policy: how records become pixels (AugPolicy says what each means).
    interpolation: str = "linear"  # cubic | linear resampling of the crop (antialiased)
    randaug_layers: int = 0  # RandAugment layers in the records; 0 builds no RandAugment
    erase_mode: str = "const"  # const: erase to the mean colour | pixel: N(0, 1) noise
    revision: int = REVISION  # which kernels render the records (REVISIONS)

    @classmethod
    def from_manifest(cls, manifest, on: torch.device | str = "cpu", **kwargs) -> RenderConfig:
        """The renderer of the views ``manifest`` describes (a cache's manifest, or anything
        with its policy, image_size, mean, std and render_revision: a training source's
        TeacherInfo), on the device ``on`` (a torch device: CUDA renders on that GPU)."""
        on = torch.device(on)
        if on.type == "cuda":
            kwargs = {"device_id": on.index or 0} | kwargs
        return cls.for_policy(
            manifest.policy,
            manifest.image_size,
            manifest.mean,
            manifest.std,
            device=render_device(on),
            revision=manifest.render_revision,
            **kwargs,
        )

    @classmethod
    def for_policy(cls, policy: AugPolicy | dict, image_size: int, mean, std, **kwargs):
        """The renderer for views recorded under ``policy`` (a cache manifest's policy)."""
        if isinstance(policy, dict):
            policy = AugPolicy.from_dict(policy)
        return cls(
            image_size,
            tuple(mean),
            tuple(std),
            interpolation=policy.interpolation,
            randaug_layers=policy.randaug_layers,
            erase_mode=policy.erase_mode,
            **kwargs,
        )


def render_device(torch_device: torch.device | str) -> str:
    """DALI's name for where a torch device's views are rendered: nvJPEG and GPU operators
    for CUDA, libjpeg-turbo and CPU operators otherwise."""
    return "gpu" if torch.device(torch_device).type == "cuda" else "cpu"


def _dali():
    try:
        import nvidia.dali as dali
    except ImportError as exc:
        raise ProteusError(
            "NVIDIA DALI is not installed: pip install nvidia-dali-cuda130 (or -cuda120 for "
            "CUDA 12 drivers); CPU rendering works with either"
        ) from exc
    return dali


class RenderError(RuntimeError):
    """DALI could not decode or render some image of the batch; the renderer stays usable."""


class Renderer:
    """Renders batches of views. Build once per process; ``render`` is called per batch."""

    _INPUTS = (
        "encoded",
        "anchor",
        "shape",
        "flip",
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "erase_anchor",
        "erase_shape",
    )

    def __init__(self, cfg: RenderConfig):
        if cfg.device not in ("cpu", "gpu"):
            raise ProteusError(f"renderer device must be cpu or gpu, not {cfg.device!r}")
        if cfg.revision not in REVISIONS:
            raise ProteusError(
                f"renderer revision {cfg.revision}: this proteus renders {REVISIONS} (a newer "
                "proteus wrote this cache?); upgrade proteus to read it"
            )
        if cfg.interpolation not in _INTERP or cfg.erase_mode not in ("const", "pixel"):
            raise ProteusError(
                f"renderer: interpolation {cfg.interpolation!r} / erase mode {cfg.erase_mode!r} "
                "unknown (a newer proteus wrote this cache?)"
            )
        self._ra_inputs = tuple(
            f"ra{layer}_{name}"
            for layer in range(cfg.randaug_layers)
            for name in ("kernel", "affine", "scalar", "bits", "kernel3")
        )
        self.cfg = cfg
        self._pipe = self._build()

    def _build(self):
        dali = _dali()
        fn, types = dali.fn, dali.types
        cfg = self.cfg
        gpu = cfg.device == "gpu"

        @dali.pipeline_def(
            batch_size=cfg.max_batch,
            num_threads=cfg.threads,
            device_id=cfg.device_id if gpu else None,
            # Fed and run one batch at a time: no prefetching of inputs we do not have yet.
            prefetch_queue_depth=1,
            exec_async=False,
            exec_pipelined=False,
            # RandAugment sends each sample to its own operation (DALI conditionals).
            enable_conditionals=bool(cfg.randaug_layers),
        )
        def pipeline():
            src = {name: fn.external_source(name=name) for name in self._INPUTS}
            ra = {name: fn.external_source(name=name) for name in self._ra_inputs}
            # ROI decode: only the crop is decoded (libjpeg-turbo / nvJPEG), source pixels.
            img = fn.decoders.image_slice(
                src["encoded"],
                src["anchor"],
                src["shape"],
                axis_names="WH",
                normalized_anchor=False,
                normalized_shape=False,
                output_type=types.RGB,
                device="mixed" if gpu else "cpu",
            )
            img = fn.resize(
                img,
                size=[cfg.image_size, cfg.image_size],
                interp_type=getattr(types, _INTERP[cfg.interpolation]),
                antialias=True,
            )
            img = fn.flip(img, horizontal=src["flip"])
            img = fn.color_twist(
                img,
                brightness=src["brightness"],
                contrast=src["contrast"],
                saturation=src["saturation"],
                hue=src["hue"],
            )
            if cfg.randaug_layers:
                from proteus.common.views.dali_ops import apply_randaugment

                # On the GPU the per-sample operands meet GPU images, so they move there;
                # the op choice (a condition) and the warp matrix (an argument) stay on CPU.
                on_data = ("scalar", "bits", "kernel3") if gpu else ()
                layers = [
                    {
                        name: ra[f"ra{layer}_{name}"].gpu()
                        if name in on_data
                        else ra[f"ra{layer}_{name}"]
                        for name in ("kernel", "affine", "scalar", "bits", "kernel3")
                    }
                    for layer in range(cfg.randaug_layers)
                ]
                img = apply_randaugment(img, layers, cfg.revision)
            img = fn.crop_mirror_normalize(
                img,
                mean=[255 * m for m in cfg.mean],
                std=[255 * s for s in cfg.std],
                dtype=types.FLOAT,
                output_layout="CHW",
            )
            if cfg.erase_mode == "pixel":
                return img  # noise is written after the pipeline (render)
            # Erase after normalising, with 0 = the mean colour (timm's "const" mode).
            return fn.erase(
                img,
                anchor=src["erase_anchor"],
                shape=src["erase_shape"],
                axis_names="HW",
                fill_value=0.0,
            )

        pipe = pipeline()
        pipe.build()
        return pipe

    def render(self, encoded: Sequence[np.ndarray], views: ViewTable) -> torch.Tensor:
        """``encoded[i]`` holds the file bytes of the image ``views[i]`` was drawn from."""
        n = len(views)
        if n != len(encoded):
            raise ValueError(f"{n} views but {len(encoded)} encoded images")
        if not 0 < n <= self.cfg.max_batch:
            raise ValueError(f"batch of {n} views; this renderer takes 1..{self.cfg.max_batch}")
        try:
            for name, column in self._feeds(encoded, views).items():
                self._pipe.feed_input(name, column)
            (out,) = self._pipe.run()
        except RuntimeError as exc:
            # A failed DALI pipeline is dead ("no longer valid"): build a fresh one so the
            # caller can retry the batch's images one by one and skip the bad file.
            self._pipe = self._build()
            raise RenderError(_dali_reason(exc)) from exc
        if self.cfg.device == "gpu":
            pixels = _gpu_to_torch(out, self.cfg.device_id)
        else:
            pixels = torch.from_numpy(np.array(out.as_tensor()))
        if self.cfg.erase_mode == "pixel":
            _erase_with_noise(pixels, views)
        return pixels

    def render_tolerant(
        self, encoded: Sequence[np.ndarray], views: ViewTable
    ) -> tuple[torch.Tensor | None, dict[int, str]]:
        """:meth:`render`, except that a batch DALI cannot render is retried one view at a
        time, so one bad file costs only its own views: the views that rendered (in order;
        None if none did), and by row, why each of the others could not."""
        try:
            return self.render(encoded, views), {}
        except RenderError:
            pass
        rendered, failed = [], {}
        for row in range(len(encoded)):
            try:
                rendered.append(self.render([encoded[row]], views[row : row + 1]))
            except RenderError as exc:
                failed[row] = str(exc)
        if not rendered:
            return None, failed
        return torch.cat([p.to(rendered[0].device) for p in rendered]), failed

    def _feeds(
        self, encoded: Sequence[np.ndarray], views: ViewTable
    ) -> dict[str, list[np.ndarray]]:
        y, x, h, w = views.crop.T.astype(np.float32)
        saturation = np.where(views.grayscale, 0.0, views.color[:, 2]).astype(np.float32)
        ey, ex, eh, ew = views.erase.T.astype(np.float32)
        columns = {
            "anchor": np.stack([x, y], 1),
            "shape": np.stack([w, h], 1),
            "flip": views.flip.astype(np.int32),
            "brightness": views.color[:, 0],
            "contrast": views.color[:, 1],
            "saturation": saturation,
            "hue": views.color[:, 3],
            "erase_anchor": np.stack([ey, ex], 1),
            "erase_shape": np.stack([eh, ew], 1),
        }
        feeds = {name: [np.ascontiguousarray(v) for v in col] for name, col in columns.items()}
        feeds["encoded"] = [np.asarray(e, dtype=np.uint8) for e in encoded]
        if self.cfg.erase_mode == "pixel":  # erased after the pipeline: no such inputs
            del feeds["erase_anchor"], feeds["erase_shape"]
        # Records with fewer layers than the renderer (e.g. none at all) skip the rest.
        ops = np.full((len(views), self.cfg.randaug_layers), NONE, np.int8)
        params = np.zeros(ops.shape, np.float32)
        have = min(self.cfg.randaug_layers, views.ra_op.shape[1])
        ops[:, :have], params[:, :have] = views.ra_op[:, :have], views.ra_param[:, :have]
        for layer in range(self.cfg.randaug_layers):
            inputs = layer_feeds(ops[:, layer], params[:, layer], self.cfg.image_size)
            feeds |= {f"ra{layer}_{name}": column for name, column in inputs.items()}
        return feeds


def _erase_with_noise(pixels: torch.Tensor, views: ViewTable) -> None:
    """timm's RandomErasing mode 'pixel': the box gets N(0, 1) noise in normalised units,
    drawn from the view's recorded seed (numpy's generator: the same on every machine)."""
    for row in np.flatnonzero(views.erase_seed):
        y, x, h, w = (int(v) for v in views.erase[row])
        noise = np.random.default_rng(int(views.erase_seed[row])).standard_normal(
            (pixels.shape[1], h, w), dtype=np.float32
        )
        pixels[row, :, y : y + h, x : x + w] = torch.from_numpy(noise).to(pixels.device)


def dali_version() -> str:
    """Recorded in the cache manifest: a different DALI may resample differently."""
    return _dali().__version__


def _dali_reason(exc: RuntimeError) -> str:
    """The informative line of DALI's multi-line error (e.g. "Failed to decode sample #0")."""
    lines = [line.strip(" :") for line in str(exc).splitlines()]
    useful = [line for line in lines if line.startswith(("Failed", "Error in"))]
    return (useful or [line for line in lines if line] or ["DALI error"])[-1]


def _gpu_to_torch(out, device_id: int) -> torch.Tensor:
    from nvidia.dali.plugin.pytorch import feed_ndarray

    dense = out.as_tensor()
    result = torch.empty(dense.shape(), dtype=torch.float32, device=f"cuda:{device_id}")
    feed_ndarray(dense, result, cuda_stream=torch.cuda.current_stream(device_id))
    return result
