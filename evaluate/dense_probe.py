"""``run_seg`` and ``run_depth``: DINOv2's linear dense probes on a frozen model's features.

Training streams: every iteration a background thread reads and augments a batch of image and
map pairs, the frozen model turns the pixels into patch maps, and only the head learns; no
split's features are ever held (so ADE20K's 20k images need no more memory than a batch).
Evaluation slides windows of the model's input size over each validation image resized so its
short side is that size (mmseg's "slide" mode, stride 2/3 of the window), averages overlapping
predictions and upsamples them to the map's own resolution, where the metric is counted.

Protocol settings are DINOv2's evaluation configs (ADE20K linear; NYU-Depth v2 linear); the
students and teachers proteus knows take square inputs of one size, so the windows are squares
of that size (DINOv2 uses 512 × 512 for ADE20K and feeds NYU's whole 480 × 640 image).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from proteus.common.runtime.distributed import resolve_device
from proteus.common.runtime.errors import ProteusError
from proteus.common.runtime.prefetch import prefetch
from proteus.common.runtime.progress import progress_bar
from proteus.evaluate.config import DenseConfig
from proteus.evaluate.dense_heads import (
    DepthHead,
    DepthMetric,
    SegHead,
    SegMetric,
    depth_loss,
    seg_loss,
)
from proteus.evaluate.dense_sets import DepthSet, SegSet, find_depth, find_seg
from proteus.evaluate.models import FeatureSource, load_source


@dataclass(frozen=True)
class Protocol:
    iterations: int
    batch_size: int  # DINOv2's 2 per GPU × 8 GPUs
    lr: float
    weight_decay: float
    warmup: float  # share of the iterations with a linear warm-up
    warmup_ratio: float  # the warm-up's first lr, as a share of lr
    schedule: str  # "poly" (power 1) or "cosine", after the warm-up
    grad_clip: float | None


# ade20k_linear_config: AdamW 1e-3, wd 1e-4, poly, 1,500 warm-up iterations of 40,000.
SEG = Protocol(40_000, 16, 1e-3, 1e-4, 1_500 / 40_000, 1e-6, "poly", None)
# nyu_linear_config: AdamW 5e-3, wd 0.01, cosine, 12,800 warm-up iterations of 38,400,
# gradients clipped at norm 35.
DEPTH = Protocol(38_400, 16, 5e-3, 1e-2, 12_800 / 38_400, 1e-3, "cosine", 35.0)
SEG_SCALES = (0.5, 2.0)  # training resize ratio range (mmseg Resize ratio_range)
CAT_MAX_RATIO = 0.75  # RandomCrop: retry crops where one class covers more than this
MS_RATIOS = (1.0, 1.32, 1.73, 2.28, 3.0)  # the +ms variant's test scales (with flips)
WINDOW_STRIDE = 2 / 3  # mmseg slide inference: 341 of 512
PICTURED = 4  # validation images in --pictures


def lr_at(protocol: Protocol, iteration: int, iterations: int) -> float:
    """The learning rate of an iteration (0-based), warm-up included (mmcv's rules)."""
    progress = iteration / iterations
    if protocol.schedule == "poly":
        lr = protocol.lr * (1 - progress)
    else:
        lr = protocol.lr * 0.5 * (1 + math.cos(math.pi * progress))
    warm = round(protocol.warmup * iterations)
    if iteration < warm:
        lr *= 1 - (1 - iteration / warm) * (1 - protocol.warmup_ratio)
    return lr


def run_seg(cfg: DenseConfig, source: FeatureSource | None = None) -> dict:
    """``source``: a model already built (else the one ``cfg.source`` names)."""
    train = find_seg(cfg.data, "train", classes=cfg.classes, ignore_index=cfg.ignore_index)
    val = find_seg(cfg.data, "val", classes=train.classes, ignore_index=cfg.ignore_index)
    probe = _Probe(cfg, SEG, source)
    channels = probe.channels(lambda m, c: m.shape[1])
    torch.manual_seed(cfg.seed)
    head = SegHead(channels, train.classes)

    def loss(pixels, target, iteration):
        maps = [m for m, _ in probe.source.dense(pixels, cfg.blocks)]
        logits = head(maps, target.shape[-2:])
        return seg_loss(logits, target, train.ignore_index)

    samples = _SegSamples(train, probe.crop)
    probe.fit(head, samples, loss)
    metric = SegMetric(train.classes, train.ignore_index)
    ratios = MS_RATIOS if cfg.multiscale else (1.0,)
    flips = (False, True) if cfg.multiscale else (False,)
    bar = progress_bar(total=len(val), desc="seg val", unit="img", disable=not cfg.progress)
    for i, scores in probe.predict(
        val,
        lambda pixels: head(
            [m for m, _ in probe.source.dense(pixels, cfg.blocks)], pixels.shape[-2:]
        ).softmax(1),
        train.classes,
        ratios,
        flips,
    ):
        pred, label = scores.argmax(0).numpy(), val.label(i)
        metric.update(pred, label)
        probe.keep(i, val.image, label, pred)
        bar.update(1)
    bar.close()
    probe.draw("seg")
    return {
        "model": probe.source.name,
        "task": "seg",
        **metric.result(),
        "classes": train.classes,
        "blocks": cfg.blocks,
        "multiscale": cfg.multiscale,
        **probe.facts(len(train), len(val)),
    }


def run_depth(cfg: DenseConfig, source: FeatureSource | None = None) -> dict:
    train, val = (
        find_depth(
            cfg.data,
            split,
            depth_scale=cfg.depth_scale,
            min_depth=cfg.min_depth,
            max_depth=cfg.max_depth,
        )
        for split in ("train", "val")
    )
    probe = _Probe(cfg, DEPTH, source)
    channels = probe.channels(lambda m, c: m.shape[1] + c.shape[1])
    torch.manual_seed(cfg.seed)
    head = DepthHead(channels, cfg.min_depth, cfg.max_depth)

    def loss(pixels, target, iteration):
        pred = head(probe.source.dense(pixels, cfg.blocks), target.shape[-2:])
        return depth_loss(pred, target.unsqueeze(1), iteration)

    probe.fit(head, _DepthSamples(train, probe.crop), loss)
    metric = DepthMetric()
    flips = (False, True) if cfg.flip_test else (False,)
    bar = progress_bar(total=len(val), desc="depth val", unit="img", disable=not cfg.progress)
    for i, depth in probe.predict(
        val,
        lambda pixels: head(probe.source.dense(pixels, cfg.blocks), pixels.shape[-2:]),
        1,
        (1.0,),
        flips,
    ):
        target = val.depth(i)
        metric.update(depth[0].numpy(), target, val.eval_mask(target.shape))
        probe.keep(i, val.image, target, depth[0].numpy())
        bar.update(1)
    bar.close()
    probe.draw("depth")
    return {
        "model": probe.source.name,
        "task": "depth",
        **metric.result(),
        "blocks": cfg.blocks,
        "flip_test": cfg.flip_test,
        "eval_crop": val.layout == "nyu",
        **probe.facts(len(train), len(val)),
    }


class _Probe:
    """The frozen source, the protocol's optimiser and schedule, and sliding-window inference."""

    def __init__(self, cfg: DenseConfig, protocol: Protocol, source: FeatureSource | None):
        if cfg.blocks not in (1, 4):
            raise ProteusError(f"--blocks {cfg.blocks}: DINOv2's probes read 1 or 4 blocks")
        self.cfg, self.device = cfg, resolve_device(cfg.device)
        self.source = source or load_source(**asdict(cfg.source), blocks=cfg.blocks)
        self.source.model.to(self.device).eval()
        self.crop = self.source.image_size
        self.protocol = protocol
        self.iterations = cfg.iterations or protocol.iterations
        self.batch = cfg.batch_size or protocol.batch_size
        self.lr = cfg.lr or protocol.lr
        self.shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.mean = torch.tensor(self.source.mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(self.source.std).view(1, 3, 1, 1) * 255

    def keep(self, i: int, image, truth: np.ndarray, pred: np.ndarray) -> None:
        """Hold the first few validation images (``image(i)`` reads one) and their
        predictions for the picture."""
        if self.cfg.pictures is not None and i < PICTURED:
            self.shown.append((image(i), truth, pred))

    def draw(self, task: str) -> None:
        if self.cfg.pictures is not None and self.shown:
            from proteus.evaluate.viz import plot_dense

            plot_dense(task, self.shown, self.cfg.pictures, f"{task} probe: {self.source.name}")

    def channels(self, width) -> int:
        """The head's input width, from one forward of a blank input."""
        blank = torch.zeros(1, 3, self.crop, self.crop, device=self.device)
        return sum(width(m, c) for m, c in self.source.dense(blank, self.cfg.blocks))

    def pixels(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 → the model's normalised (B, 3, H, W) on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        return ((x - self.mean) / self.std).to(self.device)

    def fit(self, head: torch.nn.Module, samples, loss) -> None:
        head.to(self.device).train()
        protocol, iterations = self.protocol, self.iterations
        optimizer = torch.optim.AdamW(
            head.parameters(), lr=self.lr, weight_decay=protocol.weight_decay
        )
        bar = progress_bar(
            total=iterations, desc=f"{samples.task} probe", unit="it", disable=not self.cfg.progress
        )
        batches = prefetch(samples.batches(self.batch, iterations, self.cfg.seed), depth=3)
        try:
            for iteration, (images, targets) in enumerate(batches):
                for group in optimizer.param_groups:  # the protocol's shape, scaled to --lr
                    group["lr"] = lr_at(protocol, iteration, iterations) * self.lr / protocol.lr
                value = loss(
                    self.pixels(images), torch.from_numpy(targets).to(self.device), iteration
                )
                if not torch.isfinite(value):
                    raise ProteusError(
                        f"{samples.task} probe: the loss is {value.item()} at iteration "
                        f"{iteration}; lower --lr"
                    )
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                if protocol.grad_clip:
                    torch.nn.utils.clip_grad_norm_(head.parameters(), protocol.grad_clip)
                optimizer.step()
                bar.update(1)
                if iteration % 20 == 0:
                    bar.set_postfix(loss=f"{value.item():.4f}")
        finally:
            bar.close()
        head.eval()

    @torch.no_grad()
    def predict(
        self, split, forward, channels: int, ratios: tuple[float, ...], flips: tuple[bool, ...]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, (channels, H, W) prediction at the map's resolution) per image: at each
        scale the windows' outputs (and their mirrored twins') averaged where they overlap,
        resized to the map, then averaged over the scales."""

        def prepared() -> Iterator[tuple[int, tuple[int, int], list]]:
            for i in range(len(split)):
                image = split.image(i)
                yield (
                    i,
                    image.shape[:2],
                    [(r, *w) for r in ratios for w in _windows(image, self.crop, r)],
                )

        for i, shape, windows in prefetch(prepared(), depth=2):
            jobs = [(w, flip) for w in windows for flip in flips]
            sums: dict[float, torch.Tensor] = {}
            counts: dict[float, torch.Tensor] = {}
            for start in range(0, len(jobs), self.batch):
                chunk = jobs[start : start + self.batch]
                crops = np.stack(
                    [pixels[:, ::-1] if flip else pixels for (_, pixels, _), flip in chunk]
                )
                out = forward(self.pixels(crops)).float().cpu()
                for k, ((ratio, _, (y, x, size)), flip) in enumerate(chunk):
                    if ratio not in sums:
                        sums[ratio] = torch.zeros(channels, *size)
                        counts[ratio] = torch.zeros(1, *size)
                    pred = out[k].flip(-1) if flip else out[k]
                    sums[ratio][:, y : y + self.crop, x : x + self.crop] += pred
                    counts[ratio][:, y : y + self.crop, x : x + self.crop] += 1
            total = torch.zeros(channels, *shape)
            for ratio, summed in sums.items():
                mean = (summed / counts[ratio].clamp_min(1)).unsqueeze(0)
                total += F.interpolate(mean, size=shape, mode="bilinear", align_corners=False)[0]
            yield i, total / len(sums)

    def facts(self, train: int, val: int) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "batch_size": self.batch,
            "lr": self.lr,
            "window": self.crop,
            "train_images": train,
            "val_images": val,
        }


def _windows(image: np.ndarray, crop: int, ratio: float):
    """Windows of ``crop`` over the image resized to short side ``crop`` × ``ratio``: each
    window's pixels and where it lies (offsets, the resized size)."""
    h, w = image.shape[:2]
    scale = crop * ratio / min(h, w)
    size = (max(crop, round(h * scale)), max(crop, round(w * scale)))
    resized = np.asarray(Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR))
    stride = max(1, round(crop * WINDOW_STRIDE))
    for y in _starts(size[0], crop, stride):
        for x in _starts(size[1], crop, stride):
            yield resized[y : y + crop, x : x + crop], (y, x, size)


def _starts(length: int, crop: int, stride: int) -> list[int]:
    count = max(length - crop + stride - 1, 0) // stride + 1
    return sorted({min(k * stride, length - crop) for k in range(count)})


class _Samples:
    """Batches of augmented training pairs, drawn epoch by epoch; a subclass says how one pair
    is made (``sample``) and salts the seed so the two tasks draw different streams."""

    task: str
    salt: int

    def __init__(self, split, crop: int):
        self.split, self.crop = split, crop

    def batches(
        self, batch: int, iterations: int, seed: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, self.salt]))
        for rows in _rows(len(self.split), batch, iterations, rng):
            pairs = [self.sample(int(r), rng) for r in rows]
            yield np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class _SegSamples(_Samples):
    """Training pairs the ADE20K way: the short side resized to the window × a ratio in
    [0.5, 2], a random window-sized crop (retried up to 10 times while one class covers more
    than 75% of it), padded with the ignore index where the image is smaller, a flip with p
    0.5 and mmseg's photometric distortion (brightness ±32, contrast and saturation × [0.5,
    1.5], hue ±18°, each with p 0.5)."""

    task, salt = "seg", 31
    split: SegSet

    def sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, label = self.split.image(i), self.split.label(i)
        ignore = self.split.ignore_index
        h, w = label.shape
        scale = self.crop * rng.uniform(*SEG_SCALES) / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        label = _resize_nearest(label, size)
        for _ in range(10):
            y, x = _corner(label.shape, self.crop, rng)
            window = label[y : y + self.crop, x : x + self.crop]
            _, counts = np.unique(window[window != ignore], return_counts=True)
            if len(counts) > 1 and counts.max() / counts.sum() < CAT_MAX_RATIO:
                break
        image, label = image[y : y + self.crop, x : x + self.crop], window
        image, label = _pad(image, self.crop, 0), _pad(label, self.crop, ignore)
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return _photometric(image, rng), np.ascontiguousarray(label)


