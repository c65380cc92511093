"""Tests of spdbench.data: Fashion-MNIST from Debian, a directory and a (faked) download; CIFAR-10
from small archives in the official format; resizing, batching and the errors users see."""

import gzip
import hashlib
import io
import pickle
import shutil
import struct
import tarfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spdbench import data
from spdbench.cli import app
from spdbench.errors import UserError
from tests.conftest import needs_fmnist

DEBIAN = data.DEBIAN_FMNIST_DIR
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts with an empty in-process cache and its own empty download cache."""
    data._load.cache_clear()
    monkeypatch.setenv("SPDBENCH_DATA", str(tmp_path / "cache"))


@pytest.fixture
def no_fallbacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither Debian's files nor the network are available."""
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")

    def offline(url: str, out: BinaryIO) -> None:
        raise OSError(f"no network for {url}")

    monkeypatch.setattr(data, "_http_get", offline)


def recompressed_with_a_changed_byte(path: Path) -> bytes:
    """The gzip file at `path` with one byte of its payload (after the IDX header) changed, recompressed."""
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[-1] ^= 0xFF
    return gzip.compress(bytes(payload), compresslevel=1)


# Fashion-MNIST


@needs_fmnist
def test_fmnist_from_debian() -> None:
    train, test = data.load_images("fmnist", "train"), data.load_images("fmnist", "test")
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == torch.float32
    assert train.min() == -1.0 and train.max() == 1.0
    raw = data.load_uint8("fmnist", "test")
    assert raw.dtype == torch.uint8 and raw.shape == (10000, 1, 28, 28)
    assert torch.equal(test, raw.float() / 127.5 - 1)
    labels = data.load_labels("fmnist", "train")
    assert labels.dtype == torch.int64 and labels.shape == (60000,)
    assert set(labels.tolist()) == set(range(10))
    assert data.image_shape("fmnist") == (1, 28, 28)


@needs_fmnist
def test_fmnist_cached_tensor_is_not_shared() -> None:
    first = data.load_uint8("fmnist", "test")
    first.zero_()
    assert data.load_uint8("fmnist", "test").max() > 0


@needs_fmnist
def test_fmnist_from_root_directory(tmp_path: Path, no_fallbacks: None) -> None:
    root = tmp_path / "fmnist"
    root.mkdir()
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, root / name)
    assert data.load_uint8("fmnist", "test", root=root).shape == (10000, 1, 28, 28)
    assert data.load_labels("fmnist", "test", root=root).shape == (10000,)


@needs_fmnist
def test_fmnist_from_the_data_dir_option_and_variable(
    tmp_path: Path, no_fallbacks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``spdbench --data-dir DIR`` (or ``$SPDBENCH_DATA_DIR``) is used instead of every other source."""
    root = tmp_path / "mine"
    root.mkdir()
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, root / name)
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", DEBIAN)  # even where Debian's copy exists
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(root))
    (root / TEST_FILES[1]).write_bytes(b"")
    with pytest.raises(UserError, match=f"{root / TEST_FILES[1]} is empty"):
        data.load_labels("fmnist", "test")
    monkeypatch.delenv(data.DATA_DIR_VARIABLE)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "absent"), "show", "--process", "ddpm",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{tmp_path / 'absent'}/train-images-idx3-ubyte.gz not found" in result.stderr
    assert not (tmp_path / "out").exists()


@needs_fmnist
def test_fmnist_file_too_short_for_its_header(tmp_path: Path) -> None:
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, tmp_path / name)
    (tmp_path / TEST_FILES[0]).write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(UserError, match="is too short: 3 bytes once decompressed, less than the 16-byte IDX header"):
        data.load_uint8("fmnist", "test", root=tmp_path)


@needs_fmnist
def test_fmnist_truncated_file(tmp_path: Path) -> None:
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, tmp_path / name)
    images = tmp_path / TEST_FILES[0]
    images.write_bytes(images.read_bytes()[: images.stat().st_size // 2])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        data.load_uint8("fmnist", "test", root=tmp_path)


@needs_fmnist
def test_fmnist_wrong_payload_fails_hash(tmp_path: Path) -> None:
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, tmp_path / name)
    (tmp_path / TEST_FILES[1]).write_bytes(recompressed_with_a_changed_byte(DEBIAN / TEST_FILES[1]))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz does not match the SHA-256"):
        data.load_labels("fmnist", "test", root=tmp_path)


@needs_fmnist
def test_fmnist_wrong_header(tmp_path: Path) -> None:
    for name in TEST_FILES:
        shutil.copy(DEBIAN / name, tmp_path / name)
    # Labels where images are expected: a valid IDX file with the wrong magic number.
    shutil.copy(DEBIAN / TEST_FILES[1], tmp_path / TEST_FILES[0])
    with pytest.raises(UserError, match="not the expected IDX file"):
        data.load_uint8("fmnist", "test", root=tmp_path)


def test_fmnist_missing_root_names_both_ways(tmp_path: Path, no_fallbacks: None) -> None:
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte.gz not found") as caught:
        data.load_uint8("fmnist", "test", root=tmp_path / "absent")
    assert "apt-get install dataset-fashion-mnist" in str(caught.value)
    assert data.FMNIST_MIRROR in str(caught.value)


def test_fmnist_nowhere_names_both_ways(tmp_path: Path, no_fallbacks: None) -> None:
    with pytest.raises(UserError) as caught:
        data.load_uint8("fmnist", "test")
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install dataset-fashion-mnist" in message and data.FMNIST_MIRROR in message
    assert "no network" in message


@needs_fmnist
def test_fmnist_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")
    served = []

    def serve_debian_file(url: str, out: BinaryIO) -> None:
        assert url.startswith(data.FMNIST_MIRROR)
        served.append(url)
        out.write((DEBIAN / url.removeprefix(data.FMNIST_MIRROR)).read_bytes())

    monkeypatch.setattr(data, "_http_get", serve_debian_file)
    assert data.load_uint8("fmnist", "test").shape == (10000, 1, 28, 28)
    cache = tmp_path / "cache" / "fmnist"
    assert sorted(path.name for path in cache.iterdir()) == sorted(TEST_FILES)
    for name in TEST_FILES:
        payload = gzip.decompress((cache / name).read_bytes())
        assert hashlib.sha256(payload).hexdigest() == data.FMNIST_SHA256[name]
    # A second load in a fresh process reads the cache instead of downloading again.
    data._load.cache_clear()
    data.load_labels("fmnist", "test")
    assert len(served) == 2


@needs_fmnist
def test_fmnist_corrupt_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "DEBIAN_FMNIST_DIR", tmp_path / "no-debian")

    def serve_corrupt_file(url: str, out: BinaryIO) -> None:
        out.write(recompressed_with_a_changed_byte(DEBIAN / url.removeprefix(data.FMNIST_MIRROR)))

    monkeypatch.setattr(data, "_http_get", serve_corrupt_file)
    with pytest.raises(UserError, match="does not match the SHA-256"):
        data.load_uint8("fmnist", "test")
    cache = tmp_path / "cache" / "fmnist"
    assert list(cache.iterdir()) == []


# CIFAR-10, from tiny archives in the official format


def py2_str(value: bytes) -> bytes:
    """A Python 2 `str` as cPickle writes it: SHORT_BINSTRING or BINSTRING."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<i", len(value)) + value


