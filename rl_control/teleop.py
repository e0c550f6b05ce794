"""Joystick teleoperation for the actor, ROS-free: a ``sensor_msgs/Joy`` sample → deadman and intervention.

:class:`JoyMapping` turns one joystick sample (its ``axes`` and ``buttons``) into what the actor already
listens to: the deadman state (``/rl_control/enable``) and, while the operator corrects the robot, a
normalized action in [-1, 1] in the controller's joint order (``/rl_control/intervention``). The ROS
adapter is :mod:`rl_control.ros.joy_node`; the mapping comes from the experiment file's ``joy_node``
section (:class:`rl_control.config.schema.JoyNodeConfig`).

An intervention is sent while the deadman is held and either the intervention button is held
(``intervention_button >= 0``) or, without such a button, any mapped axis is outside the dead zone.
Axis values inside the dead zone count as 0; ``axis_scales`` give each joint's gain and sign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JoyCommand:
    """What one joystick sample asks of the actor."""

    enable: bool
    intervention: np.ndarray | None  # [n_joints] in [-1, 1], command joint order; None: the policy acts


class JoyMapping:
    """Axes → normalized joint actions and a deadman button (see the module docstring)."""

    def __init__(
        self,
        axes: Sequence[int],
        axis_scales: Sequence[float],
        deadman_button: int,
        intervention_button: int = -1,
        deadzone: float = 0.05,
    ) -> None:
        if not axes:
            raise ValueError("joy_node.axes: map at least one joystick axis (one per command joint)")
        if len(axis_scales) != len(axes):
            raise ValueError(
                f"joy_node.axis_scales has {len(axis_scales)} entries, joy_node.axes has {len(axes)}: "
                "give one scale per mapped axis"
            )
        if deadman_button < 0:
            raise ValueError(f"joy_node.deadman_button: {deadman_button} is not a button index (>= 0)")
        if not 0.0 <= deadzone < 1.0:
            raise ValueError(f"joy_node.deadzone: {deadzone} is outside [0, 1)")
        self.axes = np.asarray(axes, dtype=np.int64)
        self.axis_scales = np.asarray(axis_scales, dtype=np.float64)
        self.deadman_button = int(deadman_button)
        self.intervention_button = int(intervention_button)
        self.deadzone = float(deadzone)
        self._needed_axes = int(self.axes.max()) + 1
        self._needed_buttons = max(self.deadman_button, self.intervention_button) + 1

    @property
    def joint_count(self) -> int:
        """Length of the intervention actions (one per mapped axis, command joint order)."""
        return int(self.axes.size)

    def map(self, axes: Sequence[float], buttons: Sequence[int]) -> JoyCommand:
        """The actor command of one joystick sample (ValueError naming what the sample lacks)."""
        if len(axes) < self._needed_axes:
            raise ValueError(
                f"Joy message has {len(axes)} axes; joy_node.axes uses axis index {self._needed_axes - 1}"
            )
        if len(buttons) < self._needed_buttons:
            raise ValueError(
                f"Joy message has {len(buttons)} buttons; "
                f"joy_node uses button index {self._needed_buttons - 1}"
            )
        values = np.asarray(axes, dtype=np.float64)[self.axes]
        if not np.all(np.isfinite(values)):
            raise ValueError("Joy message has a non-finite value on a mapped axis")
        values = np.where(np.abs(values) > self.deadzone, values, 0.0)
        enable = bool(buttons[self.deadman_button])
        if self.intervention_button >= 0:
            intervening = enable and bool(buttons[self.intervention_button])
        else:
            intervening = enable and bool(np.any(values != 0.0))
        action = np.clip(values * self.axis_scales, -1.0, 1.0) if intervening else None
        return JoyCommand(enable, action)
