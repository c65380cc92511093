"""Scoring generated images against real ones: FID with a bootstrap interval, and KID.

Features. Every score is computed in the feature space of a named extractor
(:class:`FeatureExtractor`), and the score carries that name:

- ``classifier`` (the default on ``fmnist``): the 128-d penultimate layer of the small CNN the
  suite trains on the Fashion-MNIST training split (:mod:`spdbench.classifier`), named
  ``fmnist-cnn-<hash of its training configuration>``;
- ``inception`` (the default on ``cifar10``): clean-fid's ``clean`` mode, run by clean-fid's own
  code (PIL bicubic resize to 299×299 in float, then the 2048-d pool features of the TorchScript
  Inception-v3 of the TensorFlow FID), named ``inception-clean``. Its weights file
  ``inception-2015-12-05.pt`` comes from the ``weights`` argument, else
  ``$SPDBENCH_INCEPTION_WEIGHTS``, else the cache, where clean-fid's downloader fetches it once.

Scores, with features X (n generated) and Y (m reference), all in float64:

- FID = |μ_X − μ_Y|² + Tr Σ_X + Tr Σ_Y − 2 Tr (Σ_Y^{1/2} Σ_X Σ_Y^{1/2})^{1/2}, the Fréchet
  distance of the Gaussian fits (means, covariances with 1/(n−1)). Tr (Σ_Y^{1/2} Σ_X Σ_Y^{1/2})^{1/2}
  equals the usual Tr (Σ_X Σ_Y)^{1/2}; written this way the matrix is symmetric positive
  semi-definite, so its eigenvalues come from ``eigvalsh``, real by construction (rounding
  negatives clamped to 0), and Σ_Y^{1/2} is computed once per reference.
- KID = the unbiased MMD² with the kernel k(x, y) = (xᵀy / d + 1)³ (Bińkowski et al. 2018),
  averaged over ``subsets`` random pairs of subsets of size s = min(subset_size, n, m):
  MMD²_u = Σ_{i≠j} k(x_i, x_j) / s(s−1) + Σ_{i≠j} k(y_i, y_j) / s(s−1) − 2 Σ_{i,j} k(x_i, y_j) / s²,
  reported with the standard deviation of the subset values.
- The FID interval: B bootstrap resamples of the generated features (n draws with replacement,
  the reference fixed), their FIDs F*_b, and the bias-corrected percentile interval
  [q_{2.5%}(F*) − β, q_{97.5%}(F*) − β] with β = mean(F*) − FID. FID is biased upwards by a term
  that shrinks like 1/n, and a resample (about 63 % distinct images) carries a larger one, so the
  plain percentile interval can sit entirely above the estimate, as it does near the floor.
  Shifting by the bootstrap's estimate of that bias keeps the bootstrap's spread, which estimates
  the sampling variability of FID at this n given the reference. Checked on Gaussian features
  (tests/test_metrics.py): over independent generated sets, it covers the mean FID at that n
  most of the time (more than 95 % near the floor, somewhat less far from it), where the plain
  percentile interval almost never does near the floor. Read it as the size of the sampling
  noise, not as an exact 95 % guarantee, and not as an interval for a bias-free FID: compare FIDs
  only at equal sample counts, next to the floor.

The reference: ``REFERENCE_COUNTS`` training images: all 50,000 for CIFAR-10, the papers' FID
protocol; 10,000 for Fashion-MNIST, where the CPU budget scores a few hundred samples.

The floor (:func:`floor_score`): held-out real images (the test split) scored against the same
reference at the same sample count; what a perfect generator would get. When the samples
outnumber the test split (50,000 CIFAR-10 samples, 10,000 test images) it uses the whole split
and says so in its sample count: FID shrinks as the count grows, so that floor is an upper
bound of the floor at the samples' count.

Reference features (``count`` images of a split, chosen by a fixed seeded permutation, so smaller
counts are subsets of larger ones) are cached per extractor, dataset, split and count in
``$SPDBENCH_CACHE/features/`` (default ``~/.cache/spdbench``), written atomically; a missing or
unreadable file is recomputed.

Why not torchmetrics' ``FrechetInceptionDistance``/``KernelInceptionDistance`` with a custom
feature module: they keep the reference inside the metric's state (fed through the network on every
run, where here it is cached on disk once), the bootstrap would need 200 metric updates per score,
and KID draws its subsets from the global torch RNG, which cannot be seeded without changing global
state. The formulas are the same: the tests check these scores against torchmetrics' FID (with an
identity feature module), its unbiased MMD² and clean-fid's ``frechet_distance``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.client
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from cleanfid import downloads_helper
from cleanfid.inception_torchscript import InceptionV3W
from cleanfid.resize import build_resizer
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file
from torch import Tensor

from spdbench.classifier import MIN_TEST_ACCURACY, ClassifierConfig, load_classifier
from spdbench.data import DATASETS, _one_line, image_shape, iterate_batches, load_uint8
from spdbench.errors import UserError
from spdbench.files import cache_dir, write_atomically
from spdbench.progress import progress_bar

FEATURES: tuple[str, ...] = ("classifier", "inception")
DEFAULT_FEATURES: dict[str, str] = {"fmnist": "classifier", "cifar10": "inception"}
REFERENCE_COUNTS: dict[str, int] = {"fmnist": 10_000, "cifar10": 50_000}
REFERENCE_SPLIT = "train"
HELD_OUT_SPLIT = "test"
SUBSET_SEED = 0
"""Seeds the permutation that picks which images of a split are the reference or the held-out set."""

INCEPTION_FILE = "inception-2015-12-05.pt"
"""The file name clean-fid's InceptionV3W loads from a directory."""
INCEPTION_ENV = "SPDBENCH_INCEPTION_WEIGHTS"
_INCEPTION_HOW = (
    f"download {downloads_helper.inception_url} and set {INCEPTION_ENV} to its path "
    f"(the file must keep the name {INCEPTION_FILE})"
)