def official_batch_pickle(pixels: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR-10 batch pickled as the official files are: Python 2 pickle protocol 2 of a dict with
    str keys, its b"data" a uint8 array rebuilt through numpy 1.x's numpy.core.multiarray."""
    count = len(labels)
    dtype = b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R"  # dtype('u1', 0, 1)
    dtype += b"(K\x03" + py2_str(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # its state
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
    shape = b"J" + struct.pack("<i", count) + b"J" + struct.pack("<i", 3072) + b"\x86"
    array += b"(K\x01" + shape  # its state: (1, (N, 3072),
    array += dtype + b"\x89" + py2_str(pixels.tobytes()) + b"tb"  # dtype, False, bytes) as its state
    label_list = b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    return b"\x80\x02}(" + py2_str(b"data") + array + py2_str(b"labels") + label_list + b"u."


def write_tiny_cifar(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Write cifar-10-python.tar.gz in `directory`: 5 train batches and a test batch of 4 images each.

    Image k holds pixel value k at every position, except that pixel [c, h, w] = [2, 5, 7] (blue,
    row 5, column 7) is 200 + k. Returns the expected (train, test) uint8 N×3×32×32 images.
    """
    images = np.repeat(np.arange(24, dtype=np.uint8), 3072).reshape(24, 3, 32, 32)
    images[:, 2, 5, 7] = 200 + np.arange(24)
    archive = directory / data.CIFAR10_ARCHIVE
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(archive, "w:gz") as tar:
        for index, name in enumerate(names):
            batch = images[4 * index : 4 * index + 4]
            labels = [(4 * index + k) % 10 for k in range(4)]
            content = official_batch_pickle(batch.reshape(4, 3072), labels)
            add_member(tar, f"cifar-10-batches-py/{name}", content)
        meta = pickle.dumps({b"num_cases_per_batch": 4}, protocol=2)
        add_member(tar, "cifar-10-batches-py/batches.meta", meta)
    return images[:20], images[20:]


def add_member(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    """Add a file `name` holding `content` to `tar`."""
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def test_cifar10_from_archive(tmp_path: Path) -> None:
    train, test = write_tiny_cifar(tmp_path)
    archive = tmp_path / data.CIFAR10_ARCHIVE
    for root in (archive, tmp_path):
        data._load.cache_clear()
        loaded = data.load_uint8("cifar10", "train", root=root)
        assert loaded.dtype == torch.uint8 and loaded.shape == (20, 3, 32, 32)
        assert torch.equal(loaded, torch.from_numpy(train))
        assert loaded[13, 2, 5, 7] == 213 and loaded[13, 0, 5, 7] == 13 and loaded[13, 2, 7, 5] == 13
        assert data.load_labels("cifar10", "train", root=root).tolist() == [k % 10 for k in range(20)]
        assert torch.equal(data.load_uint8("cifar10", "test", root=root), torch.from_numpy(test))
        assert data.load_labels("cifar10", "test", root=root).tolist() == [0, 1, 2, 3]
    images = data.load_images("cifar10", "test", root=archive)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert images[1, 2, 5, 7] == pytest.approx(221 / 127.5 - 1)


def test_cifar10_from_extracted_directory(tmp_path: Path) -> None:
    train, test = write_tiny_cifar(tmp_path)
    with tarfile.open(tmp_path / data.CIFAR10_ARCHIVE) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    batch_dir = tmp_path / "extracted" / "cifar-10-batches-py"
    for root in (batch_dir, batch_dir.parent):
        data._load.cache_clear()
        assert torch.equal(data.load_uint8("cifar10", "train", root=root), torch.from_numpy(train))
        assert torch.equal(data.load_uint8("cifar10", "test", root=root), torch.from_numpy(test))


def test_cifar10_truncated_archive(tmp_path: Path) -> None:
    write_tiny_cifar(tmp_path)
    archive = tmp_path / data.CIFAR10_ARCHIVE
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    with pytest.raises(UserError, match="truncated or corrupt"):
        data.load_uint8("cifar10", "test", root=archive)


def test_cifar10_disallowed_global_is_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return os.system, (f"touch {marker}",)

    batch_dir = tmp_path / "cifar-10-batches-py"
    batch_dir.mkdir()
    (batch_dir / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}, protocol=2))
    with pytest.raises(UserError, match="not allowed"):
        data.load_uint8("cifar10", "test", root=batch_dir)
    assert not marker.exists()


def test_cifar10_wrong_content(tmp_path: Path) -> None:
    batch = tmp_path / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}))
    with pytest.raises(UserError, match="labels"):
        data.load_uint8("cifar10", "test", root=tmp_path)
    data._load.cache_clear()
    batch.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(UserError, match="data"):
        data.load_uint8("cifar10", "test", root=tmp_path)


def test_cifar10_download_is_hash_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _ = write_tiny_cifar(tmp_path)
    tiny = (tmp_path / data.CIFAR10_ARCHIVE).read_bytes()
    monkeypatch.setattr(data, "_http_get", lambda url, out: out.write(tiny))
    cache = tmp_path / "cache" / "cifar10"
    with pytest.raises(UserError, match="does not match the official SHA-256"):
        data.load_uint8("cifar10", "train")
    assert list(cache.iterdir()) == []
    # The same bytes are kept, and loaded, when they are what the hash expects.
    monkeypatch.setattr(data, "CIFAR10_SHA256", hashlib.sha256(tiny).hexdigest())
    assert torch.equal(data.load_uint8("cifar10", "train"), torch.from_numpy(train))
    assert [path.name for path in cache.iterdir()] == [data.CIFAR10_ARCHIVE]


def test_cifar10_missing(tmp_path: Path, no_fallbacks: None) -> None:
    with pytest.raises(UserError, match="no CIFAR-10 data"):
        data.load_uint8("cifar10", "train", root=tmp_path)
    with pytest.raises(UserError, match="downloading .* failed"):
        data.load_uint8("cifar10", "train")


# Resizing, batching, names


def test_resize(tmp_path: Path) -> None:
    write_tiny_cifar(tmp_path)
    images = data.load_images("cifar10", "train", root=tmp_path, size=16)
    assert images.shape == (20, 3, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    # Constant images stay constant.
    assert torch.allclose(images[3, 0], torch.full((16, 16), 3 / 127.5 - 1))
    for size in (0, 1, 129):
        with pytest.raises(UserError, match=rf"image size must lie in \[2, 128\] pixels, not {size}"):
            data.load_images("cifar10", "train", root=tmp_path, size=size)


def test_iterate_batches() -> None:
    images = torch.arange(10).view(10, 1, 1, 1)
    first = list(data.iterate_batches(images, 4, torch.Generator().manual_seed(0)))
    again = list(data.iterate_batches(images, 4, torch.Generator().manual_seed(0)))
    assert [batch.shape[0] for batch in first] == [4, 4]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert len(torch.cat(first).unique()) == 8
    in_order = list(data.iterate_batches(images, 4, shuffle=False, drop_last=False))
    assert torch.equal(torch.cat(in_order).flatten(), torch.arange(10))
    assert [batch.shape[0] for batch in in_order] == [4, 4, 2]
    with pytest.raises(UserError, match="larger than"):
        list(data.iterate_batches(images, 11))


def test_unknown_names() -> None:
    with pytest.raises(UserError, match="unknown dataset 'mnist'; valid names: fmnist, cifar10"):
        data.load_images("mnist")
    with pytest.raises(UserError, match="unknown split 'valid'; valid splits: train, test"):
        data.load_uint8("fmnist", "valid")
    with pytest.raises(UserError, match="valid names"):
        data.image_shape("imagenet")
    assert data.image_shape("cifar10") == (3, 32, 32)
