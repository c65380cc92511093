"""The Fashion-MNIST classifier whose penultimate layer gives the embedded default FID features.

Inception features mean little on 28×28 grey clothes, so on Fashion-MNIST the suite scores images
in the feature space of a small CNN it trains itself, deterministically, on the training split:

    x ∈ [-1, 1]^{1×28×28} → conv3×3(1→c1) → ReLU → maxpool2 → conv3×3(c1→c2) → ReLU → maxpool2
      → linear(c2·7·7 → hidden) → ReLU   (= the features, ``hidden``-dimensional, ≥ 0)
      → linear(hidden → 10)              (the class logits)

trained with Adam on the cross-entropy, its step size decayed from ``learning_rate`` to 0 along
a cosine over all steps, batches drawn from a generator seeded with ``config.seed`` (which also
seeds the initial weights). Its accuracy on the whole test split is measured after training,
recorded, and must reach ``MIN_TEST_ACCURACY`` (90 %) for features that scores are reported with.

The default configuration's network is shipped in ``spdbench/assets/`` (trained once on this
project's CPU machine), so that every copy of spdbench scores with the same weights; another
configuration's is trained and cached per configuration in ``$SPDBENCH_CACHE/classifier/`` (default
``~/.cache/spdbench``): ``fmnist-<key>.safetensors`` (the weights) and ``fmnist-<key>.json`` (test
accuracy, training configuration and seed, training time and thread count, torch version, the
SHA-256 of the weights file), where ``<key>`` is a hash of the configuration. Both are written atomically (the
weights first, the JSON last), and a cache that is missing, unreadable, altered (its SHA-256 or
configuration does not match) or does not load into the network is retrained, never trusted.
Training is seeded, so retraining gives the same network up to floating-point differences
between machines and thread counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from spdbench.data import image_shape, iterate_batches, load_labels, load_uint8
from spdbench.errors import UserError
from spdbench.files import cache_dir, write_atomically, write_text_atomically
from spdbench.progress import progress_bar

DATASET = "fmnist"
NUM_CLASSES = 10
MIN_TEST_ACCURACY = 0.90
EVAL_BATCH_SIZE = 1000


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything the trained network depends on; its hash names the cache files.

    Attributes:
        channels: output channels (c1, c2) of the two convolutions.
        hidden: width of the penultimate layer, i.e. the feature dimension.
        epochs: passes over the training images.
        batch_size: images per Adam step.
        learning_rate: Adam's step size.
        seed: seeds the initial weights and the batch order.
        train_limit: train on only the first ``train_limit`` training images (for fast tests);
            ``None`` is the whole split.
    """

    channels: tuple[int, int] = (32, 64)
    hidden: int = 128
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    train_limit: int | None = None

    def to_dict(self) -> dict[str, object]:
        """The configuration as JSON-ready values (``channels`` as a list)."""
        values = dataclasses.asdict(self)
        values["channels"] = list(self.channels)
        return values

    @property
    def key(self) -> str:
        """A 12-hex-digit hash of the configuration."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """How score tables name these features: ``fmnist-cnn-<first 8 digits of key>``."""
        return f"{DATASET}-cnn-{self.key[:8]}"


@dataclass(frozen=True)
class ClassifierInfo:
    """What the cache's JSON file records about one trained network."""

    config: ClassifierConfig
    test_accuracy: float
    train_seconds: float
    threads: int
    torch_version: str

    def to_dict(self) -> dict[str, object]:
        """The record as JSON-ready values (the seed is also in ``config``)."""
        values = dataclasses.asdict(self)
        values["config"] = self.config.to_dict()
        values["seed"] = self.config.seed
        values["features"] = self.config.name
        return values


class FmnistCNN(nn.Module):
    """Two convolutions and two linear layers (the module docstring draws it)."""

    def __init__(self, channels: tuple[int, int], hidden: int) -> None:
        super().__init__()
        c1, c2 = channels
        side = image_shape(DATASET)[1] // 4
        self.body = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(),
        )
        self.head = nn.Linear(hidden, NUM_CLASSES)

    def embed(self, images: Tensor) -> Tensor:
        """The penultimate-layer features of uint8 images N×1×28×28 (scaled to x / 127.5 − 1)."""
        return self.body(images.float() / 127.5 - 1.0)

    def forward(self, images: Tensor) -> Tensor:
        """The class logits of uint8 images N×1×28×28."""
        return self.head(self.embed(images))


SHIPPED_DIR = Path(__file__).parent / "assets"
"""Networks shipped with spdbench (the default configuration's), so that every copy of it scores
with the same weights: retraining gives the same network only up to floating-point differences."""


def cache_paths(config: ClassifierConfig) -> tuple[Path, Path]:
    """The (weights, JSON record) files of the network trained with ``config`` in the cache."""
    stem = cache_dir() / "classifier" / f"{DATASET}-{config.key}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def shipped_paths(config: ClassifierConfig) -> tuple[Path, Path]:
    """The (weights, JSON record) files of the network of ``config`` shipped with spdbench."""
    stem = SHIPPED_DIR / f"{DATASET}-{config.key}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def classifier_available(config: ClassifierConfig) -> bool:
    """Whether the network of ``config`` is shipped or cached (loading it trains nothing)."""
    return any(read_classifier(*paths, config) is not None for paths in (shipped_paths(config), cache_paths(config)))


