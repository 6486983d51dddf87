//! `field-filter`: keeps an event when its JSON body matches the configured conditions.
//!
//! Configuration (either form):
//!
//! ```json
//! {"match": "all", "conditions": [{"path": "/payload/total", "op": "gte", "value": 100}]}
//! [{"path": "/payload/status", "op": "in", "value": ["paid", "shipped"]}]
//! ```
//!
//! `path` is a JSON pointer into the body (the default envelope puts the event's payload
//! under `/payload`). `match` is `all` (default) or `any`. Operators: `eq`, `ne`, `gt`,
//! `gte`, `lt`, `lte` (numbers compare numerically, strings lexically), `in`, `not_in`
//! (value is a list), `contains` (substring of a string or element of a list), `prefix`,
//! `exists`, `missing` (no value needed). A condition on a missing field is false, except
//! `missing` and `ne`/`not_in`.

use std::cmp::Ordering;

use hookgate_plugin_sdk::prelude::*;
use serde::Deserialize;
use serde_json::Value;

/// Either form of the configuration. Told apart by the first character rather than with
/// `#[serde(untagged)]`, which would buffer the whole config before trying each form.
enum Settings {
    Full(Full),
    List(Vec<Condition>),
}

#[derive(Deserialize)]
struct Full {
    #[serde(default, rename = "match")]
    mode: Mode,
    conditions: Vec<Condition>,
}

impl Settings {
    fn parse(config: &Config) -> Result<Settings> {
        if config.raw().trim_start().starts_with('[') {
            config.parse().map(Settings::List)
        } else {
            config.parse().map(Settings::Full)
        }
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    All,
    Any,
}

#[derive(Deserialize)]
struct Condition {
    path: String,
    op: Op,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Contains,
    Prefix,
    Exists,
    Missing,
}

struct FieldFilter;

impl Plugin for FieldFilter {
    fn filter(config: &Config, event: &Event) -> Result<bool> {
        let (mode, conditions) = match Settings::parse(config)? {
            Settings::Full(Full { mode, conditions }) => (mode, conditions),
            Settings::List(conditions) => (Mode::All, conditions),
        };
        // Only the fields the conditions look at are read out of the body.
        let paths: Vec<&str> = conditions.iter().map(|c| c.path.as_str()).collect();
        let fields = event.json_pointers(&paths)?;
        let mut results = conditions
            .iter()
            .zip(&fields)
            .map(|(c, field)| c.holds(field.as_ref()));
        let keep = match mode {
            Mode::All => results.all(|r| r),
            Mode::Any => results.any(|r| r),
        };
        if !keep {
            log::debug(&format!("event {} dropped by field-filter", event.id));
        }
        Ok(keep)
    }
}

impl Condition {
    /// Whether the condition holds for `field`, the value at its path (`None`: missing).
    fn holds(&self, field: Option<&Value>) -> bool {
        let Some(field) = field else {
            return matches!(self.op, Op::Missing | Op::Ne | Op::NotIn);
        };
        match self.op {
            Op::Exists => true,
            Op::Missing => false,
            Op::Eq => same(field, &self.value),
            Op::Ne => !same(field, &self.value),
            Op::Gt => order(field, &self.value) == Some(Ordering::Greater),
            Op::Gte => matches!(
                order(field, &self.value),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt => order(field, &self.value) == Some(Ordering::Less),
            Op::Lte => matches!(
                order(field, &self.value),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::In => self
                .value
                .as_array()
                .is_some_and(|set| set.iter().any(|v| same(field, v))),
            Op::NotIn => !self
                .value
                .as_array()
                .is_some_and(|set| set.iter().any(|v| same(field, v))),
            Op::Contains => match (field, &self.value) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(items), needle) => items.iter().any(|v| same(v, needle)),
                _ => false,
            },
            Op::Prefix => match (field, &self.value) {
                (Value::String(s), Value::String(prefix)) => s.starts_with(prefix.as_str()),
                _ => false,
            },
        }
    }
}

/// Equality where `100` and `100.0` are the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Numbers compare numerically, strings lexically; anything else does not compare.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

hookgate_plugin_sdk::export!(FieldFilter);
