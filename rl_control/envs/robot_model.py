"""Static facts about a robot read from its MJCF (joint order, limits, home pose), shared by sim and tasks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mujoco
import numpy as np

from rl_control.paths import model_path


@dataclass(frozen=True)
class RobotSpec:
    """The measured joints of a robot (model order) and the commands they accept."""

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
    qpos_adr: np.ndarray  # qpos index of each joint
    dof_adr: np.ndarray  # qvel index of each joint
    actuator_of_joint: np.ndarray  # actuator index of each joint, -1 for a passive joint
    floating_base: bool
    timestep: float


def load_model(robot: str) -> mujoco.MjModel:
    """Compile ``sim/<robot>.xml`` into a fresh MjModel (callers may modify it)."""
    return mujoco.MjModel.from_xml_path(str(model_path(robot)))


@cache
def robot_spec(robot: str) -> RobotSpec:
    """Read joint order, limits and home pose of ``robot`` (cached; the returned arrays are read-only).

    The joints are every hinge/slide joint in model order (a free base joint is not one of them);
    unactuated (passive) joints accept only a zero effort command.
    """
    model = load_model(robot)
    joint_ids = [j for j in range(model.njnt) if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE]
    names = tuple(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joint_ids)
    actuator_of_joint = np.full(len(joint_ids), -1)
    interfaces: set[str] = set()
    for i in range(model.nu):
        if model.actuator_trntype[i] != mujoco.mjtTrn.mjTRN_JOINT:
            raise ValueError(f"{robot}: actuator {i} does not drive a joint; only joint actuators supported")
        joint_index = joint_ids.index(int(model.actuator_trnid[i, 0]))
        if actuator_of_joint[joint_index] >= 0:
            raise ValueError(f"{robot}: joint {names[joint_index]!r} has more than one actuator")
        actuator_of_joint[joint_index] = i
        biasprm = model.actuator_biasprm[i]
        is_servo = model.actuator_biastype[i] == mujoco.mjtBias.mjBIAS_AFFINE and biasprm[1] < 0
        interfaces.add("position" if is_servo else "effort")
    if len(interfaces) != 1:
        raise ValueError(f"{robot}: actuators mix position servos and motors; one interface per robot")
    interface = interfaces.pop()
    actuated = actuator_of_joint >= 0
    if interface == "position" and not actuated.all():
        raise ValueError(f"{robot}: a position-controlled robot needs a servo on every joint")
    limited = model.jnt_limited[joint_ids].astype(bool)
    joint_low = np.where(limited, model.jnt_range[joint_ids, 0], -np.inf)
    joint_high = np.where(limited, model.jnt_range[joint_ids, 1], np.inf)
    low, high = np.zeros(len(names)), np.zeros(len(names))
    for j, i in enumerate(actuator_of_joint):
        if i < 0:
            continue
        if interface == "position":
            low[j], high[j] = model.actuator_ctrlrange[i]
        else:
            gear = model.actuator_gear[i, 0]
            force_low, force_high = sorted(model.actuator_ctrlrange[i] * gear)
            if model.actuator_forcelimited[i]:
                force_low = max(force_low, model.actuator_forcerange[i, 0])
                force_high = min(force_high, model.actuator_forcerange[i, 1])
            low[j], high[j] = force_low, force_high
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
        "actuator_of_joint": actuator_of_joint,
    }
    for value in arrays.values():
        value.setflags(write=False)
    return RobotSpec(
        robot=robot,
        joint_names=names,
        command_interface=interface,
        nq=model.nq,
        nv=model.nv,
        floating_base=bool(model.njnt > 0 and model.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE),
        timestep=float(model.opt.timestep),
        **arrays,
    )