def load_classifier(
    config: ClassifierConfig = ClassifierConfig(), min_accuracy: float = MIN_TEST_ACCURACY
) -> tuple[FmnistCNN, ClassifierInfo]:
    """The network trained with ``config`` (in eval mode, on the CPU) and its record: read from
    the cache, or trained and cached when the cache is missing or not trustworthy.

    Raises a UserError when its test accuracy is below ``min_accuracy`` (a network trained on a
    subset for tests is checked against a lower bar); such a network is not cached.
    """
    cached = read_classifier(*shipped_paths(config), config) or read_classifier(*cache_paths(config), config)
    if cached is not None:
        network, info = cached
    else:
        network, info = train_classifier(config)
    if info.test_accuracy < min_accuracy:
        raise UserError(
            f"the Fashion-MNIST classifier {config.name} reaches {info.test_accuracy:.2%} test accuracy, "
            f"below the {min_accuracy:.0%} its features need; change its ClassifierConfig"
        )
    if cached is None:
        write_classifier(network, info)
    return network.eval(), info


def train_classifier(config: ClassifierConfig) -> tuple[FmnistCNN, ClassifierInfo]:
    """Train a network with ``config`` on the Fashion-MNIST training split and measure its accuracy
    on the whole test split. Deterministic given the seed; leaves the global RNG untouched."""
    start = time.perf_counter()
    images, labels = load_uint8(DATASET, "train"), load_labels(DATASET, "train")
    if config.train_limit is not None:
        images, labels = images[: config.train_limit], labels[: config.train_limit]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        network = FmnistCNN(config.channels, config.hidden)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    steps = config.epochs * math.ceil(len(images) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(config.seed)
    network.train()
    with progress_bar(f"training the feature classifier {config.name} (once; then cached)", steps) as bar:
        for _ in range(config.epochs):
            for index in iterate_batches(torch.arange(len(images)), config.batch_size, generator, drop_last=False):
                loss = F.cross_entropy(network(images[index]), labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.advance()
    network.eval()
    accuracy = test_accuracy(network)
    info = ClassifierInfo(
        config=config,
        test_accuracy=accuracy,
        train_seconds=time.perf_counter() - start,
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
    )
    return network, info


def estimate_training_seconds(config: ClassifierConfig, repeats: int = 3) -> float:
    """Seconds that training a network with ``config`` takes on this machine: the mean of
    ``repeats`` timed Adam steps on random images (after one warm-up), times its steps."""
    network = FmnistCNN(config.channels, config.hidden)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    images = torch.randint(0, 256, (config.batch_size, *image_shape(DATASET)), dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (config.batch_size,))
    timings = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        loss = F.cross_entropy(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    count = len(load_uint8(DATASET, "train")) if config.train_limit is None else config.train_limit
    return sum(timings[1:]) / repeats * config.epochs * math.ceil(count / config.batch_size)


@torch.no_grad()
def test_accuracy(network: FmnistCNN) -> float:
    """The fraction of the Fashion-MNIST test split that ``network`` classifies correctly."""
    images, labels = load_uint8(DATASET, "test"), load_labels(DATASET, "test")
    correct = 0
    for index in iterate_batches(torch.arange(len(images)), EVAL_BATCH_SIZE, shuffle=False, drop_last=False):
        correct += int((network(images[index]).argmax(1) == labels[index]).sum())
    return correct / len(images)


def write_classifier(network: FmnistCNN, info: ClassifierInfo) -> None:
    """Cache ``network`` and ``info`` with the SHA-256 of the weights file: the weights, then the JSON."""
    weights, record = cache_paths(info.config)
    payload = save({name: tensor.contiguous() for name, tensor in network.state_dict().items()})
    write_atomically(weights, lambda temporary: temporary.write_bytes(payload))
    values = info.to_dict() | {"weights_sha256": hashlib.sha256(payload).hexdigest()}
    write_text_atomically(record, json.dumps(values, indent=2) + "\n")


def read_classifier(weights: Path, record: Path, config: ClassifierConfig) -> tuple[FmnistCNN, ClassifierInfo] | None:
    """The network of ``config`` stored in ``weights`` and ``record`` (shipped or cached), or
    ``None`` when either file is missing or unreadable, the record is not about ``config``, the
    weights do not match its SHA-256, or they do not load into the network."""
    try:
        values = json.loads(record.read_text(encoding="utf-8"))
        info = ClassifierInfo(
            config=config,
            test_accuracy=float(values["test_accuracy"]),
            train_seconds=float(values["train_seconds"]),
            threads=int(values["threads"]),
            torch_version=str(values["torch_version"]),
        )
        payload = weights.read_bytes()
        if values["config"] != config.to_dict() or hashlib.sha256(payload).hexdigest() != values["weights_sha256"]:
            return None
        network = FmnistCNN(config.channels, config.hidden)
        network.load_state_dict(load(payload))
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError):
        # OSError: missing or unreadable; ValueError: not JSON (JSONDecodeError) or not a number;
        # TypeError/KeyError: not the expected record; RuntimeError: tensors of the wrong names or shapes.
        return None
    return network.eval(), info