class FeatureExtractor(Protocol):
    """A named map from uint8 images N×C×H×W to float64 features N×F (batched, no gradient)."""

    name: str
    weights: str  #: what identifies the weights: cached features are used only with the same weights

    def features(self, images: Tensor) -> Tensor:
        """The float64 N×F features (on the CPU) of uint8 ``images`` N×C×H×W."""
        ...


class ClassifierFeatures:
    """The penultimate layer of the suite's Fashion-MNIST classifier (trained and cached on first
    use; see :mod:`spdbench.classifier`). ``test_accuracy`` is its accuracy on the test split."""

    def __init__(
        self,
        config: ClassifierConfig = ClassifierConfig(),
        device: str = "cpu",
        batch_size: int = 1000,
        min_accuracy: float = MIN_TEST_ACCURACY,
    ) -> None:
        network, info = load_classifier(config, min_accuracy)
        self.name = config.name
        self.weights = hashlib.sha256(save(network.state_dict())).hexdigest()
        self.test_accuracy = info.test_accuracy
        self.network = network.to(device)
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """The ``hidden``-dimensional features (after ReLU) of uint8 images N×1×28×28."""
        _check_images(images, image_shape("fmnist"))
        batches = iterate_batches(images, self.batch_size, shuffle=False, drop_last=False)
        return torch.cat([self.network.embed(batch.to(self.device)).double().cpu() for batch in batches])


class InceptionFeatures:
    """clean-fid's ``clean``-mode Inception features (2048-d): each image is resized by clean-fid's
    resizer (PIL bicubic, in float, to 299×299; grey images repeated to 3 channels) and fed to
    clean-fid's InceptionV3W, loaded from ``inception_weights(weights)``."""

    name = "inception-clean"
    weights = INCEPTION_FILE

    def __init__(self, weights: Path | None = None, device: str = "cpu", batch_size: int = 50) -> None:
        path = inception_weights(weights)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
                model = InceptionV3W(str(path.parent), download=False, resize_inside=False)
        except (RuntimeError, ValueError, OSError) as error:
            reason = _one_line(error)
            raise UserError(f"cannot load the Inception weights {path} ({reason}); {_INCEPTION_HOW}") from error
        self.model = model.to(device).eval()
        self.resize = build_resizer("clean")
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, images: Tensor) -> Tensor:
        """The 2048-d features of uint8 images N×C×H×W with C = 1 or 3."""
        _check_images(images, None)
        out = []
        with progress_bar("scoring: Inception features", len(images)) as bar:
            for batch in iterate_batches(images, self.batch_size, shuffle=False, drop_last=False):
                # N×H×W×3 uint8 arrays, as clean-fid reads image files
                arrays = batch.cpu().expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
                resized = np.stack([self.resize(array) for array in arrays])  # N×299×299×3 float32 in [0, 255]
                out.append(self.model(torch.from_numpy(resized).permute(0, 3, 1, 2).to(self.device)).double().cpu())
                bar.advance(len(batch))
        return torch.cat(out)


