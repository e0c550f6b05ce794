"""The ``rl-control`` command line.

Subcommands: ``launch`` (the node graph), ``train`` (in-process training on a Gymnasium env),
``eval`` (deterministic evaluation of an ONNX policy), ``export`` (ONNX from a run directory),
``record`` (topics into a rosbag2 MCAP file; a bag's transitions into a demonstration file),
``bench`` and ``config``.
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
from typing import Any

from rl_control.config.errors import ConfigError

log = logging.getLogger("rl_control")

BENCHMARKS = {
    "learner": "rl_control.learning.bench:bench_learner",
    "sample-efficiency": "rl_control.learning.bench:bench_sample_efficiency",
    "sim": "rl_control.envs.bench:bench_sim",
    "control-loop": "rl_control.ros.bench_control_loop:bench_control_loop",
}

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
        print(f"{args.file}: OK (task {config.shared.task}, preset {config.learner_node.preset})")
    else:
        print(f"# {args.file}, fully resolved (every key explicit)")
        print(yaml.dump(config.to_ros_yaml(), Dumper=FlowListDumper, sort_keys=False), end="")
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from rl_control.launcher import run_launch

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
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from rl_control.learning import train_gym

    result = train_gym(
        env_id=args.gym_env,
        preset=args.preset,
        steps=args.steps,
        run_dir=Path(args.run_dir),
        seed=args.seed,
        eval_every=args.eval_every,
        demo_file=Path(args.demos) if args.demos else None,
    )
    log.info("training finished: %s", result)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import numpy as np

    import rl_control.envs  # noqa: F401  (registers the rl_control/* environments)
    from rl_control.learning import ActionScaler, OnnxPolicy, evaluate_policy

    policy = OnnxPolicy.from_file(Path(args.policy))
    env = gym.make(args.env)
    scaler = ActionScaler(env.action_space)  # the policy acts in [-1, 1]; the env may not
    returns = evaluate_policy(
        env, lambda obs: scaler.to_env(policy(obs)), episodes=args.episodes, seed=args.seed
    )
    env.close()
    print(
        f"{args.policy} on {args.env}: mean return {np.mean(returns):.1f} ± {np.std(returns):.1f} "
        f"over {len(returns)} deterministic episodes"
    )
    if args.json:
        print(json.dumps({"returns": [float(r) for r in returns], "mean_return": float(np.mean(returns))}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from rl_control.learning import export_run

    path = export_run(Path(args.run_dir), Path(args.out) if args.out else None)
    print(path)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from rl_control import recording

    if args.what == "topics":
        topics = args.topic or ["/rl_control/transitions"]
        counts = recording.record_topics(Path(args.out), topics, args.duration)
        print(f"wrote {args.out}: " + ", ".join(f"{topic} {n} messages" for topic, n in counts.items()))
    else:
        count = recording.bag_to_demonstrations(Path(args.bag), Path(args.out), topic=args.topic)
        print(f"wrote {count} transitions to {args.out}")
    return 0


def _bench_function(name: str) -> Callable[..., dict[str, Any]]:
    """The benchmark function of subcommand ``name``, imported only when run (ROS only for control-loop)."""
    module, function = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), function)


def _cmd_bench(args: argparse.Namespace) -> int:
    bench = _bench_function(args.which)
    options = {"preset": args.preset, "seeds": args.seeds, "duration_s": args.duration}
    given = {key: value for key, value in options.items() if value is not None}
    accepted = inspect.signature(bench).parameters
    for key in given:
        if key not in accepted:
            flag = "--duration" if key == "duration_s" else f"--{key}"
            raise SystemExit(f"rl-control bench {args.which}: {flag} does not apply to this benchmark")
    result = bench(json_output=args.json, quick=args.quick, **given)
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
    p.add_argument("--policy", default="", help="ONNX policy for actor_node (deploy graph)")
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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate an ONNX policy deterministically on an environment")
    p.add_argument("policy", help="ONNX file written by 'rl-control export' or the learner")
    p.add_argument("--env", default="rl_control/PendulumSwingup-v0", help="Gymnasium env id")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the returns as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("export", help="write the deterministic ONNX policy of a run directory's checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output path (default: RUN_DIR/policy.onnx)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("record", help="record topics to a rosbag2 MCAP file; turn a bag into demonstrations")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    r = what.add_parser("topics", help="record live topics into a rosbag2-compatible MCAP file")
    r.add_argument("out", help="MCAP file to write")
    r.add_argument(
        "--topic",
        action="append",
        default=None,
        help="topic to record (repeatable; default: the transitions topic)",
    )
    r.add_argument("--duration", type=float, default=60.0, help="seconds to record (default: 60)")
    r.set_defaults(func=_cmd_record)
    r = what.add_parser("demos", help="write the transitions of a bag as a demonstration npz")
    r.add_argument("bag", help="MCAP file (rosbag2) holding the transitions topic")
    r.add_argument("out", help="npz demonstration file to write")
    r.add_argument("--topic", default="/rl_control/transitions")
    r.set_defaults(func=_cmd_record)

    p = sub.add_parser("bench", help="benchmarks; print a table, or JSON with --json")
    p.add_argument("which", choices=tuple(BENCHMARKS))
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="shorter run (rougher figures)")
    p.add_argument("--preset", help="sample-efficiency: the preset compared with SB3 SAC (default: droq)")
    p.add_argument("--seeds", type=int, help="sample-efficiency: number of seeds (default: 3)")
    p.add_argument("--duration", type=float, help="control-loop: seconds per measured rate (default: 20)")
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
