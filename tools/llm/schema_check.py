"""Does a constrained answer match its JSON schema? Used to detect servers that ignore the constraint."""

from __future__ import annotations

import json
from typing import Any

import jsonschema


def schema_problem(text: str, schema: dict[str, Any]) -> str | None:
    """None when ``text`` is JSON matching ``schema``; else what is wrong, in a few words."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return f"the answer is not JSON: {text[:80]!r}"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return f"the answer does not match the schema ({exc.message[:120]})"
    except jsonschema.SchemaError as exc:  # our own schema is wrong: not the server's fault
        raise ValueError(f"invalid JSON schema: {exc.message}") from exc
    return None
