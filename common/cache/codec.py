"""How a target is stored: float16/float32 as is, int8 with a scale per token, or PCA
coefficients (optionally int8 too). Encoding runs where the teacher runs, decoding where the
student runs (on its device), so compressed targets cost neither stage a CPU round trip.

int8 uses one scale per token (absmax / 127, itself stored as float16): a few outlier tokens
with large norms (registers, ViT "high-norm" tokens) would ruin one scale per tensor. PCA keeps
the first K principal directions of a target's tokens, fitted on a sample of views when the
cache is created.

PCA coefficients are outlier-heavy by construction (the first few carry most of the variance),
so one absmax scale per token rounds the small ones away. PCA + int8 therefore stores the
coefficients in a rotated basis (:func:`rotation`: a randomised Hadamard, as PHI-S rotates
before quantising), which spreads every token's energy over all K: the rotation is folded
into the stored basis, so the basis rows stay orthonormal and decoding is unchanged.

A codec owns its fitted state (``TargetCodec.fitted``: PCA's mean and basis), so callers
encode and decode without knowing which codec needs what: the cache reader hands out codecs
with their state loaded, and the layout stores any codec's state as named arrays
(``pca/<name>_<array>``, the group's name since format 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from proteus.common.cache.manifest import Encoding, Manifest

STORAGE_KINDS = ("float16", "float32", "int8")


@dataclass(frozen=True)
class PCABasis:
    mean: torch.Tensor  # (D,) float32
    components: torch.Tensor  # (K, D) float32, orthonormal rows

    def to(self, device) -> PCABasis:
        return PCABasis(self.mean.to(device), self.components.to(device))

    def arrays(self) -> dict[str, torch.Tensor]:
        """The state as named arrays, as the cache stores it."""
        return {"mean": self.mean, "basis": self.components}

    @classmethod
    def from_arrays(cls, arrays: dict[str, torch.Tensor]) -> PCABasis:
        return cls(arrays["mean"], arrays["basis"])


@dataclass(frozen=True)
class TargetCodec:
    name: str  # target name: cls, patch, layer_<i>
    shape: tuple[int, ...]  # logical per-view shape, e.g. (N, D)
    kind: str  # float16 | float32 | int8
    pca_k: int | None = None  # store K PCA coefficients per token instead of D values
    # Fitted state, when the codec has one (PCA): set with fit(), moved with to().
    fitted: PCABasis | None = field(default=None, compare=False, repr=False)

    @property
    def needs_fitting(self) -> bool:
        return bool(self.pca_k)

    def fit(self, fitted: PCABasis | None) -> TargetCodec:
        return replace(self, fitted=fitted)

    @property
    def state_keys(self) -> tuple[str, ...]:
        """Names of the fitted arrays the cache stores for this codec."""
        return ("mean", "basis") if self.pca_k else ()

    def state_arrays(self) -> dict[str, torch.Tensor]:
        return self._state().arrays() if self.needs_fitting else {}

    def with_state_arrays(self, arrays: dict[str, torch.Tensor]) -> TargetCodec:
        return self.fit(PCABasis.from_arrays(arrays)) if self.needs_fitting else self

    def to(self, device) -> TargetCodec:
        return self if self.fitted is None else replace(self, fitted=self.fitted.to(device))

    def _state(self) -> PCABasis:
        if self.fitted is None:
            raise ValueError(f"{self.name}: a PCA codec needs its fitted basis (fit())")
        return self.fitted

    @classmethod
    def from_manifest(cls, name: str, shape, encoding: Encoding) -> TargetCodec:
        return cls(name, tuple(shape), encoding.kind, encoding.pca_k)

    @classmethod
    def of(cls, manifest: Manifest, name: str) -> TargetCodec:
        """Target ``name``'s codec as the manifest describes it (no fitted state)."""
        return cls.from_manifest(name, manifest.targets[name], manifest.encoding[name])

    def to_manifest(self) -> Encoding:
        return Encoding(self.kind, self.pca_k)

    @property
    def stored_shape(self) -> tuple[int, ...]:
        return (*self.shape[:-1], self.pca_k) if self.pca_k else self.shape

    def arrays(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Stored arrays under targets/: name -> (per-view shape, dtype)."""
        if self.kind == "int8":
            return {
                self.name: (self.stored_shape, "int8"),
                f"{self.name}_scale": (self.stored_shape[:-1], "float16"),
            }
        return {self.name: (self.stored_shape, self.kind)}

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = x.float()
        if self.pca_k:
            pca = self._state()
            x = (x - pca.mean) @ pca.components.T
        if self.kind == "int8":
            # The scale is rounded to its stored float16 first, so decode uses the same one.
            scale = (x.abs().amax(-1) / 127).clamp_min(1e-12).to(torch.float16)
            q = torch.round(x / scale.float().unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
            return {self.name: q, f"{self.name}_scale": scale}
        return {self.name: x.to(getattr(torch, self.kind))}

    def decode_coefficients(self, stored: dict[str, torch.Tensor]) -> torch.Tensor:
        """The stored values as float, before any PCA basis (a PCA codec: its K
        coefficients, what training in coefficient space reads)."""
        x = stored[self.name].float()
        if self.kind == "int8":
            x = x * stored[f"{self.name}_scale"].float().unsqueeze(-1)
        return x

    def decode(self, stored: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.decode_coefficients(stored)
        if self.pca_k:
            pca = self._state()
            x = x @ pca.components + pca.mean
        return x

    def bytes_per_view(self) -> int:
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in self.arrays().values())


class PCAAccumulator:
    """Running sums of tokens and their outer products (float64), for a streamed PCA."""

    def __init__(self):
        self.count = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def update(self, tokens: torch.Tensor) -> None:
        x = tokens.double().cpu()
        if self.total is None or self.outer is None:
            self.total = torch.zeros(x.shape[1], dtype=torch.float64)
            self.outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        self.count += len(x)
        self.total = self.total + x.sum(0)
        self.outer = self.outer + x.T @ x

    def eigen(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, eigenvalues (descending) and eigenvectors (columns) of the covariance."""
        if self.total is None or self.outer is None:
            raise ValueError("PCA: no tokens were given to fit on")
        mean = self.total / self.count
        cov = (self.outer - self.count * torch.outer(mean, mean)) / max(1, self.count - 1)
        values, vectors = torch.linalg.eigh(cov)
        order = values.argsort(descending=True)
        return mean, values[order].clamp_min(0), vectors[:, order]

    def basis(self, k: int) -> tuple[PCABasis, float]:
        """The top-k basis, and the share of variance it keeps."""
        mean, values, vectors = self.eigen()
        kept = float(values[:k].sum() / values.sum().clamp_min(1e-30))
        return PCABasis(mean.float(), vectors[:, :k].T.contiguous().float()), kept


def rotation(k: int, seed: int) -> tuple[torch.Tensor, str]:
    """A fixed K×K orthogonal matrix and its kind: a randomised Hadamard (H·diag(±1)/√K, the
    signs seeded) when K is a power of two, else a seeded random orthogonal matrix (QR of a
    Gaussian, signs fixed so it is unique)."""
    generator = torch.Generator().manual_seed(seed)
    if k & (k - 1) == 0:
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < k:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        signs = torch.randint(0, 2, (k,), generator=generator).double() * 2 - 1
        return (h * signs / k**0.5).float(), "hadamard"
    q, r = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float(), "orthogonal"


def rotated(basis: PCABasis, seed: int) -> tuple[PCABasis, str]:
    """The same subspace with its coefficients rotated (:func:`rotation`): rows R·components,
    still orthonormal, so encode and decode stay as they are."""
    r, kind = rotation(basis.components.shape[0], seed)
    return PCABasis(basis.mean, (r @ basis.components).contiguous()), kind


def fidelity(codec: TargetCodec, tokens: torch.Tensor) -> dict[str, float]:
    """How well a fitted ``codec`` keeps (M, D) tokens it was not fitted on: the mean and
    1st-percentile cosine of each token with its decoded self, and the share of the
    tokens' variance the decoded ones keep (int8 rounding included)."""
    x = tokens.float()
    decoded = codec.decode(codec.encode(x))
    cosine = torch.nn.functional.cosine_similarity(decoded, x, dim=-1).double()
    spread = ((x - x.mean(0)) ** 2).sum().double().clamp_min(1e-30)
    return {
        "cosine_mean": float(cosine.mean()),
        "cosine_p1": float(torch.quantile(cosine, 0.01)),
        "variance_kept": float(1 - ((x - decoded) ** 2).sum().double() / spread),
        "tokens": len(x),
    }


def fit_pca(tokens: torch.Tensor, k: int) -> tuple[PCABasis, float]:
    """Top-k principal directions of (M, D) tokens; also the share of variance they keep."""
    acc = PCAAccumulator()
    acc.update(tokens)
    return acc.basis(k)


def components_for(tokens: torch.Tensor, share: float) -> int:
    """Smallest K keeping ``share`` of the variance (B5 reports K for 99%)."""
    acc = PCAAccumulator()
    acc.update(tokens)
    values = acc.eigen()[1]
    cumulative = values.cumsum(0) / values.sum()
    return int((cumulative < share).sum()) + 1
