"""The episode-reset service seen by the ROS-free actor (:mod:`rl_control.actor.episodes`): an rclpy
``std_srvs/Trigger`` client behind the :class:`~rl_control.actor.episodes.ResetService` protocol."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.client import Client
from std_srvs.srv import Trigger

from rl_control.actor.episodes import ResetCall


class _TriggerCall:
    """:class:`~rl_control.actor.episodes.ResetCall` over an rclpy ``Trigger`` future."""

    def __init__(self, future: Any) -> None:
        self._future = future

    def done(self) -> bool:
        return bool(self._future.done())

    def outcome(self) -> tuple[bool, str]:
        response = self._future.result()
        return (False, "no response") if response is None else (bool(response.success), str(response.message))


class TriggerResetService:
    """:class:`~rl_control.actor.episodes.ResetService` over an rclpy ``Trigger`` client."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.name = client.srv_name

    def ready(self) -> bool:
        return bool(self._client.service_is_ready())

    def request(self, on_done: Callable[[], None]) -> ResetCall:
        future = self._client.call_async(Trigger.Request())
        future.add_done_callback(lambda _future: on_done())
        return _TriggerCall(future)
