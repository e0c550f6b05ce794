"""The policy authority's per-tick part, on the control thread (ROS-free).

Around every :meth:`ActorCore.tick` the guard

* stores the observation the core produced this tick in the probe ring
  (:class:`~rl_control.policy.authority.ObservationRing`): the next candidate policy is checked on the
  observations the robot really produced, not only on the zero observation;
* tells the swapper whether the active policy's output was valid (an action the task and the safety filter
  accepted) or invalid (non-finite or refused); the swapper rolls back to the previous policy after
  ``rollback_invalid_ticks`` invalid outputs in a row (:meth:`PolicySwapper.report_tick`).

Ticks where the policy did not act (stale state, disabled, human intervention, random exploration) count
neither way.
"""

from __future__ import annotations

import numpy as np

from rl_control.actor.core import ActorCore, TickResult
from rl_control.actor.policy_swap import PolicySwapper
from rl_control.envs.state import RobotState
from rl_control.policy.authority import ObservationRing


class PolicyTickGuard:
    """Feeds ``observations`` and reports policy validity to ``swapper`` around each core tick."""

    def __init__(self, core: ActorCore, swapper: PolicySwapper, observations: ObservationRing) -> None:
        self.core = core
        self.swapper = swapper
        self.observations = observations

    def tick(
        self,
        state: RobotState | None,
        *,
        stale: bool,
        enabled: bool,
        intervention: np.ndarray | None,
    ) -> TickResult:
        """One :meth:`ActorCore.tick` with the probe ring and rollback bookkeeping around it."""
        core = self.core
        counters = core.counters
        policy_actions, bad_actions = counters.policy_actions, counters.bad_actions
        policy_acts = intervention is None and core.policy is not None and not core.explore_uniformly
        previous_observation = core.last_observation
        result = core.tick(state, stale=stale, enabled=enabled, intervention=intervention)
        observation = core.last_observation
        if observation is not None and observation is not previous_observation:
            self.observations.add(observation)
        if counters.policy_actions > policy_actions:
            self.swapper.report_tick(True)
        elif policy_acts and counters.bad_actions > bad_actions:
            self.swapper.report_tick(False)
        return result
