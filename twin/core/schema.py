"""Plain-language errors from pydantic's, for the configuration files the twin validates with pydantic models.

Binding files, alarm rules and token files are checked by models; their errors must still read the way an
integration engineer expects ("width must be a positive integer, got 'six'"), and point at one field.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_core import ErrorDetails

Location = tuple[str | int, ...]

# what a value must be, by pydantic error type; a field's `description` says it better where one is given
_EXPECTED = {
    "float_type": "a number", "float_parsing": "a number", "int_type": "an integer", "int_parsing": "an integer",
    "finite_number": "a finite number", "string_type": "text", "bool_type": "true or false", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


class FieldError(ValueError):
    """A check across fields failed. `loc` is the field to blame, relative to the model that checks, so that the
    error points at that field's line rather than at the whole entry."""

    def __init__(self, loc: str | Location, message: str):
        self.loc: Location = (loc,) if isinstance(loc, str) else loc
        super().__init__(message)


def blamed(error: ErrorDetails) -> Location:
    """Where an error is: pydantic's location, and below it the field a FieldError names."""
    cause = error.get("ctx", {}).get("error")
    return tuple(error["loc"]) + (cause.loc if isinstance(cause, FieldError) else ())


def expectation(error: ErrorDetails, model: type[BaseModel] | None, name: str) -> str | None:
    """What the field must be ("a positive integer", ">= 0.5"), or None for an error that is its own sentence."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"{sign} {ctx[key]:g}"
    field = model.model_fields.get(name) if model is not None else None
    if field is not None and field.description:
        return field.description
    if kind == "literal_error":
        return f"one of {ctx['expected'].replace(chr(39), '')}"
    if kind in ("string_too_short", "too_short"):
        return "not empty"
    return _EXPECTED.get(kind)


def sentence(error: ErrorDetails, model: type[BaseModel] | None, name: str, value: object, *,
             prefix: str = "") -> str:
    """One error as a sentence naming the field and the value it got; `prefix` qualifies the field ("alarm ")."""
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return f"missing {name!r}"
    expected = expectation(error, model, name) or error["msg"].removeprefix("Input should be ").lower()
    return f"{prefix}{name} must be {expected}, got {value!r}"