def inception_weights(weights: Path | None = None) -> Path:
    """The path of ``inception-2015-12-05.pt``: ``weights`` (the file or its directory), else
    ``$SPDBENCH_INCEPTION_WEIGHTS``, else ``$SPDBENCH_CACHE/inception/``, where clean-fid's
    downloader fetches it (into a temporary directory, renamed into place once complete)."""
    given = weights if weights is not None else os.environ.get(INCEPTION_ENV) or None
    if given is not None:
        path = Path(given)
        path = path / INCEPTION_FILE if path.is_dir() else path
        if path.name != INCEPTION_FILE:
            raise UserError(f"the Inception weights {path} must be named {INCEPTION_FILE}, the name clean-fid loads")
        if not path.is_file():
            raise UserError(f"Inception weights {path} not found; {_INCEPTION_HOW}")
        return path
    path = cache_dir() / "inception" / INCEPTION_FILE
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as temporary:
            os.replace(downloads_helper.check_download_inception(fpath=temporary), path)
    except (OSError, http.client.HTTPException) as error:
        raise UserError(
            f"no Inception weights given and downloading them failed ({_one_line(error)}); {_INCEPTION_HOW}"
        ) from error
    return path


def feature_extractor(name: str, dataset: str, device: str = "cpu") -> FeatureExtractor:
    """The extractor ``name`` (one of ``FEATURES``, or ``default``: ``DEFAULT_FEATURES[dataset]``)
    for images of ``dataset``. The classifier exists only for ``fmnist``."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; valid names: {', '.join(DATASETS)}")
    name = DEFAULT_FEATURES[dataset] if name == "default" else name
    if name == "classifier":
        if dataset != "fmnist":
            raise UserError(f"the classifier features are trained on fmnist, not {dataset}; use inception")
        return ClassifierFeatures(device=device)
    if name == "inception":
        return InceptionFeatures(device=device)
    raise UserError(f"unknown features {name!r}; valid: default, {', '.join(FEATURES)}")


# Scores from features


@dataclass(frozen=True)
class Gaussian:
    """The Gaussian fit of a set of features: float64 mean (F) and covariance (F×F, 1/(n−1))."""

    mean: Tensor
    cov: Tensor

    @classmethod
    def fit(cls, features: Tensor) -> Gaussian:
        """The mean and unbiased covariance of the rows of ``features`` (n ≥ 2), in float64."""
        features = features.double()
        if features.shape[0] < 2:
            raise UserError(f"a covariance needs at least 2 feature vectors, not {features.shape[0]}")
        mean = features.mean(0)
        centered = features - mean
        return cls(mean, centered.T @ centered / (features.shape[0] - 1))

    @functools.cached_property
    def sqrt_cov(self) -> Tensor:
        """Σ^{1/2}, the symmetric PSD square root (eigenvalues clamped at 0)."""
        values, vectors = torch.linalg.eigh(self.cov)
        return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """|μ_a − μ_b|² + Tr Σ_a + Tr Σ_b − 2 Tr (Σ_b^{1/2} Σ_a Σ_b^{1/2})^{1/2} (``b``'s root is cached)."""
    product = b.sqrt_cov @ a.cov @ b.sqrt_cov
    root_trace = torch.linalg.eigvalsh((product + product.T) / 2).clamp(min=0).sqrt().sum()
    return float((a.mean - b.mean).square().sum() + a.cov.trace() + b.cov.trace() - 2 * root_trace)


def fid(generated: Tensor, reference: Tensor) -> float:
    """The FID between two sets of features N×F and M×F."""
    return frechet_distance(Gaussian.fit(generated), Gaussian.fit(reference))


def bootstrap_fids(generated: Tensor, reference: Gaussian, resamples: int = 200, seed: int = 0) -> Tensor:
    """F*_1..F*_B: the FIDs against ``reference`` of ``resamples`` resamples of the rows of
    ``generated`` (as many, drawn with replacement by a generator seeded with ``seed``)."""
    if resamples < 2:
        raise UserError(f"the bootstrap needs at least 2 resamples, not {resamples}")
    count = generated.shape[0]
    generator = torch.Generator().manual_seed(seed)

    def resample() -> Tensor:
        return generated[torch.randint(count, (count,), generator=generator).to(generated.device)]

    values = []
    with progress_bar("scoring: the FID's bootstrap", resamples) as bar:
        for _ in range(resamples):
            values.append(frechet_distance(Gaussian.fit(resample()), reference))
            bar.advance()
    return torch.tensor(values, dtype=torch.float64)


def fid_interval(
    generated: Tensor, reference: Gaussian, resamples: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """The bias-corrected bootstrap percentile interval of the FID of ``generated`` against
    ``reference`` (see the module docstring): [q_{(1−level)/2}(F*) − β, q_{(1+level)/2}(F*) − β]
    with β = mean(F*) − FID."""
    resampled = bootstrap_fids(generated, reference, resamples, seed)
    bias = float(resampled.mean()) - frechet_distance(Gaussian.fit(generated), reference)
    tails = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(resampled, tails).tolist()
    return low - bias, high - bias


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x_i, y_j) = (x_iᵀ y_j / d + 1)³ for all rows of ``x`` (n×d) and ``y`` (m×d)."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> float:
    """The unbiased MMD² of samples ``x`` (n×d) and ``y`` (m×d) with the polynomial kernel:
    Σ_{i≠j} k(x_i, x_j) / n(n−1) + Σ_{i≠j} k(y_i, y_j) / m(m−1) − 2 Σ_{i,j} k(x_i, y_j) / nm."""
    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * polynomial_kernel(x, y).mean())


