"""The ``rl-control`` command line.

Subcommands: ``launch`` (the node graph), ``train`` (in-process training on a Gymnasium env),
``eval`` (deterministic evaluation of an ONNX policy), ``export`` (ONNX from a run directory),
``record`` (topics into a rosbag2 MCAP file; a bag's transitions, or the arm's scripted expert, into a
demonstration file),
``emulate`` (a servo bus on a pseudo-terminal), ``sweep`` (policies over a grid of dynamics), ``bench``
and ``config``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rl_control.config.errors import ConfigError

if TYPE_CHECKING:
    from rl_control.envs.randomization import RandomizationConfig

log = logging.getLogger("rl_control")

BENCHMARKS = {
    "learner": "rl_control.learning.bench:bench_learner",
    "sample-efficiency": "rl_control.learning.bench:bench_sample_efficiency",
    "sim": "rl_control.envs.bench:bench_sim",
    "control-loop": "rl_control.benchmarks.control_loop:bench_control_loop",
    "faults": "rl_control.faults:bench_faults",
    "driver": "rl_control.drivers.dynamixel.bench:bench_driver",
    "actors": "rl_control.benchmarks.actors:bench_actors",
    "main-job": "rl_control.benchmarks.main_job:bench_main_job",
    "sim-to-real": "rl_control.benchmarks.sim_to_real:bench_sim_to_real",
}
DEFAULT_EVAL_ENV = "rl_control/PendulumSwingup-v0"

EPILOG = """\
first steps:
  rl-control launch config/pendulum_sim.yaml     train pendulum swing-up online through the ROS 2 graph
  rl-control config check config/pendulum_sim.yaml
  rl-control train --gym-env Pendulum-v1 --preset droq --steps 5000
  rl-control eval runs/pendulum_sim/policy.onnx --env rl_control/PendulumSwingup-v0
  rl-control bench learner --json

