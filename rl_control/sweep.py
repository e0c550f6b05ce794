"""Robustness sweep: evaluate ONNX policies over a grid of dynamics (``rl-control sweep``).

Every grid point runs the same deterministic episodes (same seeds) for each policy on the task's simulated
robot with ONE dynamics parameter fixed to the grid value and every other one at its nominal value. The
parameters map onto the domain-randomization machinery (:class:`~rl_control.envs.RandomizationConfig`):
fixing a parameter is a ``[value, value]`` range (or a noise std), so the sweep varies exactly what
randomized training varies. Results go to ``sweep.json`` and ``sweep.png`` (return against each parameter,
one line per policy, the task's success threshold dashed).

Extension point: :func:`register_parameter` adds a parameter that writes into :attr:`SweepSettings.extra`
and :func:`run_sweep` takes an ``env_factory`` building the environment from :class:`SweepSettings`; the
servo-bus emulator's reality-gap parameters plug in there (an env factory driving the emulated arm).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_control.config.errors import FieldError
from rl_control.config.validation import did_you_mean
from rl_control.envs.randomization import ObservationNoiseConfig, RandomizationConfig

log = logging.getLogger(__name__)

JSON_FILE = "sweep.json"
PLOT_FILE = "sweep.png"
MAX_GRID_POINTS = 1000
EVAL_SEED = 2_000_000  # episode seeds EVAL_SEED + i: the same start states for every policy and grid point


class SweepError(ValueError):
    """A sweep request is invalid (unknown parameter, bad grid, unusable policy); the message says which."""


@dataclass
class SweepSettings:
    """What one grid point changes: the simulator's randomization (fixed values) and backend extras."""

    randomization: RandomizationConfig
    extra: dict[str, float] = field(default_factory=dict)  # for other backends, e.g. an emulator's gap


@dataclass(frozen=True)
class SweepParameter:
    """A sweepable dynamics parameter: ``apply(settings, value)`` fixes it in ``settings``,
    ``nominal(settings)`` reads its value there (the nominal value when given the nominal settings)."""

    name: str
    help: str
    nominal: Callable[[SweepSettings], float]
    apply: Callable[[SweepSettings, float], None]


@dataclass(frozen=True)
class ParameterGrid:
    """``count`` evenly spaced values of one parameter from ``low`` to ``high``."""

    name: str
    low: float
    high: float
    count: int

    @property
    def values(self) -> list[float]:
        return [float(v) for v in np.linspace(self.low, self.high, self.count)]


def _range_parameter(name: str, help_text: str) -> SweepParameter:
    def apply(settings: SweepSettings, value: float) -> None:
        fixed: dict[str, Any] = {name: [value, value]}
        settings.randomization = dataclasses.replace(settings.randomization, **fixed)

    def nominal(settings: SweepSettings) -> float:
        return float(getattr(settings.randomization, name)[0])

    return SweepParameter(name, help_text, nominal, apply)


def _noise_parameter(channel: str, help_text: str) -> SweepParameter:
    def apply(settings: SweepSettings, value: float) -> None:
        std: dict[str, Any] = {channel: value}
        noise = dataclasses.replace(settings.randomization.observation_noise, **std)
        settings.randomization = dataclasses.replace(settings.randomization, observation_noise=noise)

    def nominal(settings: SweepSettings) -> float:
        return float(getattr(settings.randomization.observation_noise, channel))

    return SweepParameter(f"observation_noise.{channel}", help_text, nominal, apply)


def _push_parameter() -> SweepParameter:
    def apply(settings: SweepSettings, value: float) -> None:
        settings.randomization = dataclasses.replace(settings.randomization, push_velocity=value)

    def nominal(settings: SweepSettings) -> float:
        return settings.randomization.push_velocity

    return SweepParameter("push_velocity", "max velocity kick of the random pushes", nominal, apply)


def nominal_settings(robot: str | None = None) -> SweepSettings:
    """Randomization switched on with every quantity at its nominal value (the sweep's baseline).

    Friction is absolute in the randomization (not a scale): its nominal value is the median sliding
    friction of ``robot``'s model (MuJoCo's default 1.0 without a robot).
    """
    ranges = {
        f.name: [0.0, 0.0] if f.name in ("added_mass", "com_offset") or f.name.endswith("_s") else [1.0, 1.0]
        for f in dataclasses.fields(RandomizationConfig)
        if f.type == "list[float]" and f.name != "push_interval_s"
    }
    if robot is not None:
        from rl_control.envs.robot_model import load_model

        friction = float(np.median(load_model(robot).geom_friction[:, 0]))
        ranges["friction"] = [friction, friction]
    silent = ObservationNoiseConfig(**{f.name: 0.0 for f in dataclasses.fields(ObservationNoiseConfig)})
    randomization = RandomizationConfig(
        enabled=True,
        observation_noise=silent,
        push_velocity=0.0,
        initial_position_noise=0.0,
        initial_velocity_noise=0.0,
        **ranges,
    )
    return SweepSettings(randomization)


