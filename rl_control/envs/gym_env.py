"""Gymnasium environments built from :class:`MujocoSimulator` + :class:`Task` (the code the ROS nodes run)."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np

from rl_control.envs.randomization import RandomizationConfig
from rl_control.envs.simulator import MujocoSimulator
from rl_control.envs.state import RobotState
from rl_control.envs.tasks import TASK_NAMES, make_task
from rl_control.policy.contract import DEFAULT_CONTROLLER, PolicyContract

ENV_IDS: dict[str, str] = {
    "pendulum_swingup": "rl_control/PendulumSwingup-v0",
    "pendulum_balance": "rl_control/PendulumBalance-v0",
    "cartpole_swingup": "rl_control/CartpoleSwingup-v0",
    "arm_reach": "rl_control/ArmReach-v0",
    "quadruped_walk": "rl_control/QuadrupedWalk-v0",
}


class RobotTaskEnv(gym.Env[np.ndarray, np.ndarray]):
    """A task on a simulated robot: actions in [-1, 1], float32 observations, per-episode randomization.

        ``terminated`` is the task's failure condition; ``truncated`` is the episode time limit
        (``task.episode_steps``). The reset ``info["randomization"]`` holds the values sampled for the episode
    (also available any time from :meth:`randomization_info`, e.g. the push count so far).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}  # noqa: RUF012 (gym's API)

    def __init__(
        self,
        task: str = "pendulum_swingup",
        *,
        randomization: RandomizationConfig | None = None,
        render_mode: str | None = None,
        episode_steps: int | None = None,
        control_rate_hz: float | None = None,
    ) -> None:
        if task not in TASK_NAMES:
            raise ValueError(f"unknown task {task!r}; available: {', '.join(TASK_NAMES)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.task = make_task(task, control_rate_hz=control_rate_hz)
        self.sim = MujocoSimulator(
            self.task.robot,
            control_rate_hz=self.task.control_rate_hz,
            randomization=randomization,
            fit_physics_step=control_rate_hz is not None,  # a configured rate: as sim_node does
        )
        self.max_episode_steps = int(episode_steps) if episode_steps else self.task.episode_steps
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(self.task.control_rate_hz)}
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.task.observation_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.task.action_dim,), np.float32)
        self._state: RobotState | None = None
        self._obs: np.ndarray | None = None
        self._steps = 0
        self._renderer: Any = None  # mujoco.Renderer, created on the first render

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``options={"goal_rng": generator}`` draws the task's goals (the arm's target,
        a velocity command) from ``generator`` instead of the env's own: one generator passed to every
        reset draws them in the order an actor seeded ``np.random.default_rng(seed)`` draws them on a
        robot, so a simulated episode meets the same goal as the deployed episode of the same index."""
        goal_rng = self._goal_rng(options)
        super().reset(seed=seed)
        if seed is not None:
            self.sim.seed(int(self.np_random.integers(2**63)))
        self.task.reset(self.np_random if goal_rng is None else goal_rng)
        qpos, qvel = self.task.initial_state(self.np_random)
        self._state = self.sim.reset(qpos, qvel)
        self._obs = self.task.observation(self._state)
        self._steps = 0
        return self._obs, {"randomization": self.randomization_info()}

    @staticmethod
    def _goal_rng(options: dict[str, Any] | None) -> np.random.Generator | None:
        """The ``goal_rng`` reset option, checked (None when not given)."""
        if not options:
            return None
        unknown = set(options) - {"goal_rng"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; known: ['goal_rng']")
        goal_rng = options["goal_rng"]
        if not isinstance(goal_rng, np.random.Generator):
            raise TypeError(
                f"reset option 'goal_rng' must be a numpy Generator, got {type(goal_rng).__name__}"
            )
        return goal_rng

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None or self._state is None:
            raise RuntimeError("call reset() before step()")
        task, sim = self.task, self.sim
        sim.apply_command(task.command(action, self._state), checked=True)  # Task.command validated it
        self._state = sim.step()
        next_obs = task.observation(self._state)
        reward = task.reward(self._obs, action, next_obs)
        terminated = task.terminated(next_obs)
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps and not terminated
        self._obs = next_obs
        return next_obs, reward, terminated, truncated, {}

    def policy_contract(self, controller: str = DEFAULT_CONTROLLER) -> PolicyContract:
        """The contract of a policy trained on this env (its task and randomization settings)."""
        return PolicyContract.for_task(
            self.task, controller=controller, randomization=dataclasses.asdict(self.sim.randomization)
        )

    def randomization_info(self) -> dict[str, float | list[float]]:
        """A copy of the randomization values of the current episode (empty when disabled)."""
        return {
            key: list(value) if isinstance(value, list) else value
            for key, value in self.sim.randomization_info.items()
        }

    def render(self) -> np.ndarray | None:
        """An RGB frame (240×320) from the model's ``view`` camera; needs OpenGL (e.g. ``MUJOCO_GL=egl``)."""
        if self.render_mode != "rgb_array":
            return None
        import mujoco

        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.sim.model, 240, 320)
        camera = "view" if mujoco.mj_name2id(self.sim.model, mujoco.mjtObj.mjOBJ_CAMERA, "view") >= 0 else -1
        self._renderer.update_scene(self.sim.data, camera=camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def register_envs() -> None:
    """Register the ``rl_control/*-v0`` ids with gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=_env_creator, kwargs={"task": task})


def _env_creator(**kwargs: Any) -> RobotTaskEnv:
    """The registered entry point (gymnasium passes the env kwargs)."""
    return RobotTaskEnv(**kwargs)


def make_vector_env(
    task: str,
    num_envs: int,
    *,
    randomization: RandomizationConfig | None = None,
    asynchronous: bool = False,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of a task as a gymnasium vector env (sync in-process, or async subprocesses)."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")

    def factory() -> gym.Env:
        return RobotTaskEnv(task, randomization=randomization)

    env_fns = [factory] * num_envs
    if asynchronous:
        return gym.vector.AsyncVectorEnv(env_fns)
    return gym.vector.SyncVectorEnv(env_fns)


register_envs()
