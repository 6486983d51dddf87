"""py-field-filter: plugins/field-filter written in Python, built with componentize-py.

It keeps an event when its JSON body matches the configured conditions, with the same
configuration and decisions as the Rust plugin (the end-to-end tests compare the two):

    {"match": "all", "conditions": [{"path": "/payload/total", "op": "gte", "value": 100}]}
    [{"path": "/payload/status", "op": "in", "value": ["paid", "shipped"]}]

`path` is a JSON pointer into the body. `match` is `all` (default) or `any`. Operators:
`eq`, `ne`, `gt`, `gte`, `lt`, `lte` (numbers compare numerically, strings by code
point), `in`, `not_in` (value is a list), `contains` (substring of a string or element of
a list), `prefix`, `exists`, `missing`. A condition on a missing field is false, except
`missing` and `ne`/`not_in`.

Only `filter` does anything; a componentize-py component must implement every export of
the world, so `transform` and `authenticate` return the neutral result and say so.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

MISSING = object()
# Logged at debug level with the neutral result: "this hook does nothing" (wit/). The
# gateway then skips the hook instead of starting the interpreter for it.
NOT_IMPLEMENTED = "hookgate:hook-not-implemented"


def pointer(document, path):
    """The value at JSON pointer `path` (RFC 6901), or MISSING."""
    if path == "":
        return document
    if not path.startswith("/"):
        return MISSING
    value = document
    for token in path[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            if token not in value:
                return MISSING
            value = value[token]
        elif isinstance(value, list):
            if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
                return MISSING
            index = int(token)
            if index >= len(value):
                return MISSING
            value = value[index]
        else:
            return MISSING
    return value


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same(a, b):
    """Equality where 100 and 100.0 are the same number, and true is not 1."""
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def order(a, b):
    """-1, 0 or 1: numbers numerically, strings lexically (by code point); else None."""
    if is_number(a) and is_number(b):
        x, y = float(a), float(b)
    elif isinstance(a, str) and isinstance(b, str):
        x, y = a.encode(), b.encode()
    else:
        return None
    return (x > y) - (x < y)


def holds(op, field, value):
    if field is MISSING:
        return op in ("missing", "ne", "not_in")
    if op == "exists":
        return True
    if op == "missing":
        return False
    if op == "eq":
        return same(field, value)
    if op == "ne":
        return not same(field, value)
    if op in ("gt", "gte", "lt", "lte"):
        o = order(field, value)
        return o is not None and {"gt": o > 0, "gte": o >= 0, "lt": o < 0, "lte": o <= 0}[op]
    if op == "in":
        return isinstance(value, list) and any(same(field, v) for v in value)
    if op == "not_in":
        return not (isinstance(value, list) and any(same(field, v) for v in value))
    if op == "contains":
        if isinstance(field, str) and isinstance(value, str):
            return value in field
        return isinstance(field, list) and any(same(v, value) for v in field)
    # "prefix", the one operator left: settings() admits only OPERATORS.
    return isinstance(field, str) and isinstance(value, str) and field.startswith(value)


OPERATORS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "prefix",
             "exists", "missing"}


def settings(config):
    try:
        parsed = json.loads(config)
    except ValueError as error:
        raise Err(f"invalid config: {error}")
    if isinstance(parsed, list):
        mode, conditions = "all", parsed
    elif isinstance(parsed, dict) and isinstance(parsed.get("conditions"), list):
        mode, conditions = parsed.get("match", "all"), parsed["conditions"]
    else:
        raise Err("invalid config: expected a list of conditions or {\"conditions\": [...]}")
    if mode not in ("all", "any"):
        raise Err(f"invalid config: unknown match {mode!r}")
    for condition in conditions:
        if not (isinstance(condition, dict) and isinstance(condition.get("path"), str)
                and condition.get("op") in OPERATORS):
            raise Err(f"invalid config: bad condition {condition!r}")
    return mode, conditions


class Hooks(exports.Hooks):
    def filter(self, config: str, e: types.Event) -> bool:
        mode, conditions = settings(config)
        try:
            body = json.loads(bytes(e.body))
        except ValueError as error:
            raise Err(f"event body is not JSON: {error}")
        results = (holds(c["op"], pointer(body, c["path"]), c.get("value")) for c in conditions)
        keep = all(results) if mode == "all" else any(results)
        if not keep:
            host.log(host.Level.DEBUG, f"event {e.id} dropped by py-field-filter")
        return keep

    def transform(self, config: str, e: types.Event) -> types.Event:
        host.log(host.Level.DEBUG, NOT_IMPLEMENTED)
        return e

    def authenticate(self, config: str, req: types.OutgoingRequest):
        host.log(host.Level.DEBUG, NOT_IMPLEMENTED)
        return []