Each subcommand has its own --help.
"""


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from rl_control.config import load_experiment

    class FlowListDumper(yaml.SafeDumper):
        """Block mappings, one-line lists: the usual look of a ROS 2 parameter file."""

    FlowListDumper.add_representer(
        list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
    )

    config = load_experiment(args.file)
    if args.action == "check":
        from rl_control.start_checks import start_problems

        problems = start_problems(config)
        for problem in problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        if problems:
            return 2
        print(f"{args.file}: OK (task {config.shared.task}, preset {config.learner_node.preset})")
    else:
        print(f"# {args.file}, fully resolved (every key explicit)")
        print(yaml.dump(config.to_ros_yaml(), Dumper=FlowListDumper, sort_keys=False), end="")
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from rl_control.graph import graph_layout
    from rl_control.launcher import NodeSelectionError, run_launch

    try:
        graph_layout(args.graph, with_sim=not args.no_sim, namespace=args.namespace, robots=args.robots)
    except ValueError as exc:
        print(f"rl-control launch: {exc}", file=sys.stderr)
        return 2
    try:
        return run_launch(
            Path(args.config),
            graph=args.graph,
            with_sim=not args.no_sim,
            max_minutes=args.max_minutes,
            progress=not args.no_progress,
            stop_on_success=not args.no_stop_on_success,
            task=args.task,
            sim_mode=args.sim_mode,
            policy_file=args.policy,
            namespace=args.namespace,
            robots=args.robots,
            only=tuple(name for names in args.only for name in names.split(",") if name),
        )
    except NodeSelectionError as exc:
        print(f"rl-control launch: {exc}", file=sys.stderr)
        return 2


def agent_overrides(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings as agent config overrides; values are YAML (``0.05``, ``[128, 128]``, ``true``).

    Raises ``ValueError`` naming the item without ``=``; unknown names are refused by the preset."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--agent {item!r}: expected NAME=VALUE, e.g. init_temperature=0.05")
        try:
            overrides[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--agent {item!r}: the value is not valid YAML ({exc})") from exc
    return overrides


def training_randomization(source: str | bool, env_id: str) -> RandomizationConfig:
    """The randomization ``--randomize`` asks for: the default ranges (``True``), or an experiment file's
    ``sim_node.randomization`` section (a path; it must be enabled and the file's task be ``env_id``'s).

    Raises ``ConfigError`` (naming the file and key) otherwise."""
    from rl_control.config import load_experiment
    from rl_control.envs import ENV_IDS, RandomizationConfig

    if source is True:
        return RandomizationConfig(enabled=True)
    config = load_experiment(str(source))
    if ENV_IDS.get(config.shared.task) != env_id:
        raise ConfigError(f"task {config.shared.task!r} is not the task of {env_id}", file=str(source))
    if not config.sim_node.randomization.enabled:
        raise ConfigError(
            "false: nothing to randomize", file=str(source), key="sim_node.randomization.enabled"
        )
    return config.sim_node.randomization


def _cmd_train(args: argparse.Namespace) -> int:
    from rl_control.learning import make_env_factory, train_gym

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    env_factory = None
    if args.randomize:
        if not args.gym_env.startswith("rl_control/"):
            print(
                f"rl-control train: --randomize needs an rl_control/* env, not {args.gym_env}",
                file=sys.stderr,
            )
            return 2
        try:
            randomization = training_randomization(args.randomize, args.gym_env)
        except ConfigError as exc:
            print(f"rl-control train: --randomize: {exc}", file=sys.stderr)
            return 2
        env_factory = make_env_factory(args.gym_env, randomization=randomization)
    try:
        overrides = agent_overrides(args.agent)
        if args.learning_starts is not None:
            overrides["learning_starts"] = args.learning_starts
        result = train_gym(
            env_id=args.gym_env,
            preset=args.preset,
            steps=args.steps,
            run_dir=Path(args.run_dir),
            seed=args.seed,
            eval_every=args.eval_every,
            demo_file=Path(args.demos) if args.demos else None,
            overrides=overrides,
            env_factory=env_factory,
        )
    except (OSError, ValueError, gym_error()) as exc:
        print(f"rl-control train: {exc}", file=sys.stderr)
        return 2
    if result["interrupted"] is not None:
        return 128 + int(result["interrupted"])
    final = result["final_eval_return"]
    log.info(
        "training finished: %d env steps, %d updates in %.0f s; last evaluation %s; policy %s",
        result["env_steps"],
        result["num_updates"],
        result["wall_s"],
        "-" if final is None else f"{final:.1f}",
        result.get("onnx_path", "-"),
    )
    return 0


def thread_count(text: str) -> int:
    """An argparse type: a number of threads, 0 meaning torch's own choice."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: torch's choice), got {value}")
    return value


def gym_error() -> type[Exception]:
    """Gymnasium's base error (unknown env id, bad env arguments), imported only when needed."""
    import gymnasium.error

    return gymnasium.error.Error


