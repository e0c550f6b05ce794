"""AgentConfig presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from rl_control.config.errors import FieldError
from rl_control.learning.config import PRESET_NAMES, AgentConfig, preset_config


def test_presets_match_their_papers() -> None:
    redq = preset_config("redq")
    assert (redq.num_critics, redq.num_target_critics, redq.utd_ratio) == (10, 2, 20)
    droq = preset_config("droq")
    assert (droq.num_critics, droq.critic_dropout, droq.critic_layer_norm, droq.utd_ratio) == (
        2,
        0.01,
        True,
        20,
    )
    rlpd = preset_config("rlpd")
    assert rlpd.critic_layer_norm and rlpd.demo_fraction == 0.5 and rlpd.num_critics == 10
    td3 = preset_config("td3")
    assert td3.algorithm == "td3" and td3.actor_delay == 2
    crossq = preset_config("crossq")
    assert (crossq.algorithm, crossq.utd_ratio, crossq.actor_delay, crossq.adam_beta1) == (
        "crossq",
        1,
        3,
        0.5,
    )
    robot = preset_config("crossq_utd3")
    assert (robot.algorithm, robot.utd_ratio, robot.actor_delay, robot.compile) == ("crossq", 3, 1, True)
    assert robot.hidden_sizes == robot.critic_hidden_sizes == [128, 128]
    assert set(PRESET_NAMES) == {"sac", "td3", "redq", "droq", "rlpd", "crossq", "crossq_utd3"}


def test_overrides_apply_and_unknowns_are_rejected() -> None:
    assert preset_config("droq", utd_ratio=5).utd_ratio == 5
    with pytest.raises(ValueError, match="unknown agent preset 'nope'"):
        preset_config("nope")
    with pytest.raises(ValueError, match=r"unknown AgentConfig field\(s\) \['utd'\]"):
        preset_config("sac", utd=3)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"num_target_critics": 3}, "num_target_critics"),
        ({"gamma": 1.5}, "gamma"),
        ({"algorithm": "ppo"}, "algorithm"),
        ({"hidden_sizes": [256, 0]}, "hidden_sizes"),
        ({"device": "gpu"}, "device"),
    ],
)
def test_invalid_values_raise_field_error_naming_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(FieldError) as info:
        preset_config("sac", **overrides)
    assert info.value.key == key


def test_every_field_has_help_and_non_null_default() -> None:
    config = AgentConfig()
    for spec in dataclasses.fields(AgentConfig):
        assert spec.metadata.get("help"), spec.name
        assert getattr(config, spec.name) is not None
    assert AgentConfig.from_dict(config.to_dict()) == config