class _DepthSamples(_Samples):
    """Training pairs the NYU way: a rotation of up to ±2.5° with p 0.5, a flip with p 0.5, a
    random window-sized crop of the image resized to short side = the window (NYU's 416 × 544
    crop of 480 × 640 at native scale, on square inputs), and the colour augmentation (gamma
    × [0.9, 1.1], brightness × [0.75, 1.25], per-channel colour × [0.9, 1.1]) with p 0.5."""

    task, salt = "depth", 37
    split: DepthSet

    def sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, depth = self.split.image(i), self.split.depth(i)
        if rng.random() < 0.5:
            angle = float(rng.uniform(-2.5, 2.5))
            image = np.asarray(Image.fromarray(image).rotate(angle, Image.Resampling.BILINEAR))
            depth = np.asarray(Image.fromarray(depth).rotate(angle, Image.Resampling.NEAREST))
        if rng.random() < 0.5:
            image, depth = image[:, ::-1], depth[:, ::-1]
        h, w = depth.shape
        scale = self.crop / min(h, w)
        size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
        image = np.asarray(
            Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)
        )
        depth = _resize_nearest(np.ascontiguousarray(depth), size)
        y, x = _corner(depth.shape, self.crop, rng)
        image, depth = (
            image[y : y + self.crop, x : x + self.crop],
            depth[y : y + self.crop, x : x + self.crop],
        )
        if rng.random() < 0.5:
            light = image.astype(np.float32) / 255
            light = light ** rng.uniform(0.9, 1.1) * rng.uniform(0.75, 1.25)
            light = light * rng.uniform(0.9, 1.1, 3)
            image = np.clip(light * 255, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(image), np.ascontiguousarray(depth, dtype=np.float32)


def _rows(n: int, batch: int, iterations: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """``iterations`` batches drawn epoch by epoch from shuffled orders (incomplete batches
    dropped, as the protocols' samplers do, unless the split is smaller than one batch)."""
    order = np.empty(0, np.int64)
    for _ in range(iterations):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(n)])
            while len(order) < batch:
                order = np.concatenate([order, rng.permutation(n)])
        yield order[:batch]
        order = order[batch:]


