"""The base of every schema a user writes (recipe sections, stage parameters, gates): unknown keys
are errors, values are immutable, and numbers are what the field says.

pydantic's lax mode takes ``17.0`` and ``true`` for an integer and ``true`` for a number; a recipe
meaning ``opset: 17`` must say so. Checked before pydantic converts anything, by the field's
declared type (through ``X | None``, ``Annotated``, lists, tuples and mappings), so strings, lists and
literals keep pydantic's own checks. A leaf: pydantic only.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _accepts(annotation: Any) -> set[type]:
    """The plain scalar types (int, float, bool) ``annotation`` names at its top level."""
    if typing.get_origin(annotation) is Annotated:
        return _accepts(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set().union(*(_accepts(a) for a in typing.get_args(annotation)))
    return {annotation} & {int, float, bool}


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _scalar(accepted: set[type], value: Any, where: str) -> str | None:
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) and bool not in accepted:
        return f"{prefix}must be {'a number' if float in accepted else 'an integer'} (got {_short(value)})"
    if isinstance(value, float) and float not in accepted and int in accepted:
        return f"{prefix}must be an integer (got {_short(value)})"
    return None


def loose_number(annotation: Any, value: Any, where: str = "") -> str | None:
    """Why ``value`` is not a number of the kind ``annotation`` declares (None: it is, or it is
    something pydantic checks itself). ``where`` names the item inside the field."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        if accepted := _accepts(annotation):
            return _scalar(accepted, value, where)
        arms = [a for a in typing.get_args(annotation) if a is not type(None)]
        return loose_number(arms[0], value, where) if len(arms) == 1 else None
    if annotation in (int, float, bool):
        return _scalar({annotation}, value, where)
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list | tuple) and args:
        variadic = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
        for i, item in enumerate(value):
            arg = args[0] if variadic else (args[i] if i < len(args) else None)
            if arg is not None and (why := loose_number(arg, item, f"{where}.{i}" if where else f"item {i}")):
                return why
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            if why := loose_number(args[1], item, f"{where}.{key}" if where else str(key)):
                return why
    return None


class StrictModel(BaseModel):
    """Unknown keys refused, frozen, no NaN or inf, and no float or bool where an int is meant."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_as_declared(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and (why := loose_number(field.annotation, value)):
            raise ValueError(why)
        return value