def _builtin_parameters() -> dict[str, SweepParameter]:
    parameters: dict[str, SweepParameter] = {}
    for f in dataclasses.fields(RandomizationConfig):
        if f.type == "list[float]" and f.name != "push_interval_s":
            parameters[f.name] = _range_parameter(f.name, str(f.metadata["help"]))
    for f in dataclasses.fields(ObservationNoiseConfig):
        parameter = _noise_parameter(f.name, str(f.metadata["help"]))
        parameters[parameter.name] = parameter
    push = _push_parameter()
    parameters[push.name] = push
    return parameters


#: Sweepable parameters by name; :func:`register_parameter` adds more.
PARAMETERS: dict[str, SweepParameter] = _builtin_parameters()


def register_parameter(parameter: SweepParameter) -> None:
    """Make another parameter sweepable (e.g. an emulator's reality gap writing ``settings.extra``)."""
    if parameter.name in PARAMETERS:
        raise ValueError(f"sweep parameter {parameter.name!r} already exists")
    PARAMETERS[parameter.name] = parameter


def parse_grid(text: str) -> ParameterGrid:
    """Parse ``NAME=LOW:HIGH:N``; :class:`SweepError` names the parameter and what is wrong."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise SweepError(f"--param {text!r}: expected NAME=LOW:HIGH:N, e.g. mass_scale=0.5:1.5:5")
    if name not in PARAMETERS:
        raise SweepError(
            f"--param {name!r}: unknown parameter{did_you_mean(name, PARAMETERS)}; "
            f"available: {', '.join(PARAMETERS)}"
        )
    parts = spec.split(":")
    try:
        if len(parts) != 3:
            raise ValueError("need LOW:HIGH:N")
        low, high, count = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError as error:
        raise SweepError(f"--param {name}: {spec!r} is not LOW:HIGH:N ({error})") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise SweepError(f"--param {name}: need finite LOW <= HIGH, got {low:g}:{high:g}")
    if not 1 <= count <= MAX_GRID_POINTS or (count == 1 and low != high):
        raise SweepError(f"--param {name}: N must be in [2, {MAX_GRID_POINTS}] (1 only when LOW == HIGH)")
    grid = ParameterGrid(name, low, high, count)
    for value in (low, high):  # the randomization's own bounds, checked before any episode runs
        settings_at(nominal_settings(), grid.name, value)
    return grid


def settings_at(base: SweepSettings, name: str, value: float) -> SweepSettings:
    """``base`` with parameter ``name`` fixed to ``value``; :class:`SweepError` if out of its bounds."""
    settings = SweepSettings(base.randomization, dict(base.extra))
    try:
        PARAMETERS[name].apply(settings, value)
    except FieldError as error:
        raise SweepError(f"--param {name}: {value:g} is not allowed ({error.message})") from None
    return settings


EnvFactory = Callable[[str, SweepSettings], Any]


def simulated_env(task: str, settings: SweepSettings) -> Any:
    """The default backend: the task on the MuJoCo robot with ``settings.randomization``."""
    from rl_control.envs.gym_env import RobotTaskEnv

    if settings.extra:
        raise SweepError(
            f"the simulator does not model {sorted(settings.extra)}; pass an env_factory that does"
        )
    return RobotTaskEnv(task, randomization=settings.randomization)


@dataclass
class LoadedPolicy:
    """An ONNX policy under evaluation, with the label its results are reported under."""

    path: Path
    label: str
    act: Callable[[np.ndarray], np.ndarray]
    task: str | None  # from its contract, None without one


def load_policies(paths: Sequence[Path]) -> list[LoadedPolicy]:
    """Load ``paths`` as deterministic policies; labels are file stems (parent/stem when stems repeat)."""
    from rl_control.policy.contract import ContractError, contract_of
    from rl_control.policy.runtime import InvalidPolicyError, OnnxPolicy

    stems = [Path(p).stem for p in paths]
    loaded = []
    for path, stem in zip(paths, stems, strict=True):
        path = Path(path)
        try:
            policy = OnnxPolicy.from_file(path)
            contract = contract_of(policy, str(path))
        except (InvalidPolicyError, ContractError) as error:
            raise SweepError(str(error)) from None
        label = stem if stems.count(stem) == 1 else f"{path.parent.name}/{stem}"
        loaded.append(LoadedPolicy(path, label, policy, contract.task if contract else None))
    if len({policy.label for policy in loaded}) != len(loaded):
        raise SweepError("two policies have the same path; pass each policy once")
    return loaded


def resolve_task(policies: Sequence[LoadedPolicy], task: str | None) -> str:
    """``task`` if given (warning about policies trained on another), else the policies' contract task."""
    trained = {policy.task for policy in policies if policy.task is not None}
    if task is None:
        if len(trained) != 1:
            raise SweepError(
                "pass --task: the policies' contracts name "
                + (f"different tasks {sorted(trained)}" if trained else "no task")
            )
        return trained.pop()
    for policy in policies:
        if policy.task is not None and policy.task != task:
            log.warning("%s was trained on %s, evaluating it on %s", policy.path, policy.task, task)
    return task


