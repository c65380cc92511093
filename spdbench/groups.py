"""How a suite's runs group: each process at its defaults, configurations over seeds, and sweeps
of one numeric option (SPD's perturbations are such sweeps). The report draws them and
``spdbench.verdicts`` tests them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from corruptions import PROCESSES
from spdbench.records import RunRecord, differences


def is_default(run: RunRecord) -> bool:
    """Whether ``run``'s process has all its options at their defaults (its label is its name)."""
    return run.label == run.process


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seed_groups(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """``runs`` grouped by configuration (``RunRecord.configuration``: everything but the seed),
    in the order each configuration first appears; a run that never started is in none (it has no
    configuration to tell which)."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        if run.config:
            groups.setdefault(run.configuration, []).append(run)
    return list(groups.values())


@dataclass(frozen=True)
class Sweep:
    """Finished runs of one process at one budget that differ in one numeric option: one or more
    series (runs that agree on every other setting: the other options and the ``protocol``, such
    as the sampler), each with the process's default runs."""

    process: str
    option: str
    budget: str
    series: dict[str, list[RunRecord]]  #: by the other settings that tell the series apart


def option_sweeps(runs: list[RunRecord]) -> list[Sweep]:
    """Every sweep among ``runs``: for each process, budget and numeric option, the runs grouped by
    their other settings (``RunRecord.settings``); a group is a series when it holds a run away
    from the defaults and two or more values of the option. The process's runs at its defaults
    join each series whose other settings are theirs (``origin``): the origin of the sweep, as
    SPD itself is of each family of its variants."""
    groups: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = {}
    for run in runs:
        for option, value in run.options.items():
            if is_number(value):
                others = json.dumps({k: v for k, v in run.settings.items() if k != option}, sort_keys=True)
                groups.setdefault((run.process, run.budget, option), {}).setdefault(others, []).append(run)
    sweeps = []
    for (process, budget, option), by_others in groups.items():
        defaults = [run for run in runs if run.process == process and run.budget == budget and is_default(run)]
        series = {}
        for others, members in by_others.items():
            start = origin(defaults, json.loads(others), option)
            swept = [*start, *(run for run in members if not is_default(run))]
            if len(swept) > len(start) and len({run.options[option] for run in swept}) > 1:
                series[others] = swept
        if series:
            sweeps.append(Sweep(process, option, budget, series_names(series, process, defaults)))
    return sweeps


def origin(defaults: list[RunRecord], others: dict[str, Any], option: str) -> list[RunRecord]:
    """The runs among ``defaults`` (a process's, at its defaults) that are the origin of a sweep of
    ``option`` over runs whose other settings are ``others``: those that have these settings;
    failing any, those that have them but for the options riding with ``option`` in one of the
    process's variant families (SPD's ``perturb_kind``: with no perturbation every kind is SPD).
    Otherwise a sweep would mix the effect of ``option`` with that of another setting."""
    exact = [run for run in defaults if all(run.settings.get(key) == value for key, value in others.items())]
    if exact or not defaults:
        return exact
    process = PROCESSES.get(defaults[0].process)
    families = process.variants.values() if process is not None else []
    riding = {key for family in families for options in family if option in options for key in options}
    return [
        run for run in defaults
        if all(run.settings.get(key) == value for key, value in others.items() if key not in riding)
    ]


def series_names(
    series: dict[str, list[RunRecord]], process: str, defaults: list[RunRecord]
) -> dict[str, list[RunRecord]]:
    """The series keyed by what tells them apart (``schedule=cosine``, ``sampler.solver=ddim``):
    the other settings (JSON) that differ between them or from those of any of the process's
    runs at its defaults (``defaults``); the process's name when none does."""
    told = differences({others: json.loads(others) for others in series}, [run.settings for run in defaults])
    return {told[others] or process: members for others, members in series.items()}
