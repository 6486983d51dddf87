//! `erp-transform`: turns the default envelope of an order event into the flat line
//! records an ERP import expects, and renames the event type.
//!
//! Input (the gateway's default envelope, payload of an order):
//!
//! ```json
//! {"id": "evt_1", "tenant": "acme", "event_type": "order.created",
//!  "published_at": "2026-11-22T10:00:00Z",
//!  "payload": {"order_id": "SO-1001", "customer": {"id": "C-77"}, "currency": "EUR",
//!              "lines": [{"sku": "A-1", "quantity": 2, "unit_price": 9.5}]},
//!  "data": {}}
//! ```
//!
//! Output body (one record per order line):
//!
//! ```json
//! {"record_type": "ERP_ORDER_NEW", "source_event_id": "evt_1",
//!  "records": [{"order_no": "SO-1001", "customer_no": "C-77", "line_no": 1, "sku": "A-1",
//!               "quantity": 2.0, "unit_price": 9.5, "amount": 19.0, "currency": "EUR",
//!               "ordered_at": "2026-11-22T10:00:00Z"}]}
//! ```
//!
//! The event type becomes the mapped record type and the header `X-ERP-Record-Type`
//! carries it too. Configuration (all optional):
//!
//! ```json
//! {"event_types": {"order.created": "ERP_ORDER_NEW", "order.updated": "ERP_ORDER_CHANGE"},
//!  "header": "X-ERP-Record-Type", "include_payload": false}
//! ```
//!
//! Events whose type is not in the map pass through unchanged. With `include_payload` the
//! document also carries the source payload, verbatim, as `payload` (an audit copy; the
//! delivery benchmark uses it to keep its timestamps). An order without `order_id` gets
//! `"order_no": null`; one without `lines`, no records.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hookgate_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Settings {
    /// Replaces the built-in map when given.
    event_types: Option<BTreeMap<String, String>>,
    header: Option<String>,
    /// Add the source payload, verbatim, as `payload` (an audit copy for the ERP).
    include_payload: bool,
}

const DEFAULT_HEADER: &str = "X-ERP-Record-Type";

impl Settings {
    /// The record type for `event_type`: from the configured map, else the built-in one.
    fn record_type(&self, event_type: &str) -> Option<&str> {
        match &self.event_types {
            Some(map) => map.get(event_type).map(String::as_str),
            None => match event_type {
                "order.created" => Some("ERP_ORDER_NEW"),
                "order.updated" => Some("ERP_ORDER_CHANGE"),
                _ => None,
            },
        }
    }
}

// The input is read in place: strings borrow from the body unless they contain escapes.

/// The envelope with its payload as `P`: the order itself, or (for `include_payload`) the
/// payload's text, kept verbatim and parsed as an order afterwards.
#[derive(Deserialize)]
struct Envelope<'a, P> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    published_at: Cow<'a, str>,
    payload: P,
}

#[derive(Deserialize)]
struct Order<'a> {
    #[serde(default, borrow)]
    order_id: Option<Id<'a>>,
    #[serde(default, borrow)]
    customer: Option<Customer<'a>>,
    #[serde(default, borrow)]
    currency: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    lines: Vec<OrderLine<'a>>,
}

#[derive(Deserialize)]
struct Customer<'a> {
    #[serde(borrow)]
    id: Id<'a>,
}

/// Order and customer ids arrive as strings or numbers; the ERP wants text.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(serde_json::Value),
}

impl Id<'_> {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Id::Text(text) => Cow::Borrowed(text),
            Id::Other(other) => Cow::Owned(other.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct OrderLine<'a> {
    #[serde(borrow)]
    sku: Cow<'a, str>,
    #[serde(default = "one")]
    quantity: f64,
    #[serde(default)]
    unit_price: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Serialize)]
struct ErpDocument<'a> {
    record_type: &'a str,
    source_event_id: &'a str,
    records: Vec<ErpLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ErpLine<'a> {
    order_no: Option<&'a str>,
    customer_no: Option<&'a str>,
    line_no: usize,
    sku: &'a str,
    quantity: f64,
    unit_price: f64,
    amount: f64,
    currency: Option<&'a str>,
    ordered_at: &'a str,
}

struct ErpTransform;

impl Plugin for ErpTransform {
    fn transform(config: &Config, mut event: Event) -> Result<Event> {
        let settings: Settings = config.parse::<Option<Settings>>()?.unwrap_or_default();
        let Some(record_type) = settings.record_type(&event.event_type) else {
            return Ok(event);
        };
        let record_type = record_type.to_owned();
        let body = std::mem::take(&mut event.body);
        let (envelope, raw_payload) = if settings.include_payload {
            let raw: Envelope<&RawValue> = serde_json::from_slice(&body)?;
            let order: Order = serde_json::from_str(raw.payload.get())?;
            let envelope = Envelope {
                id: raw.id,
                published_at: raw.published_at,
                payload: order,
            };
            (envelope, Some(raw.payload))
        } else {
            (serde_json::from_slice::<Envelope<Order>>(&body)?, None)
        };
        let order = &envelope.payload;
        let order_no = order.order_id.as_ref().map(Id::text);
        let customer_no = order.customer.as_ref().map(|c| c.id.text());
        let records = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| ErpLine {
                order_no: order_no.as_deref(),
                customer_no: customer_no.as_deref(),
                line_no: i + 1,
                sku: &line.sku,
                quantity: line.quantity,
                unit_price: line.unit_price,
                // Cents are what the ERP books; round away float noise.
                amount: (line.quantity * line.unit_price * 100.0).round() / 100.0,
                currency: order.currency.as_deref(),
                ordered_at: &envelope.published_at,
            })
            .collect();
        let document = ErpDocument {
            record_type: &record_type,
            source_event_id: &envelope.id,
            records,
            payload: raw_payload,
        };
        // About the size of the input: one buffer, no regrowth for typical orders.
        let mut out = Vec::with_capacity(body.len());
        serde_json::to_writer(&mut out, &document)?;
        event.body = out;
        let header = settings.header.as_deref().unwrap_or(DEFAULT_HEADER);
        event.headers.set(header, record_type.as_str());
        event.event_type = record_type;
        Ok(event)
    }
}

hookgate_plugin_sdk::export!(ErpTransform);