def run_sweep(
    policy_paths: Sequence[Path],
    grids: Sequence[ParameterGrid],
    *,
    task: str | None = None,
    episodes: int = 5,
    out_dir: Path = Path("sweep"),
    env_factory: EnvFactory = simulated_env,
) -> dict[str, Any]:
    """Evaluate each policy at every grid point and at the nominal model; write JSON and PNG; return it."""
    from rl_control.envs.tasks import make_task
    from rl_control.learning.gym_train import evaluate_policy

    if episodes < 1:
        raise SweepError(f"--episodes must be >= 1, got {episodes}")
    if not grids:
        raise SweepError("give at least one --param NAME=LOW:HIGH:N")
    if len({grid.name for grid in grids}) != len(grids):
        raise SweepError("each --param may be given once")
    policies = load_policies(policy_paths)
    task_name = resolve_task(policies, task)
    task_object = make_task(task_name)
    threshold = task_object.success_threshold
    base = nominal_settings(task_object.robot)

    def mean_returns(settings: SweepSettings) -> dict[str, tuple[float, float]]:
        env = env_factory(task_name, settings)
        try:
            result = {}
            for policy in policies:
                returns = evaluate_policy(env, policy.act, episodes=episodes, seed=EVAL_SEED)
                spread = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
                result[policy.label] = (float(np.mean(returns)), spread)
            return result
        finally:
            env.close()

    nominal = mean_returns(base)
    results: dict[str, Any] = {}
    for grid in grids:
        points = [mean_returns(settings_at(base, grid.name, value)) for value in grid.values]
        results[grid.name] = {
            "values": grid.values,
            "nominal_value": PARAMETERS[grid.name].nominal(base),
            "mean_return": {p.label: [point[p.label][0] for point in points] for p in policies},
            "std_return": {p.label: [point[p.label][1] for point in points] for p in policies},
        }
        log.info("swept %s over %d values", grid.name, grid.count)
    report = {
        "task": task_name,
        "episodes": episodes,
        "success_threshold": threshold,
        "policies": {p.label: str(p.path) for p in policies},
        "nominal_return": {label: value[0] for label, value in nominal.items()},
        "nominal_std_return": {label: value[1] for label, value in nominal.items()},
        "parameters": results,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JSON_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot_sweep(report, out_dir / PLOT_FILE)
    return report


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    """Return against each swept parameter (one panel each), one line per policy, threshold dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["parameters"])
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, name in zip(axes.flat, names, strict=False):
        result = report["parameters"][name]
        for label, means in result["mean_return"].items():
            low = np.subtract(means, result["std_return"][label])
            high = np.add(means, result["std_return"][label])
            (line,) = axis.plot(result["values"], means, marker="o", label=label)
            axis.fill_between(result["values"], low, high, color=line.get_color(), alpha=0.15)
        axis.axhline(report["success_threshold"], color="k", linestyle="--", linewidth=1, label="success")
        axis.axvline(result["nominal_value"], color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel(name)
        axis.set_ylabel("return")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(names) :]:
        axis.set_visible(False)
    axes.flat[0].legend(fontsize="small")
    figure.suptitle(f"{report['task']}: mean return over {report['episodes']} episodes per point")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
