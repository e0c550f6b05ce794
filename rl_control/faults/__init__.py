"""Fault injection: a registry of scenarios run against real node processes (``rl-control bench faults``).

A scenario is a function ``(ScenarioContext) -> ScenarioResult`` registered with :func:`scenario`; it
injects one fault, measures the outcome (counts, rows, exit codes) and says whether the system held.
Scenario modules are listed in :data:`SCENARIO_MODULES` and imported only when the bench runs, so this
registry stays free of ROS; each module registers its scenarios at import. To add scenarios, write a
module like :mod:`rl_control.faults.learner` and list it here.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Modules whose import registers scenarios.
SCENARIO_MODULES: tuple[str, ...] = (
    "rl_control.faults.learner",
    "rl_control.faults.persistence",
    "rl_control.faults.actor",
    "rl_control.faults.policy",
    "rl_control.faults.driver",
    "rl_control.faults.config",
)


@dataclass
class ScenarioContext:
    """What a scenario runs in: a private work directory and a ROS probe in a domain of its own."""

    workdir: Path
    probe: Any  # rl_control.testing.probe.RosProbe (kept untyped here: the registry imports no ROS)


@dataclass
class ScenarioResult:
    """The measured outcome: a one-line ``figure`` for the table, the verdict and the raw numbers."""

    figure: str
    held: bool
    values: dict[str, float] = field(default_factory=dict)


ScenarioFunction = Callable[[ScenarioContext], ScenarioResult]
SCENARIOS: dict[str, ScenarioFunction] = {}


def scenario(name: str) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register a scenario under ``name`` (unique)."""

    def register(function: ScenarioFunction) -> ScenarioFunction:
        if name in SCENARIOS:
            raise ValueError(f"fault scenario {name!r} is registered twice")
        SCENARIOS[name] = function
        return function

    return register


def load_scenarios() -> dict[str, ScenarioFunction]:
    """Import every module of :data:`SCENARIO_MODULES`; returns the registry."""
    for module in SCENARIO_MODULES:
        importlib.import_module(module)
    return SCENARIOS


def run_scenario(name: str, workdir: Path) -> ScenarioResult:
    """Run one registered scenario in a fresh ROS domain with its own probe; a crash is a failed verdict."""
    from rl_control.testing.node_process import isolated_ros_domain
    from rl_control.testing.probe import RosProbe

    function = load_scenarios()[name]
    workdir.mkdir(parents=True, exist_ok=True)
    with isolated_ros_domain(), RosProbe(f"faults_{name}") as probe:
        try:
            return function(ScenarioContext(workdir, probe))
        except Exception as error:  # the table reports it; the other scenarios still run
            return ScenarioResult(f"scenario raised {error!r}", held=False)


def bench_faults(json_output: bool = False, quick: bool = False) -> dict[str, Any]:
    """Run every registered scenario against real node processes; one table row per scenario.

    ``quick`` is accepted for the command line's sake; every scenario always runs in full. Returns
    ``{"scenarios", "held", "failed", "results": {name: {"figure", "verdict", "seconds"}}}``.
    """
    del quick
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rl_control_faults_") as root:
        for name in sorted(load_scenarios()):
            started = time.monotonic()
            result = run_scenario(name, Path(root) / name)
            results[name] = {
                "figure": result.figure,
                "verdict": "held" if result.held else "FAILED",
                "seconds": round(time.monotonic() - started, 1),
            }
            if not json_output:
                print(f"{name:<34} {results[name]['verdict']:<7} {result.figure}", flush=True)
    held = sum(1 for entry in results.values() if entry["verdict"] == "held")
    summary = {"scenarios": len(results), "held": held, "failed": len(results) - held, "results": results}
    if not json_output:
        print(f"{held} of {len(results)} scenarios held")
    return summary
