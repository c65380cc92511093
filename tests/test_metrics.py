"""Tests of the scores (FID, its bootstrap interval, KID) against known answers and other
implementations, of the Fashion-MNIST classifier's cache, and of how the Inception weights are found."""

import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from cleanfid.fid import frechet_distance as clean_fid_frechet_distance
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import poly_mmd

from spdbench import classifier, data, metrics
from spdbench.classifier import ClassifierConfig, cache_paths, load_classifier, read_classifier, shipped_paths
from spdbench.errors import UserError
from spdbench.metrics import Gaussian, bootstrap_fids, fid, fid_interval, frechet_distance, kid, mmd2_unbiased
from tests.conftest import needs_fmnist

#: A classifier that trains in a second: for the cache tests, not for scores.
TINY = ClassifierConfig(channels=(4, 8), hidden=16, epochs=1, train_limit=512)


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test has its own empty cache and no Inception weights configured."""
    monkeypatch.setenv("SPDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(metrics.INCEPTION_ENV, raising=False)
    return tmp_path / "cache"


def gaussian(n: int, dim: int = 16, seed: int = 0, shift: float = 0.0) -> Tensor:
    """n samples of a fixed correlated Gaussian in ``dim`` dimensions, its mean moved by ``shift``
    along every axis."""
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(1234), dtype=torch.float64) / dim**0.5
    noise = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return noise @ mixing + 1.0 + shift


# FID


def test_fid_of_a_set_against_itself_is_zero() -> None:
    features = gaussian(500, dim=32)
    assert abs(fid(features, features)) < 1e-6 * float(features.var(0).sum())


def test_fid_grows_with_the_shift() -> None:
    reference = gaussian(2000)
    values = [fid(gaussian(2000, seed=1, shift=shift), reference) for shift in (0.0, 0.3, 1.0)]
    assert values[0] < values[1] < values[2]
    assert values[2] > 10 * values[0]


def test_fid_matches_the_closed_form_for_diagonal_gaussians() -> None:
    generator = torch.Generator().manual_seed(0)
    mean_a, mean_b = torch.randn(2, 20, generator=generator, dtype=torch.float64)
    var_a, var_b = torch.rand(2, 20, generator=generator, dtype=torch.float64) * 3 + 0.1
    expected = float((mean_a - mean_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum())
    value = frechet_distance(Gaussian(mean_a, var_a.diag()), Gaussian(mean_b, var_b.diag()))
    assert value == pytest.approx(expected, rel=1e-10)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # clean-fid's sqrtm call
def test_fid_and_kid_agree_with_clean_fid_and_torchmetrics() -> None:
    x, y = gaussian(300, dim=8), gaussian(400, dim=8, seed=1, shift=0.2) * 1.5
    a, b = Gaussian.fit(x), Gaussian.fit(y)
    ours = frechet_distance(a, b)
    clean_fid = clean_fid_frechet_distance(a.mean.numpy(), a.cov.numpy(), b.mean.numpy(), b.cov.numpy())
    assert ours == pytest.approx(float(clean_fid), rel=1e-8)
    reference = FrechetInceptionDistance(feature=nn.Identity(), input_img_size=(8,))
    reference.update(y, real=True)
    reference.update(x, real=False)
    assert ours == pytest.approx(float(reference.compute()), rel=1e-8)
    # torchmetrics' MMD² takes both samples of the same size (KID's subsets are).
    assert mmd2_unbiased(x, y[:300]) == pytest.approx(float(poly_mmd(x, y[:300])), rel=1e-10)


# The bootstrap interval


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_samples() -> None:
    reference = Gaussian.fit(gaussian(4000))
    widths = {}
    for shift in (0.0, 0.3):
        for n in (200, 2000):
            generated = gaussian(n, seed=1, shift=shift)
            low, high = fid_interval(generated, reference, resamples=100)
            assert low <= frechet_distance(Gaussian.fit(generated), reference) <= high
            widths[shift, n] = high - low
    assert widths[0.0, 2000] < widths[0.0, 200] and widths[0.3, 2000] < widths[0.3, 200]
    generated = gaussian(200, seed=1)
    assert fid_interval(generated, reference, 20, seed=3) == fid_interval(generated, reference, 20, seed=3)


def test_bias_corrected_interval_covers_the_mean_fid_where_the_plain_percentile_one_does_not() -> None:
    """Over independent generated sets of one size, how often each interval holds the mean FID."""
    reference = Gaussian.fit(gaussian(4000))
    tails = torch.tensor([0.025, 0.975], dtype=torch.float64)

    def coverage(shift: float) -> tuple[float, float]:
        """(plain, bias-corrected) coverage of the mean FID over 60 sets of 300 samples."""
        sets = [gaussian(300, seed=100 + k, shift=shift) for k in range(60)]
        mean = sum(frechet_distance(Gaussian.fit(g), reference) for g in sets) / len(sets)
        plain = [torch.quantile(bootstrap_fids(g, reference, 50, seed=k), tails).tolist() for k, g in enumerate(sets)]
        corrected = [fid_interval(g, reference, 50, seed=k) for k, g in enumerate(sets)]
        covered = [sum(low <= mean <= high for low, high in intervals) / len(sets) for intervals in (plain, corrected)]
        return covered[0], covered[1]

    plain, corrected = coverage(0.0)  # the floor: the bias dominates
    assert plain <= 0.1 and corrected >= 0.95
    plain, corrected = coverage(0.5)  # far from it: both near nominal, the corrected one closer
    assert corrected >= 0.8 and corrected >= plain


# KID


def test_kid_is_unbiased_and_detects_a_difference() -> None:
    def kids(shift: float) -> Tensor:
        """KID of 200 independent pairs of 60-sample sets, one subset each (the whole sets)."""
        pairs = [(gaussian(60, 4, 2 * s), gaussian(60, 4, 2 * s + 1, shift)) for s in range(200)]
        return torch.tensor([kid(x, y, subsets=1, subset_size=60)[0] for x, y in pairs])

    same, different = kids(0.0), kids(0.5)
    assert abs(float(same.mean())) < 3 * float(same.std()) / math.sqrt(len(same))
    assert float(different.mean()) > 10 * float(different.std()) / math.sqrt(len(different))
    mean, std = kid(gaussian(300), gaussian(300, seed=1, shift=0.5), subsets=10, subset_size=100)
    assert mean > 0 and std > 0


def test_score_features_reports_every_field() -> None:
    score = metrics.score_features(gaussian(300, seed=1), gaussian(500), "toy", "toy-train-500", resamples=20)
    fields = {"fid", "fid_low", "fid_high", "kid", "kid_std", "features", "samples", "reference"}
    assert score.to_dict().keys() == fields
    assert score.fid_low <= score.fid <= score.fid_high
    assert (score.features, score.samples, score.reference) == ("toy", 300, "toy-train-500")


def test_bad_inputs_are_user_errors() -> None:
    with pytest.raises(UserError, match="uint8"):
        metrics.score_images(torch.zeros(2, 1, 28, 28), "fmnist")
    with pytest.raises(UserError, match="do not match"):
        metrics.score_images(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), "fmnist")
    with pytest.raises(UserError, match="unknown features"):
        metrics.feature_extractor("vgg", "fmnist")
    with pytest.raises(UserError, match="trained on fmnist, not cifar10"):
        metrics.feature_extractor("classifier", "cifar10")
    with pytest.raises(UserError, match="at least 2"):
        fid(gaussian(1), gaussian(10))


# The classifier


def corrupt_weights(weights: Path, record: Path) -> None:
    weights.write_bytes(weights.read_bytes()[:100])


def alter_a_weight(weights: Path, record: Path) -> None:
    payload = bytearray(weights.read_bytes())
    payload[-1] ^= 0xFF  # the last byte of the last tensor: still a valid safetensors file
    weights.write_bytes(bytes(payload))


def corrupt_record(weights: Path, record: Path) -> None:
    record.write_text("{not json")


@needs_fmnist
@pytest.mark.parametrize("damage", [corrupt_weights, alter_a_weight, corrupt_record], ids=lambda f: f.__name__)
def test_classifier_is_cached_and_a_damaged_cache_retrained(monkeypatch: pytest.MonkeyPatch, damage) -> None:
    network, info = load_classifier(TINY, min_accuracy=0.0)
    weights, record = cache_paths(TINY)
    values = json.loads(record.read_text())
    assert values["test_accuracy"] == info.test_accuracy and 0.1 < info.test_accuracy <= 1
    assert values["config"]["train_limit"] == 512 and values["seed"] == TINY.seed and values["features"] == TINY.name

    train = classifier.train_classifier
    calls = []

    def refuse(config: ClassifierConfig) -> None:
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(classifier, "train_classifier", refuse)
    cached, _ = load_classifier(TINY, min_accuracy=0.0)
    assert all(torch.equal(cached.state_dict()[k], v) for k, v in network.state_dict().items())

    def counting(config: ClassifierConfig) -> tuple[classifier.FmnistCNN, classifier.ClassifierInfo]:
        calls.append(config)
        return train(config)

    damage(weights, record)
    assert read_classifier(*cache_paths(TINY), TINY) is None
    monkeypatch.setattr(classifier, "train_classifier", counting)
    retrained, _ = load_classifier(TINY, min_accuracy=0.0)
    assert calls == [TINY] and read_classifier(*cache_paths(TINY), TINY) is not None
    # Seeded training on the same machine: the same network again.
    assert all(torch.equal(retrained.state_dict()[k], v) for k, v in network.state_dict().items())


@needs_fmnist
def test_a_classifier_below_the_accuracy_bar_is_refused_and_not_cached() -> None:
    with pytest.raises(UserError, match="test accuracy, below the 101%"):
        load_classifier(TINY, min_accuracy=1.01)
    assert not any(path.exists() for path in cache_paths(TINY))


@needs_fmnist
def test_classifier_features_and_the_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    extractor = metrics.ClassifierFeatures(TINY, min_accuracy=0.0)
    assert extractor.name == TINY.name and extractor.name.startswith("fmnist-cnn-")
    images = data.load_uint8("fmnist", "test")[:300]
    features = extractor.features(images)
    assert features.shape == (300, 16) and features.dtype == torch.float64 and (features >= 0).all()
    floor = metrics.floor_score("fmnist", 300, extractor, reference_count=600, resamples=20)
    assert (floor.samples, floor.reference, floor.features) == (300, "fmnist-train-600", TINY.name)
    # The reference and held-out features are cached: scoring again extracts only the generated images.
    with monkeypatch.context() as patch:
        patch.setattr(extractor, "features", lambda images: pytest.fail("recomputed cached features"))
        assert metrics.floor_score("fmnist", 300, extractor, reference_count=600, resamples=20) == floor
    inverted = metrics.score_images(255 - images, "fmnist", extractor, reference_count=600, resamples=20)
    assert inverted.fid > 5 * floor.fid_high and inverted.kid > floor.kid + 5 * floor.kid_std


@needs_fmnist
def test_the_floor_uses_the_whole_test_split_when_the_samples_outnumber_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """As 50,000 CIFAR-10 samples outnumber its 10,000 test images: here a 40-image test split."""
    real = data.load_uint8

    def small_test_split(dataset: str, split: str) -> torch.Tensor:
        return real(dataset, split)[:40] if split == "test" else real(dataset, split)

    monkeypatch.setattr(metrics, "load_uint8", small_test_split)
    extractor = metrics.ClassifierFeatures(TINY, min_accuracy=0.0)
    floor = metrics.floor_score("fmnist", 500, extractor, reference_count=600, resamples=20)
    assert (floor.samples, floor.reference) == (40, "fmnist-train-600")


@needs_fmnist
def test_the_shipped_classifier_reaches_90_percent() -> None:
    """The default configuration's network ships with spdbench (every copy scores with it); its
    record is true: recomputed, its test accuracy is the same up to an image or two (other
    thread counts may round differently), and it is the one loading the default gives."""
    config = ClassifierConfig()
    shipped = read_classifier(*shipped_paths(config), config)
    assert shipped is not None
    network, info = shipped
    assert info.test_accuracy >= classifier.MIN_TEST_ACCURACY
    assert classifier.test_accuracy(network) == pytest.approx(info.test_accuracy, abs=2e-4)
    loaded, _ = load_classifier(config)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in network.state_dict().items())


# Inception weights


class FakeInception(nn.Module):
    """What clean-fid's InceptionV3W needs of its TorchScript file: ``layers``, 3×299×299 → 2048,
    here a constant 7 (zero weights), so that its output shows this file was loaded."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2048))
        nn.init.zeros_(self.layers[2].weight)
        nn.init.constant_(self.layers[2].bias, 7.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def refuse_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", fail)


def test_missing_inception_weights_say_how_to_provide_them(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    refuse_downloads(monkeypatch)
    with pytest.raises(UserError) as error:
        metrics.feature_extractor("default", "cifar10")
    message = str(error.value)
    assert "\n" not in message and "downloading them failed" in message and "network unreachable" in message
    assert metrics.INCEPTION_ENV in message and "inception-2015-12-05.pt" in message
    assert list((cache / "inception").iterdir()) == []
    monkeypatch.setenv(metrics.INCEPTION_ENV, str(cache / "nowhere" / metrics.INCEPTION_FILE))
    with pytest.raises(UserError, match=f"not found; download .* set {metrics.INCEPTION_ENV}"):
        metrics.InceptionFeatures()
    with pytest.raises(UserError, match="must be named inception-2015-12-05.pt"):
        metrics.InceptionFeatures(weights=cache / "weights.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_local_inception_file_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    refuse_downloads(monkeypatch)
    torch.jit.script(FakeInception()).save(str(tmp_path / metrics.INCEPTION_FILE))
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    by_argument = metrics.InceptionFeatures(weights=tmp_path / metrics.INCEPTION_FILE).features(images)
    assert by_argument.shape == (3, 2048) and by_argument.dtype == torch.float64
    assert torch.allclose(by_argument, torch.full_like(by_argument, 7.0))
    monkeypatch.setenv(metrics.INCEPTION_ENV, str(tmp_path))
    extractor = metrics.feature_extractor("default", "cifar10")
    assert extractor.name == "inception-clean"
    assert extractor.features(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).shape == (2, 2048)
    (tmp_path / metrics.INCEPTION_FILE).write_bytes(b"not a TorchScript archive")
    with pytest.raises(UserError, match="cannot load the Inception weights"):
        metrics.InceptionFeatures()



@needs_fmnist
def test_cached_reference_features_are_used_only_with_the_same_weights(cache: Path) -> None:
    """Features cached under one extractor name are recomputed for other weights of that name (a
    classifier retrained elsewhere), and reused for the same weights."""

    class Projection:
        name = "projection"

        def __init__(self, weights: str, scale: float) -> None:
            self.weights, self.scale, self.calls = weights, scale, 0

        def features(self, images: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return self.scale * images.flatten(1)[:, :4].double()

    first, retrained = Projection("a", 1.0), Projection("b", 2.0)
    values = metrics.split_features(first, "fmnist", "test", 8)
    again = metrics.split_features(retrained, "fmnist", "test", 8)
    assert retrained.calls == 1 and torch.equal(again, 2 * values)
    assert torch.equal(metrics.split_features(retrained, "fmnist", "test", 8), again) and retrained.calls == 1
