"""Config hardening: bounded YAML (aliases, depth, size), numeric and list bounds, path kinds, every error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rl_control.cli import main as cli_main
from rl_control.config import CombinedConfigError, ConfigError, load_experiment
from rl_control.config.schema import MAX_NETWORK_BYTES, network_memory_bytes
from rl_control.config.yaml_file import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES
from rl_control.learning.config import preset_config


def load_error(path: Path, text: str) -> ConfigError:
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(path) in str(info.value), "the error must name the file"
    return info.value


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    lines.append("sim_node: {ros__parameters: {bomb: *a9}}")
    started = time.monotonic()
    error = load_error(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    assert time.monotonic() - started < 2.0
    assert f"more than {MAX_ALIASES} aliases" in str(error)


def test_deep_nesting_fails_fast_without_recursion_error(tmp_path: Path) -> None:
    started = time.monotonic()
    error = load_error(tmp_path / "deep.yaml", "a: " + "[" * 3000 + "]" * 3000 + "\n")
    assert time.monotonic() - started < 2.0
    assert f"nesting deeper than {MAX_DEPTH} levels" in str(error) and "line 1" in str(error)


def test_a_few_aliases_are_still_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("/**:\n  ros__parameters:\n    joint_names: &j [hinge]\n    task: &t pendulum_swingup\n")
    assert load_experiment(path).shared.joint_names == ["hinge"]


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    error = load_error(tmp_path / "big.yaml", "# " + "x" * MAX_FILE_BYTES + "\n")
    assert "limit" in str(error)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("/**: {ros__parameters: {seed: 1000000000000000000000000000000}}", "seed", "64-bit integer"),
        ("/**: {ros__parameters: {seed: 1.0e30}}", "seed", "expected int"),
        ("/**: {ros__parameters: {seed: -1}}", "seed", "below the minimum"),
        ("/**: {ros__parameters: {run_dir: ''}}", "run_dir", "empty path"),
        (
            "learner_node: {ros__parameters: {publish_every_updates: 9223372036854775808}}",
            "publish_every_updates",
            "64-bit",
        ),
    ],
)
def test_numeric_and_path_bounds(tmp_path: Path, text: str, key: str, words: str) -> None:
    error = load_error(tmp_path / "exp.yaml", text + "\n")
    assert error.key == key and words in str(error)


def test_too_many_joint_names(tmp_path: Path) -> None:
    names = ", ".join(f"j{i}" for i in range(100_000))
    error = load_error(tmp_path / "exp.yaml", f"/**: {{ros__parameters: {{joint_names: [{names}]}}}}\n")
    assert error.key == "joint_names" and "100000 items; at most 64" in str(error)


def test_huge_networks_are_refused_with_the_estimate(tmp_path: Path) -> None:
    sizes = ", ".join(["8192"] * 200)
    error = load_error(
        tmp_path / "exp.yaml", f"learner_node: {{ros__parameters: {{agent: {{hidden_sizes: [{sizes}]}}}}}}\n"
    )
    assert error.key == "agent.hidden_sizes" and "GiB" in str(error)
    assert network_memory_bytes(preset_config("redq")) < MAX_NETWORK_BYTES / 100


def test_run_dir_that_is_a_file_and_policy_file_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    error = load_error(
        tmp_path / "exp.yaml",
        f"/**: {{ros__parameters: {{run_dir: {tmp_path / 'afile'}}}}}\n"
        f"actor_node: {{ros__parameters: {{policy_file: {tmp_path / 'adir'}}}}}\n",
    )
    assert isinstance(error, CombinedConfigError)
    messages = {(e.section, e.key): str(e) for e in error.errors}
    assert "exists and is not a directory" in messages[("/**", "run_dir")]
    assert "is a directory, not a file" in messages[("actor_node", "policy_file")]


def test_every_error_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "/**: {ros__parameters: {seed: -3, contol_rate_hz: 50.0}}\n"
        "sim_node: {ros__parameters: {sim_mode: fast}}\n"
        "actor_node: {ros__parameters: {state_timeout_s: -1.0, safe_command: explode}}\n"
        "learner_node: {ros__parameters: {agent: {gamma: 2.0, batch_sise: 3}}}\n"
        "critic_node: {ros__parameters: {}}\n"
    )
    with pytest.raises(CombinedConfigError) as info:
        load_experiment(path)
    keys = [(e.section, e.key) for e in info.value.errors]
    assert keys == [
        ("critic_node", None),
        ("/**", "seed"),
        ("/**", "contol_rate_hz"),
        ("sim_node", "sim_mode"),
        ("actor_node", "state_timeout_s"),
        ("actor_node", "safe_command"),
        ("learner_node", "agent.gamma"),
        ("learner_node", "agent.batch_sise"),
    ]
    assert cli_main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "8 errors" in err and err.count(str(path)) == 8
