"""Parameters declared from the schema, seen and changed by a plain rclpy client through the standard
parameter services (list / describe / get / set) of a node running in another process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters, SetParameters

from rl_control.config import load_experiment
from rl_control.config.schema import node_parameter_specs
from rl_control.ros import messages
from rl_control.testing.node_process import NodeProcess

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("ros_domain")]

STARTUP_S = 60.0


@pytest.fixture
def sim_node(tmp_path: Path, probe):
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"task": "pendulum_swingup", "run_dir": str(tmp_path / "run")}},
                "sim_node": {"ros__parameters": {"sim_mode": "realtime", "command_timeout_s": 0.4}},
            }
        )
    )
    with NodeProcess("sim_node", config) as node:
        ready = probe.node.create_client(ListParameters, "/sim_node/list_parameters")
        assert ready.wait_for_service(timeout_sec=STARTUP_S), node.output()
        probe.node.destroy_client(ready)
        yield node, config


def set_value(probe, name: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
    return probe.call(SetParameters, "/sim_node/set_parameters", request).results[0]


def double(value: float) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)


def test_every_schema_parameter_is_declared_with_its_descriptor(sim_node, probe) -> None:
    _node, config_file = sim_node
    listed = set(
        probe.call(ListParameters, "/sim_node/list_parameters", ListParameters.Request()).result.names
    )
    expected = {spec.name for spec in node_parameter_specs("sim_node", load_experiment(config_file))}
    assert expected <= listed, f"missing: {sorted(expected - listed)}"
    assert "randomization.friction" in listed and "seed" in listed  # defaults, absent from the file

    names = ["command_timeout_s", "sim_mode", "randomization.enabled", "seed"]
    described = probe.call(
        DescribeParameters, "/sim_node/describe_parameters", DescribeParameters.Request(names=names)
    ).descriptors
    timeout, mode, randomization, seed = described
    assert "safe command" in timeout.description and not timeout.read_only
    assert timeout.type == ParameterType.PARAMETER_DOUBLE
    assert (timeout.floating_point_range[0].from_value, timeout.floating_point_range[0].to_value) == (
        0.0,
        60.0,
    )
    assert mode.read_only and "one of lockstep, realtime" in mode.additional_constraints
    assert randomization.type == ParameterType.PARAMETER_BOOL and randomization.description
    assert seed.integer_range[0].to_value == 2**63 - 1

    values = probe.call(
        GetParameters, "/sim_node/get_parameters", GetParameters.Request(names=["command_timeout_s", "seed"])
    ).values
    assert (values[0].double_value, values[1].integer_value) == (0.4, 0)


def test_invalid_changes_are_refused_with_the_reason_and_valid_ones_take_effect(sim_node, probe) -> None:
    node, _ = sim_node
    result = set_value(probe, "command_timeout_s", double(-5.0))
    assert not result.successful and "command_timeout_s" in result.reason
    result = set_value(
        probe, "sim_mode", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="explode")
    )
    assert not result.successful and "read-only" in result.reason
    result = set_value(
        probe, "real_time_factor", ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="fast")
    )
    assert not result.successful and "real_time_factor" in result.reason
    current = probe.call(
        GetParameters, "/sim_node/get_parameters", GetParameters.Request(names=["command_timeout_s"])
    ).values[0]
    assert current.double_value == 0.4, "a refused change leaves the old value"

    diagnostics = probe.collect(DiagnosticArray, messages.DIAGNOSTICS_TOPIC, messages.DIAGNOSTICS_QOS)
    result = set_value(probe, "command_timeout_s", double(2.5))
    assert result.successful, result.reason

    def applied() -> bool:
        return any(
            kv.key == "command_timeout_s" and kv.value == "2.5"
            for _, msg in diagnostics
            for status in msg.status
            for kv in status.values
        )

    assert probe.spin_until(applied, 10.0), "the new value must be in use (diagnostics)\n" + node.output()


def test_actor_safety_limits_are_tunable(tmp_path: Path, probe) -> None:
    config = tmp_path / "actor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"task": "pendulum_swingup", "run_dir": str(tmp_path / "run")}},
                "actor_node": {"ros__parameters": {"state_timeout_s": 0.2}},
            }
        )
    )
    with NodeProcess("actor_node", config) as node:
        client = probe.node.create_client(SetParameters, "/actor_node/set_parameters")
        assert client.wait_for_service(timeout_sec=STARTUP_S), node.output()
        probe.node.destroy_client(client)

        def set_actor(name: str, value: ParameterValue):
            request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
            return probe.call(SetParameters, "/actor_node/set_parameters", request).results[0]

        assert set_actor("state_timeout_s", double(0.5)).successful
        assert set_actor("max_command_rate", double(4.0)).successful
        refused = set_actor("max_command_rate", double(-1.0))
        assert not refused.successful and "max_command_rate" in refused.reason
        explode = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="explode")
        refused = set_actor("safe_command", explode)
        assert not refused.successful and "read-only" in refused.reason
        values = probe.call(
            GetParameters,
            "/actor_node/get_parameters",
            GetParameters.Request(names=["state_timeout_s", "max_command_rate", "safe_command"]),
        ).values
        assert (values[0].double_value, values[1].double_value, values[2].string_value) == (0.5, 4.0, "hold")
