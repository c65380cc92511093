"""The corruption processes behind one interface, and the registry that names them."""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

from corruptions.base import Corruption, ImageShape, Process
from corruptions.blurring import BlurringDiffusion
from corruptions.ddpm import DDPM
from corruptions.errors import ConfigurationError
from corruptions.heat import HeatDissipation
from corruptions.spd import ShortestPathDiffusion
from corruptions.spectrum import Spectrum

#: Every process, by its name.
PROCESSES: dict[str, type[Process]] = {
    process.name: process for process in (DDPM, HeatDissipation, BlurringDiffusion, ShortestPathDiffusion)
}


def process_options(name: str) -> list[str]:
    """The keyword options a process's constructor takes (besides the image shape and spectrum)."""
    parameters = inspect.signature(PROCESSES[name].__init__).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "spectrum"]


#: The values an option whose default has the key's type takes (no boolean for a number), in words.
KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"),
    int: ((numbers.Integral,), "an integer"),
    float: ((numbers.Real,), "a number"),
    str: ((str,), "text"),
}


def checked_option(key: str, value: Any, default: Any) -> Any:
    """``value`` for an option whose default is ``default``, as the default's type (numpy's
    numbers and an integer for a float are converted); ``ConfigurationError`` for a value of
    another kind (``levels=2.5``, ``levels=nan``) or a number that is not finite
    (``sigma=inf``); an option without a default takes anything."""
    kind = KINDS.get(type(default))
    if kind is None:
        return value
    accepted, words = kind
    if not isinstance(value, accepted) or (isinstance(value, bool) and type(default) is not bool):
        raise ConfigurationError(f"{key} must be {words}, got {value!r}")
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        raise ConfigurationError(f"{key} must be a finite number, got {value!r}")
    return type(default)(value)


def make_process(
    name: str, image_shape: ImageShape, spectrum: Spectrum | None = None, **options: Any
) -> Process:
    """The process ``name`` for images of ``image_shape``; ``spectrum`` goes to the processes
    that use one. Unknown names and options are refused with the valid ones listed, and a value
    of another kind than the option's default (``checked_option``) with the option named."""
    if name not in PROCESSES:
        raise ConfigurationError(f"unknown process {name!r}; valid: {', '.join(PROCESSES)}")
    cls = PROCESSES[name]
    valid = process_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigurationError(
            f"process {name!r} has no option {', '.join(unknown)}; its options: {', '.join(valid) or 'none'}"
        )
    defaults = cls.option_defaults(image_shape)
    try:
        options = {key: checked_option(key, value, defaults.get(key)) for key, value in options.items()}
    except ConfigurationError as error:
        raise ConfigurationError(f"process {name!r}: {error}") from None
    if cls.uses_spectrum:
        if spectrum is None:
            raise ConfigurationError(f"process {name!r} needs a power spectrum")
        return cls(image_shape, spectrum=spectrum, **options)  # type: ignore[call-arg]
    return cls(image_shape, **options)  # type: ignore[call-arg]


__all__ = [
    "PROCESSES",
    "ConfigurationError",
    "Corruption",
    "Process",
    "Spectrum",
    "make_process",
    "process_options",
]