def _corner(shape: tuple[int, ...], crop: int, rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, max(shape[0] - crop, 0) + 1)), int(
        rng.integers(0, max(shape[1] - crop, 0) + 1)
    )


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a label or depth map (W, H ``size``) by nearest neighbour."""
    h, w = array.shape
    rows = np.minimum((np.arange(size[1]) + 0.5) * h / size[1], h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size[0]) + 0.5) * w / size[0], w - 1).astype(np.int64)
    return array[rows[:, None], cols[None, :]]


def _pad(array: np.ndarray, crop: int, value) -> np.ndarray:
    h, w = array.shape[:2]
    if h >= crop and w >= crop:
        return array
    out = np.full((crop, crop, *array.shape[2:]), value, array.dtype)
    out[:h, :w] = array
    return out


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import torchvision.transforms.v2.functional as TF

    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()  # a writable copy
    if rng.random() < 0.5:
        x = x + rng.uniform(-32, 32)
    if rng.random() < 0.5:
        x = x * rng.uniform(0.5, 1.5)
    x = x.clamp(0, 255) / 255
    if rng.random() < 0.5:
        x = TF.adjust_saturation(x, float(rng.uniform(0.5, 1.5)))
    if rng.random() < 0.5:
        x = TF.adjust_hue(x, float(rng.uniform(-18, 18)) / 360)
    return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
