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
//!  "header": "X-ERP-Record-Type"}
//! ```
//!
//! Events whose type is not in the map pass through unchanged.

use std::collections::BTreeMap;

use hookgate_plugin_sdk::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    event_types: BTreeMap<String, String>,
    header: String,
}

impl Default for Settings {
    fn default() -> Self {
        let event_types = [
            ("order.created", "ERP_ORDER_NEW"),
            ("order.updated", "ERP_ORDER_CHANGE"),
        ]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), to.to_owned()))
        .collect();
        Settings {
            event_types,
            header: "X-ERP-Record-Type".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(default)]
    published_at: String,
    payload: Order,
}

#[derive(Deserialize)]
struct Order {
    order_id: serde_json::Value,
    #[serde(default)]
    customer: Option<Customer>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    lines: Vec<OrderLine>,
}

#[derive(Deserialize)]
struct Customer {
    id: serde_json::Value,
}

#[derive(Deserialize)]
struct OrderLine {
    sku: String,
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
}

#[derive(Serialize)]
struct ErpLine<'a> {
    order_no: String,
    customer_no: Option<String>,
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
        let Some(record_type) = settings.event_types.get(&event.event_type) else {
            return Ok(event);
        };
        let envelope: Envelope = event.json()?;
        let order = &envelope.payload;
        let order_no = plain_text(&order.order_id);
        let customer_no = order.customer.as_ref().map(|c| plain_text(&c.id));
        let records = order
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| ErpLine {
                order_no: order_no.clone(),
                customer_no: customer_no.clone(),
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
            record_type,
            source_event_id: &envelope.id,
            records,
        };
        event.set_json(&document)?;
        event.headers.set(settings.header, record_type.as_str());
        event.event_type = record_type.clone();
        Ok(event)
    }
}

/// Order and customer ids arrive as strings or numbers; the ERP wants text.
fn plain_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

hookgate_plugin_sdk::export!(ErpTransform);
