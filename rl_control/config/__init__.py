"""The one validated experiment schema (ROS 2 parameter YAML -> typed dataclasses).

The schema module is imported lazily: core modules (``rl_control.envs``, ``rl_control.learning``) import
:mod:`rl_control.config.errors` for their own dataclasses, and the schema in turn imports those dataclasses.
"""

from typing import Any

from rl_control.config.errors import CombinedConfigError, ConfigError, FieldError

_SCHEMA_NAMES = (
    "NODE_NAMES",
    "SHARED_SECTION",
    "ActorNodeConfig",
    "ExperimentConfig",
    "LearnerNodeConfig",
    "SharedConfig",
    "SimNodeConfig",
    "config_from_node",
    "config_from_parameters",
    "load_experiment",
    "parse_experiment",
)


def __getattr__(name: str) -> Any:
    if name in _SCHEMA_NAMES:
        from rl_control.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'rl_control.config' has no attribute {name!r}")


__all__ = ["ConfigError", "CombinedConfigError", "FieldError", *_SCHEMA_NAMES]
