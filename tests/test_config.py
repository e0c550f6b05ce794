"""The experiment schema: shipped configs load, and every kind of bad input is a precise error."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rl_control.cli import main as cli_main
from rl_control.config import ConfigError, config_from_parameters, load_experiment, parse_experiment
from rl_control.paths import share_dir

SHIPPED = sorted((share_dir() / "config").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value), "the error must name the file"
    return info.value


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_experiment(path)
    assert config.shared.task


def test_shipped_configs_exist() -> None:
    assert "pendulum_sim.yaml" in {p.name for p in SHIPPED}


def test_defaults_and_preset_overrides(tmp_path: Path) -> None:
    config = load_experiment(
        write(
            tmp_path,
            """
        learner_node:
          ros__parameters:
            preset: redq
            agent: {utd_ratio: 5}
    """,
        )
    )
    agent = config.learner_node.agent
    assert (agent.num_critics, agent.num_target_critics, agent.utd_ratio) == (10, 2, 5)
    assert config.shared.task == "pendulum_swingup"
    assert config.sim_node.sim_mode == "lockstep"


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        actor_node:
          ros__parameters:
            state_timout_s: 0.3
    """,
    )
    assert error.section == "actor_node" and error.key == "state_timout_s"
    assert "did you mean 'state_timeout_s'" in str(error)


def test_unknown_nested_key_is_named_with_its_path(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        sim_node:
          ros__parameters:
            randomization:
              fricton: [0.5, 1.0]
    """,
    )
    assert error.key == "randomization.fricton"
    assert "did you mean 'friction'" in str(error)


def test_unknown_agent_key(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        learner_node:
          ros__parameters:
            agent: {num_critic: 4}
    """,
    )
    assert error.key == "agent.num_critic" and "num_critics" in str(error)


def test_wrong_type(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        /**:
          ros__parameters:
            control_rate_hz: fast
    """,
    )
    assert error.section == "/**" and error.key == "control_rate_hz"
    assert "expected float" in str(error)


def test_bool_is_not_an_int(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        actor_node:
          ros__parameters:
            transition_batch_size: true
    """,
    )
    assert error.key == "transition_batch_size"


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("/**", "control_rate_hz", "0.1", "below the minimum"),
        ("actor_node", "state_timeout_s", "50.0", "above the maximum"),
        ("sim_node", "sim_mode", "fastest", "not one of"),
        ("learner_node", "preset", "dorq", "did you mean 'droq'"),
        ("/**", "task", "pendulum_swingpu", "did you mean 'pendulum_swingup'"),
    ],
)
def test_out_of_range_and_choices(tmp_path: Path, section: str, key: str, value: str, words: str) -> None:
    error = load_error(
        tmp_path,
        f"""
        {section}:
          ros__parameters:
            {key}: {value}
    """,
    )
    assert error.section == section and error.key == key
    assert words in str(error)


def test_inconsistent_randomization_range(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        sim_node:
          ros__parameters:
            randomization:
              friction: [1.3, 1.25]
    """,
    )
    assert error.key == "randomization.friction" and "low" in str(error)


def test_missing_referenced_files(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        """
        actor_node:
          ros__parameters:
            policy_file: nowhere/policy.onnx
    """,
    )
    assert error.key == "policy_file" and "file not found: nowhere/policy.onnx" in str(error)
    error = load_error(
        tmp_path,
        """
        learner_node:
          ros__parameters:
            demo_files: [demos/missing.npz]
    """,
    )
    assert error.key == "demo_files" and "missing.npz" in str(error)


def test_referenced_files_resolve_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "demos.npz").write_bytes(b"")
    config = load_experiment(
        write(
            tmp_path,
            """
        learner_node:
          ros__parameters:
            demo_files: [demos.npz]
    """,
        )
    )
    assert config.learner_node.demo_files == [str(tmp_path.resolve() / "demos.npz")]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("sim_nod:\n  ros__parameters: {}\n", "did you mean 'sim_node'"),
        ("sim_node:\n  parameters: {}\n", "exactly one key, 'ros__parameters'"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("sim_node: [\n", "invalid YAML"),
        ("actor_node:\n  ros__parameters:\n    task: pendulum_swingup\n", "set it under '/**'"),
        ("/**:\n  ros__parameters:\n    joint_names: []\n", "empty lists are not valid ROS 2 parameters"),
        ("sim_node:\n  ros__parameters:\n    randomization:\n      friction: [0, 1.25]\n", "list mixes"),
        ("actor_node:\n  ros__parameters:\n    policy_file: null\n", "null is not a valid"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as info:
        load_experiment(path)
    assert words in str(info.value)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_experiment(tmp_path / "absent.yaml")


def test_resolved_config_round_trips() -> None:
    config = load_experiment(share_dir() / "config" / "pendulum_sim.yaml")
    again = parse_experiment(yaml.safe_load(yaml.safe_dump(config.to_ros_yaml())))
    assert again.to_ros_yaml() == config.to_ros_yaml()


def test_node_parameters_validate_like_the_file() -> None:
    """A node receives /** merged with its own section as dotted ROS parameters."""
    params = {
        "task": "pendulum_swingup",
        "use_sim_time": True,
        "randomization.enabled": True,
        "randomization.friction": [0.5, 0.9],
        "sim_mode": "realtime",
    }
    config = config_from_parameters("sim_node", params, file="exp.yaml")
    assert config.sim_node.randomization.friction == [0.5, 0.9]
    assert config.sim_node.sim_mode == "realtime"
    with pytest.raises(ConfigError) as info:
        config_from_parameters("sim_node", {**params, "randomization.friction": [2.0, 1.0]}, file="exp.yaml")
    assert info.value.file == "exp.yaml" and info.value.key == "randomization.friction"


def test_cli_check_exits_nonzero_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "learner_node:\n  ros__parameters:\n    publish_every_updates: -1\n")
    assert cli_main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "[learner_node]" in err and "publish_every_updates" in err
    good = share_dir() / "config" / "pendulum_sim.yaml"
    assert cli_main(["config", "check", str(good)]) == 0


def test_cli_show_prints_a_loadable_parameter_file(tmp_path: Path) -> None:
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_control.cli",
            "config",
            "show",
            str(share_dir() / "config" / "pendulum_sim.yaml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config = load_experiment(write(tmp_path, shown, "shown.yaml"))
    assert config.learner_node.preset == "droq"


def test_the_launcher_section_sets_only_the_dds_variables_it_names() -> None:
    config = parse_experiment(
        {"launcher": {"ros__parameters": {"ros_domain_id": 42, "static_peers": ["10.0.0.2", "gpu-host"]}}}
    )
    assert config.launcher.environment() == {"ROS_DOMAIN_ID": "42", "ROS_STATIC_PEERS": "10.0.0.2;gpu-host"}
    assert parse_experiment({}).launcher.environment() == {}


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"static_peers": ["10.0.0.2;10.0.0.3"]}, "static_peers"),
        ({"discovery_range": "lan"}, "discovery_range"),
        ({"ros_domain_id": 300}, "ros_domain_id"),
    ],
)
def test_the_launcher_section_refuses_bad_dds_settings(params: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_experiment({"launcher": {"ros__parameters": params}}, file="exp.yaml")
