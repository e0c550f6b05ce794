"""An application run under a lifecycle node (``rclpy.lifecycle``), as ros2_control manages controllers.

* configure: build the application (``configure(node, config)``: load the task, the policy, create its
  publishers and subscriptions, start its non-commanding threads);
* activate: ``app.activate()`` (commands enabled);
* deactivate: ``app.deactivate()`` (the safe command, then no commands);
* cleanup: ``app.shutdown()`` and destroy every publisher, subscription, client, service and timer the
  application created, so a later configure starts afresh;
* shutdown / error / SIGINT: as cleanup.

``autostart`` runs configure + activate at once (the launchers' default); otherwise an external manager (a
plain rclpy client of ``~/change_state``, ``ros2 lifecycle set``) drives the transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle.managed_entity import ManagedEntity
from rclpy.node import Node

from rl_control.config.errors import ConfigError

_ENTITY_KINDS = ("publishers", "subscriptions", "clients", "services", "timers")


class Activatable(Protocol):
    """What a managed application provides."""

    @property
    def fatal_error(self) -> str | None:
        """Set by a worker thread that died."""

    def activate(self) -> None:
        """Start commanding."""

    def deactivate(self) -> None:
        """Send the safe command and stop commanding."""

    def shutdown(self) -> None:
        """Stop every thread (after :meth:`deactivate`)."""


class ManagedApp(ManagedEntity):
    """Builds, activates, deactivates and tears down an :class:`Activatable` on lifecycle transitions."""

    def __init__(
        self,
        node: LifecycleNode,
        config: Any,
        configure: Callable[[Node, Any], Activatable],
        *,
        autostart: bool,
    ) -> None:
        self._node = node
        self._config = config
        self._configure = configure
        self.app: Activatable | None = None
        self._created: dict[str, list[Any]] = {}
        self.configure_error: Exception | None = None
        node.add_managed_entity(self)
        if autostart:
            for step, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate)):
                if trigger() != TransitionCallbackReturn.SUCCESS:
                    if self.configure_error is not None:
                        raise self.configure_error
                    raise ValueError(f"{node.get_name()}: lifecycle {step} failed")

    @property
    def fatal_error(self) -> str | None:
        """The application's fatal error (a dead control thread), for ``run_node``."""
        return None if self.app is None else self.app.fatal_error

    # --- lifecycle callbacks (executor thread, or the constructor with autostart) --------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        before = self._entity_ids()
        try:
            self.app = self._configure(self._node, self._config)
        except (ConfigError, ValueError, OSError) as exc:
            self.configure_error = exc
            self._node.get_logger().error(f"configure failed: {exc}")
            self._destroy(self._created_since(before))  # what the half-built application created
            return TransitionCallbackReturn.FAILURE
        self.configure_error = None
        self._created = self._created_since(before)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.app is not None
        self.app.activate()
        self._node.get_logger().info("active: commands enabled")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.app is not None
        self.app.deactivate()
        self._node.get_logger().info("inactive: safe command sent, no commands")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """Stop the application (safe command when active) and destroy what it created; idempotent."""
        if self.app is None:
            return
        self.app.deactivate()
        self.app.shutdown()
        self.app = None
        self._destroy(self._created)
        self._created = {}

    def _entity_ids(self) -> dict[str, set[int]]:
        return {kind: {id(entity) for entity in getattr(self._node, kind)} for kind in _ENTITY_KINDS}

    def _created_since(self, before: dict[str, set[int]]) -> dict[str, list[Any]]:
        return {
            kind: [entity for entity in getattr(self._node, kind) if id(entity) not in before[kind]]
            for kind in _ENTITY_KINDS
        }

    def _destroy(self, created: dict[str, list[Any]]) -> None:
        for kind, entities in created.items():
            destroy = getattr(self._node, f"destroy_{kind[:-1]}")  # destroy_publisher, destroy_timer, ...
            for entity in entities:
                destroy(entity)
