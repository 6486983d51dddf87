"""py-erp-transform: plugins/erp-transform written in Python, built with componentize-py.

It turns the default envelope of an order event into the flat line records an ERP import
expects and renames the event type, with the same configuration and output as the Rust
plugin (the end-to-end tests compare the two):

    {"event_types": {"order.created": "ERP_ORDER_NEW", "order.updated": "ERP_ORDER_CHANGE"},
     "header": "X-ERP-Record-Type", "include_payload": false}

Every key is optional. Events whose type is not in the map pass through unchanged. With
`include_payload` the document also carries the source payload as `payload` (parsed and
written again: the same JSON value, not always the same bytes, unlike the Rust plugin's
verbatim copy).

Only `transform` does anything; a componentize-py component must implement every export
of the world, so `filter` and `authenticate` return the neutral result and say so.
"""

import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, types

DEFAULT_HEADER = "X-ERP-Record-Type"
BUILT_IN = {"order.created": "ERP_ORDER_NEW", "order.updated": "ERP_ORDER_CHANGE"}
# Logged at debug level with the neutral result: "this hook does nothing" (wit/). The
# gateway then skips the hook instead of starting the interpreter for it.
NOT_IMPLEMENTED = "hookgate:hook-not-implemented"


def settings(config):
    if config.strip() == "":
        return {}
    try:
        parsed = json.loads(config)
    except ValueError as error:
        raise Err(f"invalid config: {error}")
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise Err("invalid config: expected an object")
    return parsed


def id_text(value):
    """Order and customer ids arrive as strings or numbers; the ERP wants text."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def number(value, default):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def round_half_away(x):
    """Rounds half away from zero, as Rust's `f64::round` (Python's round() is to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


class Hooks(exports.Hooks):
    def filter(self, config: str, e: types.Event) -> bool:
        host.log(host.Level.DEBUG, NOT_IMPLEMENTED)
        return True

    def transform(self, config: str, e: types.Event) -> types.Event:
        wanted = settings(config)
        record_type = (wanted.get("event_types") or BUILT_IN).get(e.event_type)
        if record_type is None:
            return e
        try:
            envelope = json.loads(bytes(e.body))
        except ValueError as error:
            raise Err(f"the body is not JSON: {error}")
        if not isinstance(envelope, dict) or not isinstance(envelope.get("id"), str):
            raise Err("the body is not an envelope with an id")
        order = envelope.get("payload") or {}
        customer = order.get("customer")
        order_no = id_text(order.get("order_id"))
        customer_no = id_text(customer.get("id")) if isinstance(customer, dict) else None
        currency = order.get("currency") if isinstance(order.get("currency"), str) else None
        ordered_at = envelope.get("published_at")
        ordered_at = ordered_at if isinstance(ordered_at, str) else ""
        records = []
        for line_no, line in enumerate(order.get("lines") or [], start=1):
            if not isinstance(line.get("sku"), str):
                raise Err(f"line {line_no}: missing field `sku`")
            quantity = number(line.get("quantity"), 1.0)
            unit_price = number(line.get("unit_price"), 0.0)
            records.append({
                "order_no": order_no,
                "customer_no": customer_no,
                "line_no": line_no,
                "sku": line["sku"],
                "quantity": quantity,
                "unit_price": unit_price,
                # Cents are what the ERP books; round away float noise.
                "amount": round_half_away(quantity * unit_price * 100.0) / 100.0,
                "currency": currency,
                "ordered_at": ordered_at,
            })
        document = {"record_type": record_type, "source_event_id": envelope["id"],
                    "records": records}
        if wanted.get("include_payload"):
            document["payload"] = envelope.get("payload")
        header = wanted.get("header") or DEFAULT_HEADER
        headers = [h for h in e.headers if h.name.lower() != header.lower()]
        headers.append(types.Header(name=header, value=record_type))
        body = json.dumps(document, separators=(",", ":")).encode()
        return types.Event(id=e.id, tenant=e.tenant, event_type=record_type,
                           published_at_ms=e.published_at_ms, headers=headers, body=body)

    def authenticate(self, config: str, req: types.OutgoingRequest):
        host.log(host.Level.DEBUG, NOT_IMPLEMENTED)
        return []
