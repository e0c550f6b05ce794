"""ROS parameters of a node declared from the one config schema, and run-time changes validated by it.

At start every parameter of the node (the shared ``/**`` keys and its own section, nested keys dotted) is
declared with its value -- the one from the parameter file or the schema's default -- and a descriptor:
description, type, numeric range, allowed values or path kind, and ``read_only`` unless the schema marks the
key ``tunable``. So ``ros2 param list/describe/dump`` show every key and default.

A ``set_parameters`` request is checked by the same schema as the file (types, bounds, choices, cross-field
rules): an invalid value is refused with the schema's reason. A valid change of a tunable key is handed to
the callback the node registered for it with :func:`on_parameter_change`; a tunable key with no callback is
refused ("not applied at run time"), so a success always means the node uses the new value.
"""

from __future__ import annotations

import logging
import typing
import weakref
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from rl_control.config.errors import ConfigError
from rl_control.config.schema import (
    ExperimentConfig,
    ParameterSpec,
    config_from_parameters,
    node_parameter_specs,
)

logger = logging.getLogger(__name__)

_SCALAR_TYPES = {
    bool: Parameter.Type.BOOL,
    int: Parameter.Type.INTEGER,
    float: Parameter.Type.DOUBLE,
    str: Parameter.Type.STRING,
}
_LIST_TYPES = {
    bool: Parameter.Type.BOOL_ARRAY,
    int: Parameter.Type.INTEGER_ARRAY,
    float: Parameter.Type.DOUBLE_ARRAY,
    str: Parameter.Type.STRING_ARRAY,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: The parameters object of each node, for :func:`on_parameter_change`.
_BY_NODE: weakref.WeakKeyDictionary[Node, SchemaParameters] = weakref.WeakKeyDictionary()


def parameter_type(spec: ParameterSpec) -> Parameter.Type:
    """The ROS parameter type of a schema field (``list[float]`` -> ``DOUBLE_ARRAY``)."""
    if typing.get_origin(spec.field_type) is list:
        (item_type,) = typing.get_args(spec.field_type)
        return _LIST_TYPES[item_type]
    return _SCALAR_TYPES[spec.field_type]


def describe(spec: ParameterSpec) -> ParameterDescriptor:
    """The ROS descriptor of one schema parameter.

    Typing is left to the schema (``dynamic_typing``), so a value of the wrong type is refused with the
    schema's reason ("expected float, got str 'fast'"), and an integer is accepted for a float as in files.
    """
    descriptor = ParameterDescriptor(
        description=spec.description,
        read_only=not spec.tunable,
        type=parameter_type(spec).value,
        dynamic_typing=True,
    )
    constraints = []
    if spec.choices:
        constraints.append("one of " + ", ".join(str(choice) for choice in spec.choices))
    if spec.path_kind == "file":
        constraints.append("an existing file ('' = unset)")
    elif spec.path_kind == "dir":
        constraints.append("a directory (created if missing), not empty")
    descriptor.additional_constraints = "; ".join(constraints)
    if spec.field_type is float and (spec.minimum is not None or spec.maximum is not None):
        low = float("-inf") if spec.minimum is None else float(spec.minimum)
        high = float("inf") if spec.maximum is None else float(spec.maximum)
        descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    elif spec.field_type is int and (spec.minimum is not None or spec.maximum is not None):
        low_int = _INT64_MIN if spec.minimum is None else int(spec.minimum)
        high_int = _INT64_MAX if spec.maximum is None else int(spec.maximum)
        descriptor.integer_range = [IntegerRange(from_value=low_int, to_value=high_int, step=0)]
    return descriptor


class SchemaParameters:
    """Declares a node's parameters from the schema and validates run-time changes with it."""

    def __init__(
        self, node: Node, config: ExperimentConfig, *, file: str | None = None, section: str | None = None
    ) -> None:
        self._node = node
        self._file = file
        self._section = section or node.get_name()  # the node's section of the schema, whatever its name
        self.config = config
        self._callbacks: dict[str, Callable[[Any], None]] = {}
        self._values: dict[str, Any] = {}
        self._tunable: set[str] = set()
        for spec in node_parameter_specs(self._section, config):
            self._declare(spec)
        node.add_on_set_parameters_callback(self._on_set)
        _BY_NODE[node] = self

    def _declare(self, spec: ParameterSpec) -> None:
        descriptor = describe(spec)
        if spec.tunable:
            self._tunable.add(spec.name)
        if isinstance(spec.value, list) and not spec.value:  # ROS cannot type an empty list by its value
            descriptor.dynamic_typing = False
            self._node.declare_parameter(spec.name, parameter_type(spec), descriptor)
            return
        self._values[spec.name] = spec.value
        self._node.declare_parameter(spec.name, spec.value, descriptor, ignore_override=True)

    def on_change(self, key: str, callback: Callable[[Any], None]) -> None:
        """Call ``callback(new_value)`` when a valid ``set_parameters`` changes the tunable ``key``.

        The callback may raise ``ValueError`` to refuse the change (its message is the reason).
        """
        if key not in self._tunable:
            raise ValueError(f"{self._node.get_name()}: parameter {key!r} is not tunable in the schema")
        self._callbacks[key] = callback

    def _on_set(self, parameters: list[Parameter]) -> SetParametersResult:
        changed = {p.name: p.value for p in parameters if self._values.get(p.name, None) != p.value}
        not_applied = sorted(name for name in changed if name not in self._callbacks)
        if not_applied:
            return SetParametersResult(
                successful=False,
                reason=f"not applied at run time by {self._node.get_name()}: {', '.join(not_applied)}",
            )
        values = {**self._values, **changed}
        try:
            config = config_from_parameters(self._section, values, file=self._file)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        resolved = {spec.name: spec.value for spec in node_parameter_specs(self._section, config)}
        try:
            for name in changed:
                self._callbacks[name](resolved[name])
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._values = values
        self.config = config
        logger.info("%s: parameters changed: %s", self._node.get_name(), changed)
        return SetParametersResult(successful=True)


def on_parameter_change(node: Node, key: str, callback: Callable[[Any], None]) -> bool:
    """Register ``callback(new_value)`` for run-time changes of the tunable parameter ``key`` of ``node``.

    Returns False (and registers nothing) when the node's parameters were not declared from the schema,
    e.g. a node built in-process by a benchmark rather than by :func:`rl_control.ros.node_utils.run_node`.
    See :meth:`SchemaParameters.on_change`.
    """
    parameters = _BY_NODE.get(node)
    if parameters is None:
        return False
    parameters.on_change(key, callback)
    return True