def _cmd_distill(args: argparse.Namespace) -> int:
    from rl_control.learning.distill import DistillConfig, distill

    config = DistillConfig(task=args.task, episodes=args.episodes, epochs=args.epochs, seed=args.seed)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        summary = distill(config, Path(args.run_dir))
    except (OSError, ValueError) as exc:
        print(f"rl-control distill: {exc}", file=sys.stderr)
        return 2
    log.info(
        "distilled %d expert steps in %.0f s: %s; nominal return %.1f, randomized %.1f (threshold %.0f)",
        summary["env_steps"],
        summary["wall_s"],
        summary["policy"],
        summary["nominal_return"],
        summary["randomized_return"],
        summary["success_threshold"],
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.video:  # the OpenGL back-end must be chosen before mujoco is imported
        from rl_control.results import choose_gl_backend

        choose_gl_backend()
    import gymnasium as gym
    import numpy as np

    import rl_control.envs.gym_env  # noqa: F401  (registers the rl_control/* environments)
    from rl_control.envs.gym_env import ENV_IDS
    from rl_control.learning import ActionScaler, OnnxPolicy, evaluate_policy
    from rl_control.policy.contract import contract_of
    from rl_control.results import render_rollout

    try:
        policy = OnnxPolicy.from_file(Path(args.policy))
        contract = contract_of(policy, args.policy)
        trained_env = ENV_IDS.get(contract.task) if contract else None
        args.env = args.env or trained_env or DEFAULT_EVAL_ENV
        if trained_env and args.env != trained_env:
            log.warning(
                "%s was trained on %s (its contract), evaluating it on %s", args.policy, trained_env, args.env
            )
        env = gym.make(args.env)
        scaler = ActionScaler(env.action_space)  # the policy acts in [-1, 1]; the env may not
        returns = evaluate_policy(
            env, lambda obs: scaler.to_env(policy(obs)), episodes=args.episodes, seed=args.seed
        )
        env.close()
        video = None
        if args.video:
            video, _ = render_rollout(
                args.env, lambda obs: scaler.to_env(policy(obs)), Path(args.video), seed=args.seed
            )
    except (OSError, ValueError, RuntimeError, gym_error()) as exc:
        print(f"rl-control eval: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.policy} on {args.env}: mean return {np.mean(returns):.1f} ± {np.std(returns):.1f} "
        f"over {len(returns)} deterministic episodes"
    )
    if video is not None:
        print(f"wrote the rollout of episode 1 (seed {args.seed}) to {video}")
    if args.json:
        print(json.dumps({"returns": [float(r) for r in returns], "mean_return": float(np.mean(returns))}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from rl_control.learning import export_run

    try:
        path = export_run(Path(args.run_dir), Path(args.out) if args.out else None)
    except (OSError, ValueError) as exc:
        print(f"rl-control export: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from rl_control import recording

    try:
        if args.what == "topics":
            from rl_control.ros.recorder import record_topics

            topics = args.topic or [recording.TRANSITIONS_TOPIC]
            counts = record_topics(Path(args.out), topics, args.duration)
            print(f"wrote {args.out}: " + ", ".join(f"{topic} {n} messages" for topic, n in counts.items()))
        elif args.what == "expert":
            from rl_control.learning.experts import write_arm_demonstrations

            if args.episodes < 1:
                raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
            randomization = None
            if args.randomize:
                randomization = training_randomization(args.randomize, "rl_control/ArmReach-v0")
            returns = write_arm_demonstrations(Path(args.out), args.episodes, args.seed, randomization)
            mean = sum(returns) / len(returns)
            print(f"wrote {len(returns)} expert episodes to {args.out} (mean return {mean:.1f})")
        else:
            count = recording.bag_to_demonstrations(Path(args.bag), Path(args.out), topic=args.topic)
            print(f"wrote {count} transitions to {args.out}")
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"rl-control record: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_emulate(args: argparse.Namespace) -> int:
    from rl_control.config import load_experiment
    from rl_control.drivers.dynamixel.emulator import serve_from_config

    config = load_experiment(args.config)
    try:
        return serve_from_config(
            config,
            link=Path(args.link) if args.link else None,
            control=Path(args.control) if args.control else None,
            reality_gap=args.reality_gap,
        )
    except ValueError as exc:  # e.g. no driver_node section, a servo joint the robot does not have
        print(f"rl-control emulate: {exc}", file=sys.stderr)
        return 2


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rl_control.sweep import JSON_FILE, PLOT_FILE, SweepError, parse_grid, run_sweep

    try:
        grids = [parse_grid(text) for text in args.param]
        report = run_sweep(
            [Path(p) for p in args.policies],
            grids,
            task=args.task,
            episodes=args.episodes,
            out_dir=Path(args.out),
        )
    except SweepError as error:
        print(f"rl-control sweep: {error}", file=sys.stderr)
        return 2
    for name, result in report["parameters"].items():
        for label, means in result["mean_return"].items():
            points = ", ".join(f"{v:g}: {m:.1f}" for v, m in zip(result["values"], means, strict=True))
            print(f"{name:<28} {label:<24} {points}")
    print(f"wrote {Path(args.out) / JSON_FILE} and {Path(args.out) / PLOT_FILE}")
    return 0


def _bench_function(name: str) -> Callable[..., dict[str, Any]]:
    """The benchmark function of subcommand ``name``, imported only when run (ROS only for control-loop
    and faults)."""
    module, function = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), function)


#: the command-line flag of each optional benchmark argument (where it is not ``--<name>``)
BENCH_FLAGS = {
    "duration_s": "--duration",
    "out_dir": "--out",
    "train_steps": "--steps",
    "train_seed": "--train-seed",
    "finetune_minutes": "--minutes",
    "demos": "--no-demos",
    "reality_gap": "--gap",
    "env_id": "--env",
}


def _cmd_bench(args: argparse.Namespace) -> int:
    bench = _bench_function(args.which)
    options = {
        "preset": args.preset,
        "seeds": args.seeds,
        "env_id": args.env_id,
        "demos": args.demos,
        "duration_s": args.duration,
        "out_dir": args.out,
        "train_steps": args.steps,
        "train_seed": args.train_seed,
        "finetune_minutes": args.minutes,
        "runs": args.runs,
        "reality_gap": args.gap,
        "episodes": args.episodes,
        "robots": args.robots,
    }
    given = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(bench).parameters
    for key in given:
        if key not in accepted:
            flag = BENCH_FLAGS.get(key, f"--{key}")
            raise SystemExit(f"rl-control bench {args.which}: {flag} does not apply to this benchmark")
    try:
        result = bench(json_output=args.json, quick=args.quick, **given)
    except ValueError as exc:  # a bad option value (e.g. an unknown preset), named by the benchmark
        print(f"rl-control bench {args.which}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rl-control`` (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="rl-control",
        description="RL robot control: simulate, train online, export and deploy policies.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "launch",
        help="start a node graph (sim + actor + learner) without a ROS 2 distro",
        description="Start the node graph of CONFIG as processes, stream their logs with "
        "prefixes, show training progress, stop everything on Ctrl-C.",
    )
    p.add_argument("config", help="experiment YAML (ROS 2 parameter file), e.g. config/pendulum_sim.yaml")
    p.add_argument(
        "--graph",
        default="sim_train",
        choices=("sim_train", "deploy", "robot_finetune"),
        help="which graph to start (default: sim_train)",
    )
    p.add_argument(
        "--no-sim",
        action="store_true",
        help="deploy graph only: do not start sim_node (a real robot provides the topics)",
    )
    p.add_argument("--task", default="", help="task override (default: the config's)")
    p.add_argument(
        "--sim-mode", default="", choices=("", "lockstep", "realtime"), help="sim_node mode override"
    )
    p.add_argument(
        "--policy",
        default="",
        help="ONNX policy for actor_node (deploy graph), or a shipped policy's name: quadruped_walk",
    )
    p.add_argument("--namespace", default="", help="ROS namespace of the whole graph (default: none)")
    p.add_argument(
        "--robots",
        type=int,
        default=1,
        help="simulated robots, each a sim_node + actor_node in <namespace>/robot<k>, feeding one learner",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NODE[,NODE]",
        help="start only these nodes of the graph (a name like learner_node, or a label like "
        "robot2/actor_node); the others run on other machines (experiment file: launcher section)",
    )
    p.add_argument("--max-minutes", type=float, default=15.0, help="stop after this long (default: 15)")
    p.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live display")
    p.add_argument(
        "--no-stop-on-success",
        action="store_true",
        help="keep training after the policy reaches the task's success threshold",
    )
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("train", help="train in-process on a Gymnasium environment (no ROS)")
    p.add_argument(
        "--gym-env",
        required=True,
        help="continuous-action env id, e.g. Pendulum-v1 or rl_control/PendulumSwingup-v0",
    )
    p.add_argument("--preset", default="droq", help="sac, td3, redq, droq or rlpd (default: droq)")
    p.add_argument("--steps", type=int, default=10_000, help="environment steps (default: 10000)")
    p.add_argument(
        "--run-dir", default="runs/train", help="checkpoints, TensorBoard logs and the ONNX export"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--eval-every", type=int, default=1000, help="deterministic evaluation period in env steps"
    )
    p.add_argument("--demos", help="npz demonstration file seeding the demo buffer")
    p.add_argument(
        "--learning-starts",
        type=int,
        help="random-action env steps before updates start (default: the preset's); --steps must exceed it",
    )
    p.add_argument(
        "--randomize",
        nargs="?",
        const=True,
        default=False,
        metavar="EXPERIMENT.yaml",
        help="rl_control/* envs: domain randomization, with the default ranges (docs/simulation.md) or "
        "those of an experiment file's sim_node.randomization section (e.g. config/arm_sim.yaml)",
    )
    p.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a field of the preset's agent config (repeatable; the learner_node.agent keys of "
        "docs/topics.md), e.g. --agent init_temperature=0.05 --agent hidden_sizes=[128,128]",
    )
    p.add_argument(
        "--torch-threads",
        type=thread_count,
        default=0,
        help="CPU threads torch trains with (default 0: torch's, one per core); 1 is far faster on a "
        "machine whose cores are busy with other work (docs/howto_sim_to_real.md)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "distill",
        help="distill a task's scripted expert into an ONNX policy under domain randomization (no ROS)",
    )
    p.add_argument("--task", default="quadruped_walk", help="task with a scripted expert (quadruped_walk)")
    p.add_argument("--run-dir", default="runs/quadruped_walk", help="policy.onnx and summary.json go here")
    p.add_argument("--episodes", type=int, default=200, help="randomized expert episodes (default: 200)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the data (default: 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=thread_count, default=0, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("eval", help="evaluate an ONNX policy deterministically on an environment")
    p.add_argument("policy", help="ONNX file written by 'rl-control export' or the learner")
    p.add_argument(
        "--env",
        help="Gymnasium env id (default: the task in the policy's contract, else " + DEFAULT_EVAL_ENV + ")",
    )
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the returns as JSON")
    p.add_argument(
        "--video",
        metavar="OUT.mp4",
        help="also render the first episode headless (MuJoCo, EGL or OSMesa) into this MP4 "
        "(a GIF when ffmpeg is unavailable, or when OUT ends in .gif)",
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "sweep",
        help="evaluate ONNX policies over a grid of dynamics; write JSON and a PNG plot",
        description="Evaluate each policy deterministically with one dynamics parameter at a time fixed "
        "to each grid value (the others nominal); plot return against each parameter.",
    )
    p.add_argument("policies", nargs="+", metavar="POLICY.onnx", help="policies to compare")
    p.add_argument("--task", help="task to evaluate on (default: the task in the policies' contracts)")
    p.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME=LOW:HIGH:N",
        help="parameter grid, repeatable: mass_scale, friction, damping_scale, motor_strength, "
        "action_latency_s, observation_noise.position, ... (any domain-randomization quantity)",
    )
    p.add_argument("--episodes", type=int, default=5, help="episodes per policy and grid value (default: 5)")
    p.add_argument("--out", default="sweep", help="output directory for sweep.json and sweep.png")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("export", help="write the deterministic ONNX policy of a run directory's checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output path (default: RUN_DIR/policy.onnx)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("record", help="record topics to a rosbag2 bag (MCAP); turn a bag into demonstrations")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    r = what.add_parser("topics", help="record live topics into a rosbag2 bag (MCAP storage)")
    r.add_argument(
        "out", help="bag directory to create (metadata.yaml + OUT_0.mcap), like ros2 bag record -o"
    )
    r.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic to record (repeatable; default: the transitions topic)",
    )
    r.add_argument("--duration", type=float, default=60.0, help="seconds to record (default: 60)")
    r.set_defaults(func=_cmd_record)
    r = what.add_parser("demos", help="write the transitions of a bag as a demonstration npz")
    r.add_argument("bag", help="rosbag2 bag directory (or its .mcap file) holding the transitions topic")
    r.add_argument("out", help="npz demonstration file to write")
    r.add_argument("--topic", default="/rl_control/transitions")
    r.set_defaults(func=_cmd_record)
    r = what.add_parser(
        "expert", help="write episodes of the arm's scripted reaching expert (arm_reach) as demonstrations"
    )
    r.add_argument("out", help="npz demonstration file to write")
    r.add_argument("--episodes", type=int, default=20, help="episodes of 100 steps (default: 20)")
    r.add_argument("--seed", type=int, default=10_000, help="seed of the first episode (default: 10000)")
    r.add_argument(
        "--randomize",
        nargs="?",
        const=True,
        default=False,
        metavar="EXPERIMENT.yaml",
        help="record under domain randomization, as rl-control train --randomize",
    )
    r.set_defaults(func=_cmd_record)

    p = sub.add_parser(
        "emulate",
        help="emulate a robot's servo bus on a pseudo-terminal (Dynamixel Protocol 2.0 + MuJoCo physics)",
        description="Serve the servos of CONFIG's driver_node section on a pseudo-terminal that the driver "
        "(or "
        "any Dynamixel SDK program) opens like a U2D2; the servos move a MuJoCo model of the task's robot in "
        "real time, with the reality gap and faults of driver_node.emulator. Runs until Ctrl-C.",
    )
    p.add_argument("kind", choices=("dynamixel",), help="bus to emulate")
    p.add_argument(
        "config", help="experiment YAML with a driver_node section, e.g. config/arm_dynamixel.yaml"
    )
    p.add_argument(
        "--link", help="symlink the pseudo-terminal here (e.g. /tmp/ttyDXL; default: print its path)"
    )
    p.add_argument("--control", help="AF_UNIX datagram socket taking run-time fault commands (JSON)")
    p.add_argument(
        "--reality-gap",
        choices=("none", "default", "harsh"),
        help="override driver_node.emulator.reality_gap",
    )
    p.set_defaults(func=_cmd_emulate)

    p = sub.add_parser("bench", help="benchmarks; print a table, or JSON with --json")
    p.add_argument("which", choices=tuple(BENCHMARKS))
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="shorter run (rougher figures)")
    p.add_argument(
        "--preset",
        help="sample-efficiency: the preset(s) compared with SB3 SAC, comma-separated (default: droq)",
    )
    p.add_argument("--seeds", type=int, help="sample-efficiency, main-job: number of seeds (default: 3)")
    p.add_argument(
        "--env",
        dest="env_id",
        help="sample-efficiency: the Gymnasium task, Pendulum-v1 (the default) or InvertedPendulum-v5",
    )
    p.add_argument(
        "--no-demos",
        dest="demos",
        action="store_const",
        const=False,
        help="sample-efficiency: skip the runs with expert demonstrations",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="control-loop, driver, actors: seconds per measured rate or robot count (default: 20, 5, 30)",
    )
    p.add_argument("--out", help="sim-to-real: output directory (default: runs/sim_to_real)")
    p.add_argument(
        "--steps", type=int, help="sim-to-real: training steps per arm policy (default: 40000, the recipe)"
    )
    p.add_argument("--train-seed", type=int, help="sim-to-real: seed of both trainings (default: 0)")
    p.add_argument(
        "--episodes", type=int, help="sim-to-real: episodes per simulated and deployed return (default: 100)"
    )
    p.add_argument("--minutes", type=float, help="sim-to-real: fine-tuning minutes, 0: none (default: 10)")
    p.add_argument(
        "--runs",
        nargs=2,
        metavar=("RANDOMIZED", "NOMINAL"),
        help="sim-to-real: reuse these two training run directories instead of training",
    )
    p.add_argument(
        "--gap",
        help="sim-to-real: the emulated arm's reality gap preset: none, default (the default) or harsh",
    )
    p.add_argument(
        "--robots", help="main-job: also time the main job with these numbers of simulated robots, e.g. 2,4"
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("config", help="validate or print an experiment config")
    p.add_argument("action", choices=("check", "show"), help="check: validate; show: print fully resolved")
    p.add_argument("file")
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``rl-control``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
