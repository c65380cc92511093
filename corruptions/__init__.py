"""The corruption processes behind one interface, and the registry that names them."""

from __future__ import annotations

import inspect
from typing import Any

from corruptions.base import Corruption, ImageShape, Process
from corruptions.blurring import BlurringDiffusion
from corruptions.ddpm import DDPM
from corruptions.errors import ConfigurationError
from corruptions.heat import HeatDissipation
from corruptions.spd import ShortestPathDiffusion
from corruptions.spectrum import Spectrum

PROCESSES: dict[str, type[Process]] = {
    "ddpm": DDPM,
    "heat": HeatDissipation,
    "blurring": BlurringDiffusion,
    "spd": ShortestPathDiffusion,
}


def process_options(name: str) -> list[str]:
    """The keyword options a process's constructor takes (besides the image shape and spectrum)."""
    parameters = inspect.signature(PROCESSES[name].__init__).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "spectrum"]


KINDS = {int: "an integer", float: "a number", str: "text", bool: "true or false"}  #: option values, in words


def make_process(
    name: str, image_shape: ImageShape, spectrum: Spectrum | None = None, **options: Any
) -> Process:
    """The process ``name`` for images of ``image_shape``; ``spectrum`` goes to the processes
    that use one. Unknown names and options are refused with the valid ones listed, and so is a
    value of another type than the option's default (``levels=2.5``); an integer given for an
    option whose default is a float is taken as that float."""
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
    options = {
        key: float(value) if isinstance(defaults.get(key), float) and type(value) is int else value
        for key, value in options.items()
    }
    wrong = [
        f"{key} must be {KINDS.get(type(defaults[key]), type(defaults[key]).__name__)}, got {value!r}"
        for key, value in options.items()
        if key in defaults and type(value) is not type(defaults[key])
    ]
    if wrong:
        raise ConfigurationError(f"process {name!r}: {'; '.join(wrong)}")
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
