"""ROS message objects <-> the plain nested dicts of ``messages.py``, for any rosidl-generated Python class.

Works through the API every generated message class has (``get_fields_and_field_types()``, field
properties with type checks, nested types named ``pkg/Name``), so it needs no ROS package itself:
``rosidl_runtime_py`` is not part of every ROS Python environment (the PyPI ROS 2 wheels lack it).
"""

from __future__ import annotations

import array
import importlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

# pkg/Name, sequence<pkg/Name>, sequence<pkg/Name, 5>, pkg/Name[3]
_NESTED = re.compile(r"^(?:sequence<)?(\w+)/(\w+)(?:, \d+)?>?(?:\[\d*\])?$")


def is_message(obj: Any) -> bool:
    return hasattr(type(obj), "get_fields_and_field_types")


def to_dict(msg: Any) -> dict[str, Any]:
    """Every field of ``msg`` as plain Python: messages as dicts, arrays and sequences as lists."""
    return {name: _plain(getattr(msg, name)) for name in type(msg).get_fields_and_field_types()}


def _plain(value: Any) -> Any:
    if is_message(value):
        return to_dict(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple, array.array)):
        return [_plain(v) for v in value]
    return value


def fill(msg: Any, values: Mapping[str, Any]) -> Any:
    """Set the fields of ``msg`` named in ``values`` (nested dicts for nested messages); returns ``msg``.

    Numbers are converted to the field's Python type (an int for a float field). An unknown field
    or a value the message's own checks refuse raises ValueError naming the field.
    """
    types = type(msg).get_fields_and_field_types()
    for name, value in values.items():
        if name not in types:
            raise ValueError(f"{type(msg).__name__} has no field {name!r} (fields: {sorted(types)})")
        current = getattr(msg, name)
        try:
            if is_message(current):
                fill(current, value)
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
                element = _message_class(types[name])
                setattr(msg, name, [fill(element(), v) for v in value])
            elif isinstance(current, (bool, int, float, str)) and not isinstance(value, (list, tuple)):
                setattr(msg, name, type(current)(value))
            else:
                setattr(msg, name, value)
        except (AssertionError, TypeError, ValueError) as e:
            raise ValueError(f"{type(msg).__name__}.{name}: {e}") from None
    return msg


def _message_class(field_type: str) -> type:
    """The class of a nested message type string such as ``sequence<geometry_msgs/Twist>``."""
    match = _NESTED.match(field_type)
    if match is None:
        raise ValueError(f"not a message type: {field_type!r}")
    package, name = match.groups()
    return getattr(importlib.import_module(f"{package}.msg"), name)
