"""Config fault scenarios: hostile experiment files and a deterministic mutation sweep of the shipped ones.

Loading a config is in-process work (no node needed to refuse a file), so these scenarios time
:func:`rl_control.config.load_experiment` directly; every node and ``rl-control config check`` loads
through it. A refusal must be a :class:`~rl_control.config.ConfigError` naming the file, fast; anything
else (another exception, a load that does not return) is a crash or a hang.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rl_control.config import ConfigError, load_experiment
from rl_control.faults import ScenarioContext, ScenarioResult, scenario
from rl_control.paths import config_path

#: A refusal is "fast" within this, plus 1.5 times what stock PyYAML takes to parse the largest hostile
#: file in the same run (a refusal that must read the file cannot beat reading it; the issue's alias bomb
#: took > 40 s, exponential in the file's size).
REFUSE_WITHIN_S = 2.0
#: A load slower than this counts as a hang (it is interrupted where a timer can interrupt it).
HANG_S = 60.0
SHIPPED_CONFIGS = ("pendulum_sim.yaml", "arm_sim.yaml", "arm_dynamixel.yaml")
MUTATED_COPIES = 300
UNICODE_JUNK = ("\u202e\u0000x", "é" * 50, "\U0001f916", "\ufeff", "a\nb: [", "${HOME}", "*alias", "~")


def attack_files(workdir: Path) -> dict[str, tuple[str, str]]:
    """The issue's hostile files: name -> (YAML text, what the refusal must mention)."""
    (workdir / "a_directory").mkdir(exist_ok=True)
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb.append("sim_node: {ros__parameters: {bomb: *a9}}")
    layers = ", ".join(["8192"] * 200)
    names = ", ".join(f"j{i}" for i in range(100_000))
    return {
        "alias_bomb": ("\n".join(bomb) + "\n", "aliases"),
        "nesting_3000_deep": ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nesting deeper"),
        "seed_1e30": ("/**: {ros__parameters: {seed: 1.0e30}}\n", "seed"),
        "200_layers_of_8192": (
            f"learner_node: {{ros__parameters: {{agent: {{hidden_sizes: [{layers}]}}}}}}\n",
            "agent.hidden_sizes",
        ),
        "100000_joint_names": (f"/**: {{ros__parameters: {{joint_names: [{names}]}}}}\n", "joint_names"),
        "run_dir_empty": ("/**: {ros__parameters: {run_dir: ''}}\n", "run_dir"),
        "policy_file_a_directory": (
            f"actor_node: {{ros__parameters: {{policy_file: {workdir / 'a_directory'}}}}}\n",
            "policy_file",
        ),
    }


@dataclass
class LoadOutcome:
    """How one file load ended: ``valid``, ``refused`` (ConfigError), ``crash`` or ``hang``."""

    kind: str
    seconds: float
    message: str = ""


class LoadHangError(Exception):
    """Raised by the interval timer inside a load that took longer than :data:`HANG_S`."""


@contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    """Raise :class:`LoadHangError` in the block after ``seconds`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise LoadHangError

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


def load_outcome(path: Path) -> LoadOutcome:
    """Load ``path`` as an experiment and classify the result, timed."""
    started = time.monotonic()
    try:
        with hang_guard(HANG_S):
            load_experiment(path)
    except ConfigError as error:
        return LoadOutcome("refused", time.monotonic() - started, str(error))
    except LoadHangError:
        return LoadOutcome("hang", time.monotonic() - started)
    except Exception as error:  # the finding: anything but ConfigError is a crash
        return LoadOutcome("crash", time.monotonic() - started, f"{type(error).__name__}: {error}")
    seconds = time.monotonic() - started
    return LoadOutcome("hang" if seconds > HANG_S else "valid", seconds)


@scenario("config_hostile_files")
def hostile_files(context: ScenarioContext) -> ScenarioResult:
    """The issue's seven hostile files: each refused fast with a ConfigError naming the file and the key."""
    attacks = attack_files(context.workdir)
    largest = max((text for text, _ in attacks.values()), key=len)
    started = time.monotonic()
    yaml.load(largest, Loader=yaml.SafeLoader)  # the reference: stock PyYAML reading the same bytes
    reference_s = time.monotonic() - started
    limit_s = REFUSE_WITHIN_S + 1.5 * reference_s
    values: dict[str, float] = {"reference_parse_s": reference_s}
    refused = 0
    slowest = 0.0
    problems: list[str] = []
    for name, (text, mentions) in attacks.items():
        path = context.workdir / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        outcome = load_outcome(path)
        values[f"{name}_s"] = outcome.seconds
        slowest = max(slowest, outcome.seconds)
        clear = str(path) in outcome.message and mentions in outcome.message
        if outcome.kind == "refused" and clear and outcome.seconds < limit_s:
            refused += 1
        else:
            problems.append(f"{name}: {outcome.kind} in {outcome.seconds:.2f} s {outcome.message[:120]!r}")
    total = len(attacks)
    values.update(refused=refused, attacks=total, slowest_s=slowest, limit_s=limit_s)
    times = ", ".join(f"{name} {values[f'{name}_s'] * 1e3:.0f}" for name in attacks)
    figure = (
        f"{refused} of {total} refused naming file and key in ms: {times}; stock PyYAML parses the largest "
        f"({len(largest) >> 10} KiB) in {reference_s * 1e3:.0f} ms"
    )
    if problems:
        figure += "; " + "; ".join(problems)
    return ScenarioResult(figure, held=refused == total, values=values)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path (dict keys, list indices) in a YAML document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _junk_value(rng: np.random.Generator, value: Any) -> Any:
    """A value of another type, a huge or non-finite number, or unicode junk."""
    choices: list[Any] = [
        "junk",
        UNICODE_JUNK[int(rng.integers(len(UNICODE_JUNK)))],
        1e308,
        -1e308,
        math.inf,
        math.nan,
        10**30,
        -(2**63),
        [],
        {},
        [1, "two", None],
        {"nested": {"deeper": [0.5]}},
        None,
        True,
    ]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        choices += [value * 1e12, -value, str(value)]
    if isinstance(value, list):
        choices += [value * 200, value[:0], [value]]
    return choices[int(rng.integers(len(choices)))]


def mutate(document: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A copy of ``document`` with one to three random mutations (deletions, type swaps, junk, new keys)."""
    mutated = copy.deepcopy(document)
    for _ in range(int(rng.integers(1, 4))):
        paths = list(_paths(mutated))
        if not paths:
            break
        path = paths[int(rng.integers(len(paths)))]
        parent: Any = mutated
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        operation = int(rng.integers(3))
        if operation == 0:
            del parent[key]
        elif operation == 1 or not isinstance(parent, dict):
            parent[key] = _junk_value(rng, parent[key])
        else:
            parent[UNICODE_JUNK[int(rng.integers(len(UNICODE_JUNK)))] + "_key"] = _junk_value(rng, 1.0)
    return mutated


def mutation_sweep(workdir: Path, copies: int = MUTATED_COPIES, seed: int = 0) -> dict[str, Any]:
    """Load ``copies`` mutated copies of the shipped configs; count each outcome (deterministic in
    ``seed``)."""
    rng = np.random.default_rng(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    documents = [yaml.safe_load(config_path(name).read_text(encoding="utf-8")) for name in SHIPPED_CONFIGS]
    counts = {"valid": 0, "refused": 0, "crash": 0, "hang": 0, "unnamed": 0}
    examples: list[str] = []
    slowest = 0.0
    for index in range(copies):
        path = workdir / f"mutant_{index:04d}.yaml"
        document = mutate(documents[index % len(documents)], rng)
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        outcome = load_outcome(path)
        counts[outcome.kind] += 1
        slowest = max(slowest, outcome.seconds)
        unnamed = outcome.kind == "refused" and str(path) not in outcome.message
        counts["unnamed"] += int(unnamed)
        if (outcome.kind in ("crash", "hang") or unnamed) and len(examples) < 3:
            examples.append(f"{path.name}: {outcome.kind} {outcome.message[:160]!r}")
    return {**counts, "copies": copies, "slowest_s": slowest, "examples": examples}


@scenario("config_mutation_sweep")
def config_mutation_sweep(context: ScenarioContext) -> ScenarioResult:
    """300 mutated copies of the shipped configs: each loads or is refused cleanly, none crashes or hangs."""
    sweep = mutation_sweep(context.workdir)
    figure = (
        f"{sweep['copies']} mutants: {sweep['refused']} ConfigError, {sweep['valid']} still valid, "
        f"{sweep['crash']} crashes, {sweep['hang']} hangs, {sweep['unnamed']} errors not naming the file, "
        f"slowest {sweep['slowest_s'] * 1e3:.0f} ms"
    )
    if sweep["examples"]:
        figure += "; e.g. " + "; ".join(sweep["examples"])
    held = sweep["crash"] == sweep["hang"] == sweep["unnamed"] == 0
    values = {key: float(value) for key, value in sweep.items() if key != "examples"}
    return ScenarioResult(figure, held=held, values=values)
