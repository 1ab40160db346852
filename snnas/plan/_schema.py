"""The plan's JSON Schema (shipped in the package) and its enforcement with ``jsonschema``."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from snnas.errors import PlanError

__all__ = ["SCHEMA_VERSION", "plan_schema", "validate_plan"]

#: The plan format this snnas writes and reads; a plan with a higher version is refused.
SCHEMA_VERSION = 1

_MAX_SHOWN = 120


@cache
def plan_schema() -> dict[str, Any]:
    """The JSON Schema of ``plan.json`` (``snnas/plan/plan.schema.json``)."""
    text = resources.files("snnas.plan").joinpath("plan.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def validate_plan(data: Any, source: str) -> None:
    """Refuse ``data`` unless it is a plan this snnas can read, with one line naming ``source``,
    the offending key and the reason."""
    import jsonschema

    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a JSON object, found {type(data).__name__}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise PlanError(
            f"{source}: schema_version {version} comes from a newer snnas; this one reads "
            f"version {SCHEMA_VERSION} (upgrade snnas to run this plan)"
        )
    validator = _validator()
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "<document>"
        if error.validator == "additionalProperties":  # name the key, not the whole object
            found = error.message.rpartition("(")[2].rstrip(")")
        else:
            found = _short(error.instance)
        raise PlanError(
            f"{source}: {where}: does not follow the plan schema "
            f"({error.validator}: {_short(error.validator_value)}), found {found}"
        )


@cache
def _validator() -> Any:
    """The schema's validator, with JSON Schema's "integer" made strict: ``4.0`` is a number,
    not an integer (the plan's counts index lists and size tensors)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = jsonschema.validators.extend(base, type_checker=checker)
    return strict(plan_schema())