def kid(
    generated: Tensor, reference: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: the mean and standard deviation of ``mmd2_unbiased`` over ``subsets`` pairs of random
    subsets (without replacement) of size min(subset_size, n, m), drawn from a generator seeded
    with ``seed``."""
    generated, reference = generated.double(), reference.double()
    size = min(subset_size, generated.shape[0], reference.shape[0])
    if size < 2:
        raise UserError(f"KID needs subsets of at least 2 feature vectors, not {size}")
    generator = torch.Generator().manual_seed(seed)

    def subset(features: Tensor) -> Tensor:
        return features[torch.randperm(features.shape[0], generator=generator)[:size].to(features.device)]

    values = torch.tensor(
        [mmd2_unbiased(subset(generated), subset(reference)) for _ in range(subsets)], dtype=torch.float64
    )
    return float(values.mean()), float(values.std(correction=0))


@dataclass(frozen=True)
class Score:
    """The scores of one set of generated images.

    Attributes:
        fid: FID against the reference.
        fid_low, fid_high: its bias-corrected bootstrap 95 % interval.
        kid: KID against the reference; ``kid_std`` the standard deviation over its subsets.
        features: the name of the feature extractor.
        samples: how many generated images were scored.
        reference: the reference set, ``<dataset>-<split>-<count>``.
    """

    fid: float
    fid_low: float
    fid_high: float
    kid: float
    kid_std: float
    features: str
    samples: int
    reference: str

    def to_dict(self) -> dict[str, float | int | str]:
        """The fields by name, for JSON and CSV."""
        return dataclasses.asdict(self)


def score_features(
    generated: Tensor,
    reference: Tensor,
    features: str,
    reference_name: str,
    seed: int = 0,
    resamples: int = 200,
    device: str = "cpu",
) -> Score:
    """The :class:`Score` of ``generated`` features against ``reference`` features, computed on
    ``device`` in float64; ``seed`` seeds the bootstrap and the KID subsets. The bootstrap costs
    ``resamples`` covariances and F×F eigendecompositions: with Inception's F = 2048, use a GPU."""
    generated, reference = generated.to(device, torch.float64), reference.to(device, torch.float64)
    reference_fit = Gaussian.fit(reference)
    low, high = fid_interval(generated, reference_fit, resamples, seed)
    kid_mean, kid_std = kid(generated, reference, seed=seed)
    return Score(
        fid=frechet_distance(Gaussian.fit(generated), reference_fit),
        fid_low=low,
        fid_high=high,
        kid=kid_mean,
        kid_std=kid_std,
        features=features,
        samples=generated.shape[0],
        reference=reference_name,
    )


def score_images(
    generated: Tensor,
    dataset: str,
    features: str | FeatureExtractor = "default",
    reference_count: int | None = None,
    seed: int = 0,
    resamples: int = 200,
    device: str = "cpu",
) -> Score:
    """Score uint8 images N×C×H×W of ``dataset`` against ``reference_count`` training images
    (default ``REFERENCE_COUNTS[dataset]``), in the feature space of ``features`` (a name for
    :func:`feature_extractor`, or an extractor)."""
    _check_images(generated, image_shape(dataset))
    extractor = feature_extractor(features, dataset, device) if isinstance(features, str) else features
    generated_features = extractor.features(generated)
    return _score_against_reference(generated_features, extractor, dataset, reference_count, seed, resamples, device)


def floor_score(
    dataset: str,
    count: int,
    features: str | FeatureExtractor = "default",
    reference_count: int | None = None,
    seed: int = 0,
    resamples: int = 200,
    device: str = "cpu",
) -> Score:
    """The score of ``count`` held-out real images (the test split; all of it when it has fewer)
    against the same reference as :func:`score_images`: the floor a perfect generator would
    reach with ``count`` samples."""
    extractor = feature_extractor(features, dataset, device) if isinstance(features, str) else features
    count = min(count, len(load_uint8(dataset, HELD_OUT_SPLIT)))
    held_out = split_features(extractor, dataset, HELD_OUT_SPLIT, count)
    return _score_against_reference(held_out, extractor, dataset, reference_count, seed, resamples, device)


def _score_against_reference(
    generated: Tensor,
    extractor: FeatureExtractor,
    dataset: str,
    reference_count: int | None,
    seed: int,
    resamples: int,
    device: str,
) -> Score:
    """``score_features`` of ``generated`` features against the reference of ``dataset``."""
    reference_count = REFERENCE_COUNTS[dataset] if reference_count is None else reference_count
    reference = split_features(extractor, dataset, REFERENCE_SPLIT, reference_count)
    name = subset_name(dataset, REFERENCE_SPLIT, reference_count)
    return score_features(generated, reference, extractor.name, name, seed, resamples, device)


def subset_name(dataset: str, split: str, count: int) -> str:
    """How scores name ``count`` images of ``split`` of ``dataset``: ``<dataset>-<split>-<count>``."""
    return f"{dataset}-{split}-{count}"


def split_features(extractor: FeatureExtractor, dataset: str, split: str, count: int) -> Tensor:
    """The float64 features of ``count`` images of ``split`` of ``dataset`` (the first ``count`` of
    a permutation seeded with ``SUBSET_SEED``): read from the cache, or computed and cached."""
    path = cache_dir() / "features" / f"{extractor.name}-{subset_name(dataset, split, count)}.safetensors"
    try:
        with safe_open(str(path), "pt") as stored:
            same = (stored.metadata() or {}).get("weights") == extractor.weights
            cached = stored.get_tensor("features") if same else None
    except (OSError, SafetensorError):
        cached = None
    if cached is not None and cached.dtype == torch.float64 and cached.shape[0] == count and cached.isfinite().all():
        return cached
    images = load_uint8(dataset, split)
    if not 2 <= count <= len(images):
        raise UserError(f"count must be between 2 and the {len(images)} {split} images of {dataset}, not {count}")
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(SUBSET_SEED))[:count]
    values = extractor.features(images[chosen])
    metadata = {"features": extractor.name, "weights": extractor.weights, "dataset": dataset, "split": split,
                "count": str(count)}
    write_atomically(path, lambda temporary: save_file({"features": values}, str(temporary), metadata=metadata))
    return values


def _check_images(images: Tensor, shape: tuple[int, int, int] | None) -> None:
    """Raise a UserError unless ``images`` is uint8 N×C×H×W with C×H×W = ``shape`` (or, without a
    shape, C = 1 or 3) and N ≥ 1."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] < 1:
        raise UserError(f"images to score must be uint8 N×C×H×W, not {images.dtype} of shape {tuple(images.shape)}")
    if (shape is not None and tuple(images.shape[1:]) != shape) or (shape is None and images.shape[1] not in (1, 3)):
        expected = "×".join(map(str, shape)) if shape is not None else "1 or 3 channels"
        raise UserError(f"images of shape {tuple(images.shape)} do not match {expected}")

