"""Domain randomization: config validation, sampled ranges, reproducibility, exact restoration."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from rl_control.config.errors import FieldError
from rl_control.envs import MujocoSimulator, ObservationNoiseConfig, RandomizationConfig
from rl_control.envs.robot_model import load_model


def _model_arrays(model: mujoco.MjModel) -> dict[str, np.ndarray]:
    arrays = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        value = getattr(model, name)
        if isinstance(value, np.ndarray):
            arrays[name] = value.copy()
    for name in ("meaninertia", "meanmass", "meansize", "extent", "center"):
        arrays[f"stat.{name}"] = np.array(getattr(model.stat, name))
    return arrays


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "key", "fragment"),
    [
        ({"friction": [1.3, 1.25]}, "friction", "low 1.3 > high 1.25"),
        ({"mass_scale": [-0.5, 1.0]}, "mass_scale", "outside the allowed"),
        ({"action_latency_s": [0.0]}, "action_latency_s", "[low, high] pair"),
        ({"kp_scale": [0.9, float("nan")]}, "kp_scale", "finite"),
        ({"push_velocity": -1.0}, "push_velocity", "outside the allowed"),
        ({"initial_position_noise": 5.0}, "initial_position_noise", "outside the allowed"),
    ],
)
def test_bad_ranges_are_precise_field_errors(kwargs: dict, key: str, fragment: str) -> None:
    with pytest.raises(FieldError) as excinfo:
        RandomizationConfig(**kwargs)
    assert excinfo.value.key == key
    assert fragment in str(excinfo.value)


def test_negative_noise_is_a_field_error_and_nested_dict_is_accepted() -> None:
    with pytest.raises(FieldError) as excinfo:
        ObservationNoiseConfig(velocity=-0.1)
    assert excinfo.value.key == "velocity"
    cfg = RandomizationConfig(observation_noise={"position": 0.02})
    assert isinstance(cfg.observation_noise, ObservationNoiseConfig)
    assert cfg.observation_noise.position == 0.02


def test_defaults_are_valid_and_disabled() -> None:
    cfg = RandomizationConfig()
    assert cfg.enabled is False
    assert (
        cfg.friction == [0.4, 1.25] and cfg.mass_scale == [0.9, 1.1] and cfg.action_latency_s == [0.0, 0.03]
    )


# ---------------------------------------------------------------------------------------------- sampling
def test_sampled_values_respect_ranges_and_reach_the_model() -> None:
    cfg = RandomizationConfig(enabled=True)
    sim = MujocoSimulator("quadruped", control_rate_hz=50.0, randomization=cfg, seed=3)
    nominal = load_model("quadruped")
    frictions = []
    for _ in range(20):
        sim.reset()
        info = sim.randomization_info
        frictions.append(info["friction"])
        assert cfg.friction[0] <= info["friction"] <= cfg.friction[1]
        np.testing.assert_allclose(sim.model.geom_friction[:, 0], info["friction"])
        scale = np.array(info["mass_scale"])
        assert np.all((scale >= cfg.mass_scale[0]) & (scale <= cfg.mass_scale[1]))
        np.testing.assert_allclose(sim.model.body_mass[2:], nominal.body_mass[2:] * scale[1:])
        assert cfg.added_mass[0] - 1e-12 <= info["added_mass"] <= cfg.added_mass[1] + 1e-12
        np.testing.assert_allclose(
            sim.model.body_mass[1], nominal.body_mass[1] * scale[0] + info["added_mass"]
        )
        offset = np.array(info["com_offset"])
        np.testing.assert_allclose(sim.model.body_ipos[1], nominal.body_ipos[1] + offset)
        for key in (
            "damping_scale",
            "armature_scale",
            "frictionloss_scale",
            "kp_scale",
            "kd_scale",
            "motor_strength",
        ):
            values = np.array(info[key])
            low, high = getattr(cfg, key)
            assert np.all((values >= low - 1e-12) & (values <= high + 1e-12)), key
        kp = np.array(info["kp_scale"]) * np.array(info["motor_strength"])
        np.testing.assert_allclose(sim.model.actuator_gainprm[:, 0], nominal.actuator_gainprm[:, 0] * kp)
        np.testing.assert_allclose(sim.model.actuator_biasprm[:, 1], nominal.actuator_biasprm[:, 1] * kp)
        assert 0.0 <= info["action_latency_s"] <= cfg.action_latency_s[1] + sim.physics_dt / 2
        assert 0.0 <= info["observation_delay_s"] <= cfg.observation_delay_s[1] + sim.control_dt / 2
        # derived constants were recomputed for the new masses
        assert sim.model.body_subtreemass[1] == pytest.approx(sim.model.body_mass[1:].sum())
    assert np.std(frictions) > 0.05  # really sampled, not a constant


def test_same_seed_same_randomization_and_trajectory() -> None:
    cfg = RandomizationConfig(enabled=True, push_interval_s=[0.2, 0.4])

    def rollout(seed: int) -> tuple[list, np.ndarray]:
        sim = MujocoSimulator("arm", control_rate_hz=50.0, randomization=cfg, seed=seed)
        infos, positions = [], []
        for _ in range(3):
            state = sim.reset()
            infos.append(dict(sim.randomization_info))
            for _ in range(30):
                sim.apply_command(state.position + 0.05)
                state = sim.step()
                positions.append(state.position.copy())
        return infos, np.array(positions)

    infos_a, traj_a = rollout(7)
    infos_b, traj_b = rollout(7)
    infos_c, _ = rollout(8)
    assert infos_a == infos_b
    np.testing.assert_array_equal(traj_a, traj_b)
    assert infos_a != infos_c


@pytest.mark.parametrize("robot", ["pendulum", "cartpole", "arm", "quadruped"])
def test_nominal_model_is_restored_exactly(robot: str) -> None:
    reference = _model_arrays(load_model(robot))
    cfg = RandomizationConfig(enabled=True)
    sim = MujocoSimulator(robot, control_rate_hz=50.0, randomization=cfg, seed=1)
    for _ in range(3):
        sim.reset()
    changed = [k for k, v in _model_arrays(sim.model).items() if not np.array_equal(v, reference[k])]
    assert "body_mass" in changed and "geom_friction" in changed
    cfg.enabled = False
    sim.reset()
    after = _model_arrays(sim.model)
    for key, value in reference.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    assert sim.randomization_info == {}


# ------------------------------------------------------------------------------------ per-step effects
def _only(**kwargs) -> RandomizationConfig:
    """Randomization enabled with every range collapsed to nominal except those given."""
    neutral = {
        "enabled": True,
        "friction": [0.8, 0.8],
        "mass_scale": [1.0, 1.0],
        "added_mass": [0.0, 0.0],
        "com_offset": [0.0, 0.0],
        "damping_scale": [1.0, 1.0],
        "armature_scale": [1.0, 1.0],
        "frictionloss_scale": [1.0, 1.0],
        "kp_scale": [1.0, 1.0],
        "kd_scale": [1.0, 1.0],
        "motor_strength": [1.0, 1.0],
        "action_latency_s": [0.0, 0.0],
        "observation_delay_s": [0.0, 0.0],
        "observation_noise": ObservationNoiseConfig(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        "push_velocity": 0.0,
        "initial_position_noise": 0.0,
        "initial_velocity_noise": 0.0,
    }
    neutral.update(kwargs)
    return RandomizationConfig(**neutral)


def _pendulum_run(cfg: RandomizationConfig, steps: int = 10) -> tuple[MujocoSimulator, np.ndarray]:
    sim = MujocoSimulator("pendulum", control_rate_hz=50.0, randomization=cfg, seed=0)
    sim.reset(qpos=np.array([math.pi]), qvel=np.array([0.0]))
    trace = []
    for _ in range(steps):
        sim.apply_command(np.array([1.0]))
        trace.append(sim.step().position[0])
    return sim, np.array(trace)


def test_action_latency_delays_commands_by_physics_steps() -> None:
    _, nominal = _pendulum_run(_only())
    sim, delayed = _pendulum_run(_only(action_latency_s=[0.01, 0.01]))
    assert sim.randomization_info["action_latency_s"] == pytest.approx(0.01)
    # Reference: no latency, but the first command applied 2 physics steps late by hand.
    ref = MujocoSimulator("pendulum", control_rate_hz=200.0)
    ref.reset(qpos=np.array([math.pi]), qvel=np.array([0.0]))
    ref.apply_command(np.zeros(1))
    ref.step()
    ref.step()
    expected = []
    ref.apply_command(np.array([1.0]))
    for i in range(40 - 2):
        state = ref.step()
        if (i + 3) % 4 == 0:
            expected.append(state.position[0])
    np.testing.assert_allclose(delayed[: len(expected)], expected, atol=1e-12)
    assert not np.allclose(delayed, nominal)


def test_observation_delay_reports_old_states() -> None:
    sim, delayed = _pendulum_run(_only(observation_delay_s=[0.04, 0.04]))
    _, nominal = _pendulum_run(_only())
    assert sim.randomization_info["observation_delay_s"] == pytest.approx(0.04)
    np.testing.assert_array_equal(delayed[2:], nominal[:-2])
    assert delayed[0] == delayed[1] == pytest.approx(math.pi)


def test_observation_noise_has_configured_std() -> None:
    noise = ObservationNoiseConfig(0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sim = MujocoSimulator("pendulum", control_rate_hz=50.0, randomization=_only(observation_noise=noise))
    sim.reset(qpos=np.array([math.pi]), qvel=np.array([0.0]))
    errors = []
    for _ in range(400):
        sim.apply_command(np.zeros(1))
        state = sim.step()
        errors.append(state.position[0] - sim.data.qpos[0])
        assert state.velocity[0] == sim.data.qvel[0]
    assert np.std(errors) == pytest.approx(0.02, rel=0.15)


def test_quadruped_orientation_noise_keeps_unit_quaternion() -> None:
    noise = ObservationNoiseConfig(imu_orientation=0.05)
    sim = MujocoSimulator("quadruped", control_rate_hz=50.0, randomization=_only(observation_noise=noise))
    state = sim.reset()
    for _ in range(5):
        sim.apply_command(state.position)
        state = sim.step()
        assert np.linalg.norm(state.imu_orientation) == pytest.approx(1.0)


def test_pushes_kick_the_robot_at_the_configured_interval() -> None:
    cfg = _only(push_velocity=1.0, push_interval_s=[0.2, 0.2])
    sim = MujocoSimulator("quadruped", control_rate_hz=50.0, randomization=cfg)
    state = sim.reset()
    for _ in range(50):  # 1 s
        sim.apply_command(state.position)
        state = sim.step()
    assert sim.randomization_info["push_count"] == pytest.approx(5.0, abs=1.0)


def test_initial_state_noise_is_bounded() -> None:
    cfg = _only(initial_position_noise=0.1, initial_velocity_noise=0.2)
    sim = MujocoSimulator("arm", control_rate_hz=50.0, randomization=cfg, seed=2)
    home = sim.spec.home_qpos
    deviations = []
    for _ in range(10):
        state = sim.reset()
        deviations.append(state.position - home)
        assert np.all(np.abs(state.velocity) <= 0.2 + 1e-12)
    deviations_arr = np.array(deviations)
    assert np.all(np.abs(deviations_arr) <= 0.1 + 1e-12) and np.std(deviations_arr) > 0.02
