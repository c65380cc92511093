"""Datasets: raw uint8 images (for FID references) and float images in [-1, 1] (for training).

Where the data comes from:

Your own copy: ``root`` (``load_*(..., root=...)``), else the directory ``$SPDBENCH_DATA_DIR``
(``spdbench --data-dir DIR``), holds the dataset's files as described below and is used instead of
every other source.

- ``fmnist``, Fashion-MNIST (1×28×28, the embedded default): the four official gzipped IDX files,
  looked for in this order: the directory ``root``; Debian's package
  ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist); the cache directory
  ``$SPDBENCH_DATA/fmnist`` (default ~/.cache/spdbench/data/fmnist), where they are downloaded from
  the official mirror when absent. Every file, whatever its source, must match the SHA-256 of its
  decompressed payload, the IDX magic number and the expected dimensions.
- ``cifar10``, CIFAR-10 (3×32×32): the official python archive ``cifar-10-python.tar.gz``, from
  ``root`` (the archive, its extracted ``cifar-10-batches-py`` directory, or a directory holding
  either; not hash-checked, so small test archives work), else from the cache directory
  ``$SPDBENCH_DATA/cifar10``, where it is downloaded from the University of Toronto when absent and
  checked against the official SHA-256. The batch pickles are read straight from the archive with
  an unpickler that can rebuild numpy arrays and nothing else.

Downloads are written to a temporary file next to their destination and renamed into place only
once their hash checks out, so the cache never holds a partial or corrupt file.
"""

import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import requests
import torch
import torch.nn.functional as F
from numpy._core.multiarray import _reconstruct  # what pickled ndarrays are rebuilt with

from spdbench.errors import UserError

DATASETS: tuple[str, ...] = ("fmnist", "cifar10")
SPLITS: tuple[str, ...] = ("train", "test")
_IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"fmnist": (1, 28, 28), "cifar10": (3, 32, 32)}

DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# split -> (images file, labels file)
_FMNIST_SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# file -> (IDX magic number, dimensions)
_FMNIST_IDX_LAYOUT: dict[str, tuple[int, tuple[int, ...]]] = {
    "train-images-idx3-ubyte.gz": (2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": (2049, (60000,)),
    "t10k-images-idx3-ubyte.gz": (2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": (2049, (10000,)),
}
# SHA-256 of the DECOMPRESSED IDX files, not of the .gz files: Debian recompresses them, so the gzip
# bytes differ between sources while the payload is the same. Computed from Debian's package
# dataset-fashion-mnist (`zcat /usr/share/datasets/fashion-mnist/<file> | sha256sum`).
FMNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BATCH_DIR = "cifar-10-batches-py"
# SHA-256 of the official archive (170498071 bytes; its md5 is c58f30108f718f92721af3b95e74349a),
# the value Keras' CIFAR-10 loader checks.
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
_CIFAR10_SPLIT_BATCHES: dict[str, tuple[str, ...]] = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
_CIFAR10_PIXELS = 3 * 32 * 32
_NUM_CLASSES = 10

# The only globals a CIFAR-10 batch pickle may name: those that rebuild a numpy array. The official
# batches were written by numpy 1.x (numpy.core); numpy 2 writes numpy._core.
_PICKLE_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def image_shape(name: str) -> tuple[int, int, int]:
    """The (channels, height, width) of one image of dataset `name`."""
    _check_name(name)
    return _IMAGE_SHAPES[name]


def load_uint8(name: str, split: str = "train", root: Path | None = None) -> torch.Tensor:
    """The images of `split` of dataset `name` as they are stored: uint8, N×C×H×W.

    `root` overrides where the files are looked for (see the module docstring). Returns a fresh
    tensor each call; the loaded data is cached in-process.
    """
    return _load(name, split, data_root(root))[0].clone()


def load_labels(name: str, split: str = "train", root: Path | None = None) -> torch.Tensor:
    """The class labels (0..9) of `split` of dataset `name`, int64 of length N, in image order."""
    return _load(name, split, data_root(root))[1].clone()


#: The largest image side accepted, four times CIFAR-10's: its training set resized to it takes
#: 9.8 GB in float32.
MAX_SIZE = 128


def check_size(size: int) -> int:
    """``size``, refused outside ``[2, MAX_SIZE]`` pixels."""
    if not 2 <= size <= MAX_SIZE:
        raise UserError(f"image size must lie in [2, {MAX_SIZE}] pixels, not {size}")
    return size


def load_images(
    name: str, split: str = "train", root: Path | None = None, size: int | None = None
) -> torch.Tensor:
    """The images of `split` of dataset `name` as float32 N×C×H×W in [-1, 1] (x / 127.5 - 1).

    With `size`, they are resized to size×size with an antialiased bilinear filter.
    """
    if size is not None:
        check_size(size)
    images = _load(name, split, data_root(root))[0].float() / 127.5 - 1.0
    if size is None or images.shape[-2:] == (size, size):
        return images
    resized = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    # The filter's weights are positive and sum to one, so only rounding can step outside [-1, 1].
    return resized.clamp_(-1.0, 1.0)


def iterate_batches(
    images: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[torch.Tensor]:
    """One pass over `images` (along dim 0) in batches of `batch_size`.

    With `shuffle`, the order is a random permutation drawn from `generator` (a CPU generator),
    so a seeded generator gives the same batches every time. With `drop_last`, a final batch
    smaller than `batch_size` is left out.
    """
    count = images.shape[0]
    if batch_size < 1:
        raise UserError(f"batch size must be positive, not {batch_size}")
    if drop_last and batch_size > count:
        raise UserError(f"batch size {batch_size} is larger than the {count} images: no full batch exists")
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    order = order.to(images.device)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        yield images[order[start : start + batch_size]]


def _check_name(name: str) -> None:
    """Raise a UserError unless `name` is a known dataset."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    """Raise a UserError unless `split` is a known split."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


DATA_DIR_VARIABLE = "SPDBENCH_DATA_DIR"
"""The environment variable naming a directory that holds the dataset's own files."""


def data_root(root: Path | None) -> Path | None:
    """``root``, else ``$SPDBENCH_DATA_DIR`` when set, else ``None`` (the default sources)."""
    given = root if root is not None else os.environ.get(DATA_DIR_VARIABLE) or None
    return None if given is None else Path(given)


@functools.lru_cache(maxsize=8)
def _load(name: str, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (uint8 images N×C×H×W, int64 labels N) of one split from ``root`` (``None``: the
    default sources); cached, so never modify them in place."""
    _check_name(name)
    _check_split(split)
    if name == "fmnist":
        images, labels = _load_fmnist(split, root)
    else:
        images, labels = _load_cifar10(split, root)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _cache_dir(name: str) -> Path:
    """Where downloads of dataset `name` go: $SPDBENCH_DATA/<name>, default ~/.cache/spdbench/data/<name>."""
    base = os.environ.get("SPDBENCH_DATA")
    return (Path(base) if base else Path.home() / ".cache" / "spdbench" / "data") / name


def _one_line(error: BaseException) -> str:
    """`error`'s message with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(error).split()) or type(error).__name__


def _http_get(url: str, out: BinaryIO) -> None:
    """Write the body of `url` to `out`; failures raise OSError (requests' errors are OSErrors)."""
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        for chunk in response.iter_content(chunk_size=1 << 20):
            out.write(chunk)


def _download(url: str, dest: Path, verify: Callable[[Path], object]) -> None:
    """Download `url` to `dest` through a temporary file in the same directory.

    `verify` is called on the temporary file and raises if it is wrong; the file is renamed to
    `dest` only after it passes, and removed on any failure.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    partial = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as out:
            _http_get(url, out)
        verify(partial)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def _sha256_of_file(path: Path) -> str:
    """The hex SHA-256 of the file at `path`."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _read_bytes(path: Path) -> bytes:
    """The contents of `path`, with an unreadable file reported as a UserError."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {_one_line(error)}") from error


# Fashion-MNIST


def _load_fmnist(split: str, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The (uint8 N×1×28×28 images, int64 N labels) of one Fashion-MNIST split."""
    images_file, labels_file = _FMNIST_SPLIT_FILES[split]
    images = _read_fmnist_file(_find_fmnist_file(images_file, root), images_file)
    labels = _read_fmnist_file(_find_fmnist_file(labels_file, root), labels_file)
    return images[:, None].copy(), labels.astype(np.int64)


def _find_fmnist_file(filename: str, root: Path | None) -> Path:
    """The path of Fashion-MNIST file `filename`: in `root` if given, else Debian's copy, else the
    cache, downloading it there from the official mirror if needed."""
    ways = (
        "install Debian's package (apt-get install dataset-fashion-mnist), "
        f"or allow network access to the official mirror {FMNIST_MIRROR}, "
        "or pass a directory holding the four official .gz files"
    )
    if root is not None:
        path = root / filename
        if not path.is_file():
            raise UserError(f"Fashion-MNIST file {path} not found; leave the directory unset to {ways}")
        return path
    cache = _cache_dir("fmnist")
    for directory in (DEBIAN_FMNIST_DIR, cache):
        if (directory / filename).is_file():
            return directory / filename
    url = FMNIST_MIRROR + filename
    try:
        _download(url, cache / filename, lambda partial: _read_fmnist_file(partial, filename, shown=url))
    except OSError as error:
        raise UserError(
            f"Fashion-MNIST file {filename} is in neither {DEBIAN_FMNIST_DIR} nor {cache}, "
            f"and downloading it failed ({_one_line(error)}); {ways}"
        ) from error
    return cache / filename


def _read_fmnist_file(path: Path, filename: str, shown: str | None = None) -> np.ndarray:
    """Decompress, check and parse the Fashion-MNIST IDX file `filename` stored at `path`.

    Checks the gzip stream, the IDX magic number and dimensions, the size and the SHA-256 of the
    decompressed bytes; `shown` is how errors name the file (default: its path).
    """
    shown = shown or str(path)
    raw = _read_bytes(path)
    if not raw:
        raise UserError(f"{shown} is empty; expected the official gzipped {filename}")
    try:
        payload = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise UserError(f"{shown} is not a valid gzip file (truncated or corrupt: {_one_line(error)})") from error
    magic, dims = _FMNIST_IDX_LAYOUT[filename]
    header_size = 4 * (1 + len(dims))
    if len(payload) < header_size:
        raise UserError(
            f"{shown} is too short: {len(payload)} bytes once decompressed, less than the {header_size}-byte "
            f"IDX header of {filename}"
        )
    header = struct.unpack(f">{1 + len(dims)}I", payload[:header_size])
    if header != (magic, *dims):
        raise UserError(f"{shown} is not the expected IDX file: header {header}, expected {(magic, *dims)}")
    expected_size = header_size + math.prod(dims)
    if len(payload) != expected_size:
        raise UserError(f"{shown} has {len(payload)} bytes once decompressed, expected {expected_size}")
    if hashlib.sha256(payload).hexdigest() != FMNIST_SHA256[filename]:
        raise UserError(f"{shown} does not match the SHA-256 of the official {filename} (corrupt or modified)")
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(dims)


# CIFAR-10


def _load_cifar10(split: str, root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The (uint8 N×3×32×32 images, int64 N labels) of one CIFAR-10 split."""
    names = _CIFAR10_SPLIT_BATCHES[split]
    if root is None:
        batches = _read_cifar10_archive(_cached_cifar10_archive(), names)
    elif root.is_file():
        batches = _read_cifar10_archive(root, names)
    elif (root / names[0]).is_file():
        batches = _read_cifar10_directory(root, names)
    elif (root / CIFAR10_BATCH_DIR / names[0]).is_file():
        batches = _read_cifar10_directory(root / CIFAR10_BATCH_DIR, names)
    elif (root / CIFAR10_ARCHIVE).is_file():
        batches = _read_cifar10_archive(root / CIFAR10_ARCHIVE, names)
    else:
        raise UserError(
            f"no CIFAR-10 data at {root}: pass the path of {CIFAR10_ARCHIVE}, of its extracted "
            f"{CIFAR10_BATCH_DIR} directory, or of a directory holding either; "
            f"or pass none to download it from {CIFAR10_URL}"
        )
    images = np.concatenate([data for data, _ in batches]).reshape(-1, *_IMAGE_SHAPES["cifar10"])
    labels = np.concatenate([labels for _, labels in batches])
    return images, labels


def _cached_cifar10_archive() -> Path:
    """The official CIFAR-10 archive in the cache directory, downloaded there if absent; hash-checked."""
    path = _cache_dir("cifar10") / CIFAR10_ARCHIVE
    if path.is_file():
        if _sha256_of_file(path) != CIFAR10_SHA256:
            raise UserError(f"{path} does not match the official SHA-256; delete it to download it again")
        return path

    def verify(partial: Path) -> None:
        """Raise a UserError unless the downloaded file is the official archive."""
        if _sha256_of_file(partial) != CIFAR10_SHA256:
            raise UserError(f"what {CIFAR10_URL} sent does not match the official SHA-256; nothing was kept")

    try:
        _download(CIFAR10_URL, path, verify)
    except OSError as error:
        raise UserError(
            f"CIFAR-10 is not in {path.parent} and downloading {CIFAR10_URL} failed ({_one_line(error)}); "
            f"allow network access, or copy the official {CIFAR10_ARCHIVE} into {path.parent} "
            "(set SPDBENCH_DATA to move that directory)"
        ) from error
    return path


def _read_cifar10_archive(archive: Path, names: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches `names` read from the CIFAR-10 tar.gz `archive` in one pass, without extracting it."""
    wanted = {f"{CIFAR10_BATCH_DIR}/{name}": name for name in names}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # Read to the end even once every batch is found, so that a truncated archive is reported.
            for member in tar:
                file = tar.extractfile(member) if member.name in wanted else None
                if file is not None:
                    shown = f"{archive}:{member.name}"
                    found[wanted[member.name]] = _parse_cifar10_batch(file.read(), shown)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        reason = _one_line(error)
        raise UserError(f"{archive} is not a valid tar.gz archive (truncated or corrupt: {reason})") from error
    missing = [member for member, name in wanted.items() if name not in found]
    if missing:
        raise UserError(f"{archive} lacks {', '.join(missing)}; is it the CIFAR-10 python archive?")
    return [found[name] for name in names]


def _read_cifar10_directory(directory: Path, names: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batches `names` read from an extracted cifar-10-batches-py `directory`."""
    batches = []
    for name in names:
        path = directory / name
        if not path.is_file():
            raise UserError(f"CIFAR-10 batch {path} not found; pass the path of {CIFAR10_ARCHIVE} instead")
        batches.append(_parse_cifar10_batch(_read_bytes(path), str(path)))
    return batches


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler for plain data and numpy arrays: it refuses every global outside _PICKLE_GLOBALS,
    so a crafted pickle cannot import or call anything else."""

    def find_class(self, module: str, name: str) -> object:
        """The allowed global `module.name`; anything else is an UnpicklingError."""
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return _PICKLE_GLOBALS[(module, name)]


def _parse_cifar10_batch(raw: bytes, shown: str) -> tuple[np.ndarray, np.ndarray]:
    """The (uint8 N×3072 data, int64 N labels) of one CIFAR-10 batch pickle; `shown` names it in errors.

    The batches are Python 2 pickles of a dict whose str keys load as bytes: b"data" holds N rows
    of 3072 bytes (the red, green and blue 32×32 planes, row-major) and b"labels" N ints in 0..9.
    """
    try:
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    # A corrupt or hostile pickle can fail in many ways (UnpicklingError, EOFError, ValueError,
    # TypeError from numpy, ...); each means the same to the user.
    except Exception as error:
        raise UserError(f"{shown} is not a valid CIFAR-10 batch pickle: {_one_line(error)}") from error
    if not isinstance(batch, dict):
        raise UserError(f"{shown} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, not a dict")
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (_CIFAR10_PIXELS,)):
        raise UserError(f'{shown} is not a CIFAR-10 batch: b"data" is not a uint8 array of {_CIFAR10_PIXELS}-byte rows')
    labels = np.asarray(labels if isinstance(labels, list) else None)
    valid = labels.dtype.kind in "iu" and labels.shape == (len(data),)
    if not (valid and ((labels >= 0) & (labels < _NUM_CLASSES)).all()):
        raise UserError(f'{shown} is not a CIFAR-10 batch: b"labels" is not a list of {len(data)} classes in 0..9')
    return data, labels.astype(np.int64)
