"""Static facts about a robot read from its MJCF (joint order, limits, home pose), shared by sim and tasks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mujoco
import numpy as np

from rl_control.paths import model_path


@dataclass(frozen=True)
class RobotSpec:
    """The actuated joints of a robot, in actuator order, and what commands they accept."""

    robot: str
    joint_names: tuple[str, ...]
    command_interface: str  # "position" (PD servo) or "effort" (torque/force)
    command_low: np.ndarray  # per joint: position limits (position iface) or effort limits
    command_high: np.ndarray
    joint_low: np.ndarray  # joint range (±inf when the joint is unlimited)
    joint_high: np.ndarray
    home_qpos: np.ndarray  # full MuJoCo qpos of the "home" keyframe
    nq: int
    nv: int
    qpos_adr: np.ndarray  # qpos index of each actuated joint
    dof_adr: np.ndarray  # qvel index of each actuated joint
    floating_base: bool
    timestep: float


def load_model(robot: str) -> mujoco.MjModel:
    """Compile ``sim/<robot>.xml`` into a fresh MjModel (callers may modify it)."""
    return mujoco.MjModel.from_xml_path(str(model_path(robot)))


@cache
def robot_spec(robot: str) -> RobotSpec:
    """Read joint order, limits and home pose of ``robot`` (cached; the returned arrays are read-only)."""
    model = load_model(robot)
    names: list[str] = []
    interfaces: set[str] = set()
    for i in range(model.nu):
        if model.actuator_trntype[i] != mujoco.mjtTrn.mjTRN_JOINT:
            raise ValueError(
                f"{robot}: actuator {i} does not drive a joint; only joint actuators are supported"
            )
        joint_id = int(model.actuator_trnid[i, 0])
        names.append(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint_id))
        is_servo = (
            model.actuator_biastype[i] == mujoco.mjtBias.mjBIAS_AFFINE and model.actuator_biasprm[i, 1] < 0
        )
        interfaces.add("position" if is_servo else "effort")
    if len(interfaces) != 1:
        raise ValueError(f"{robot}: actuators mix position servos and motors; one interface per robot")
    interface = interfaces.pop()
    joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in names]
    limited = model.jnt_limited[joint_ids].astype(bool)
    joint_low = np.where(limited, model.jnt_range[joint_ids, 0], -np.inf)
    joint_high = np.where(limited, model.jnt_range[joint_ids, 1], np.inf)
    if interface == "position":
        low, high = model.actuator_ctrlrange[:, 0].copy(), model.actuator_ctrlrange[:, 1].copy()
    else:
        gear = model.actuator_gear[:, 0]
        low = np.maximum(model.actuator_ctrlrange[:, 0] * gear, model.actuator_forcerange[:, 0])
        high = np.minimum(model.actuator_ctrlrange[:, 1] * gear, model.actuator_forcerange[:, 1])
    key_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")
    if key_id < 0:
        raise ValueError(f"{robot}: the MJCF has no 'home' keyframe")
    arrays = {
        "command_low": low,
        "command_high": high,
        "joint_low": joint_low,
        "joint_high": joint_high,
        "home_qpos": model.key_qpos[key_id].copy(),
        "qpos_adr": model.jnt_qposadr[joint_ids].copy(),
        "dof_adr": model.jnt_dofadr[joint_ids].copy(),
    }
    for value in arrays.values():
        value.setflags(write=False)
    return RobotSpec(
        robot=robot,
        joint_names=tuple(names),
        command_interface=interface,
        nq=model.nq,
        nv=model.nv,
        floating_base=bool(model.njnt > 0 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE),
        timestep=float(model.opt.timestep),
        **arrays,
    )
