"""The layers hold: each import runs in a fresh interpreter, so no earlier import hides a crossing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

#: ROS-free core: must import with rclpy and the ROS message packages made unimportable
CORE_MODULES = (
    "rl_control.config",
    "rl_control.config.parameter_docs",
    "rl_control.envs",
    "rl_control.envs.gym_env",
    "rl_control.learning",
    "rl_control.learning.learner",
    "rl_control.learning.gym_train",
    "rl_control.safety",
    "rl_control.actor.core",
    "rl_control.actor.pacing",
    "rl_control.actor.state_mapping",
    "rl_control.actor.statistics",
    "rl_control.actor.velocity_command",
    "rl_control.policy.runtime",
    "rl_control.policy.authority",
    "rl_control.policy.transfer",
    "rl_control.transitions",
    "rl_control.testing.experiment",
    "rl_control.testing.node_process",
    "rl_control.testing.policies",
)
#: the actor's control logic and the policy runtime: neither torch nor gymnasium
LEAN_MODULES = (
    "rl_control.actor.core",
    "rl_control.actor.pacing",
    "rl_control.actor.state_mapping",
    "rl_control.actor.statistics",
    "rl_control.actor.control_loop",
    "rl_control.actor.velocity_command",
    "rl_control.actor.policy_swap",
    "rl_control.actor.policy_guard",
    "rl_control.policy.runtime",
    "rl_control.policy.authority",
    "rl_control.policy.transfer",
    "rl_control.transitions",
)
HEAVY = ("torch", "gymnasium", "rich")
ROS_PACKAGES = (
    "rclpy",
    "std_msgs",
    "sensor_msgs",
    "nav_msgs",
    "geometry_msgs",
    "std_srvs",
    "diagnostic_msgs",
    "rosgraph_msgs",
    "builtin_interfaces",
)

BLOCKER = f"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ROS_PACKAGES!r}:
            raise ImportError(f"{{name}} is blocked: a core module must not import ROS")
        return None
sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def _loaded_after(imports: tuple[str, ...], *, block_ros: bool) -> dict[str, list[str]]:
    """For each module: the heavy packages in sys.modules after importing it alone in a fresh interpreter."""
    loaded: dict[str, list[str]] = {}
    for module in imports:
        script = (BLOCKER if block_ros else "") + (
            f"import importlib, json, sys\nimportlib.import_module({module!r})\n"
            f"print(json.dumps({{'heavy': [h for h in {HEAVY!r} if h in sys.modules]}}))\n"
        )
        loaded[module] = _run(script)["heavy"]
    return loaded


def test_core_packages_import_without_ros() -> None:
    _loaded_after(CORE_MODULES, block_ros=True)  # each import would fail on a blocked ROS package


def test_the_ros_blocker_really_blocks() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import rl_control.ros.messages"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 and "is blocked" in result.stderr


def test_actor_logic_and_policy_runtime_load_neither_torch_nor_gymnasium() -> None:
    loaded = _loaded_after(LEAN_MODULES, block_ros=True)
    assert loaded == {module: [] for module in LEAN_MODULES}


@pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="needs the ROS wheels")
def test_actor_node_process_loads_neither_torch_nor_gymnasium() -> None:
    loaded = _loaded_after(("rl_control.ros.actor_node",), block_ros=False)
    assert loaded == {"rl_control.ros.actor_node": []}
