//! The built-in payload filter (`filter_conditions` of a webhook).
//!
//! `{"payload.status": "paid", "payload.total": {"gte": 100}, "payload.note": {"exists": false}}`:
//! every key is a dotted path into the outgoing envelope (`event_type`, `payload.lines.0.sku`),
//! every value either a literal (equality) or an object of operators
//! (`eq ne in nin gt gte lt lte exists contains prefix`; an empty object is refused). All
//! keys must hold (AND). A path must start at a field of the envelope: any other could
//! never be found, and a filter that silently drops every event is a typo nobody sees.

use serde_json::{Map, Value};

const OPERATORS: &[&str] = &[
    "eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "contains", "prefix",
];

/// The top-level fields of the outgoing envelope (`delivery/envelope.rs`).
const ENVELOPE_FIELDS: &[&str] = &[
    "id",
    "tenant",
    "event_type",
    "published_at",
    "payload",
    "data",
];

/// Checks the shape of a filter; returns a message naming the first problem.
pub fn validate(conditions: &Value) -> Result<(), String> {
    let Value::Object(map) = conditions else {
        return Err("must be an object of `path: condition`".into());
    };
    for (path, condition) in map {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(format!("`{path}` is not a dotted path like payload.status"));
        }
        let root = path.split('.').next().unwrap_or_default();
        if !ENVELOPE_FIELDS.contains(&root) {
            return Err(format!(
                "`{path}` does not start at a field of the envelope ({})",
                ENVELOPE_FIELDS.join(", ")
            ));
        }
        if let Some(ops) = operator_object(condition) {
            if ops.is_empty() {
                return Err(format!("`{path}`: give at least one operator"));
            }
            for (op, operand) in ops {
                if !OPERATORS.contains(&op.as_str()) {
                    return Err(format!(
                        "`{path}`: unknown operator `{op}` (one of {})",
                        OPERATORS.join(", ")
                    ));
                }
                match op.as_str() {
                    "in" | "nin" if !operand.is_array() => {
                        return Err(format!("`{path}`: `{op}` takes an array"));
                    }
                    "prefix" if !is_text_or_texts(operand) => {
                        return Err(format!(
                            "`{path}`: `prefix` takes a string or an array of strings"
                        ));
                    }
                    "exists" if !operand.is_boolean() => {
                        return Err(format!("`{path}`: `exists` takes true or false"));
                    }
                    "gt" | "gte" | "lt" | "lte"
                        if !(operand.is_number() || operand.is_string()) =>
                    {
                        return Err(format!("`{path}`: `{op}` takes a number or a string"));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn is_text_or_texts(operand: &Value) -> bool {
    match operand {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    }
}

/// An object is always an operator object (compare with an object literal through
/// `{"eq": {...}}`); any other value is a literal compared for equality.
fn operator_object(condition: &Value) -> Option<&Map<String, Value>> {
    match condition {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Does `envelope` satisfy every condition? Call only with validated conditions.
pub fn matches(conditions: &Value, envelope: &Value) -> bool {
    let Value::Object(map) = conditions else {
        return true;
    };
    map.iter().all(|(path, condition)| {
        let actual = lookup(envelope, path);
        match operator_object(condition) {
            Some(ops) => ops.iter().all(|(op, operand)| apply(op, operand, actual)),
            None => actual == Some(condition),
        }
    })
}

fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

fn apply(op: &str, operand: &Value, actual: Option<&Value>) -> bool {
    match op {
        "exists" => actual.is_some() == operand.as_bool().unwrap_or(true),
        "eq" => actual == Some(operand),
        "ne" => actual != Some(operand),
        "in" => actual.is_some_and(|a| operand.as_array().is_some_and(|xs| xs.contains(a))),
        "nin" => !actual.is_some_and(|a| operand.as_array().is_some_and(|xs| xs.contains(a))),
        "contains" => match actual {
            Some(Value::Array(items)) => items.contains(operand),
            Some(Value::String(s)) => operand.as_str().is_some_and(|needle| s.contains(needle)),
            _ => false,
        },
        // Starts with the prefix, or with one of several (NewStore's entity filter).
        "prefix" => match (actual, operand) {
            (Some(Value::String(s)), Value::String(prefix)) => s.starts_with(prefix.as_str()),
            (Some(Value::String(s)), Value::Array(prefixes)) => prefixes
                .iter()
                .filter_map(Value::as_str)
                .any(|prefix| s.starts_with(prefix)),
            _ => false,
        },
        "gt" | "gte" | "lt" | "lte" => {
            let Some(ordering) = actual.and_then(|a| compare(a, operand)) else {
                return false;
            };
            match op {
                "gt" => ordering.is_gt(),
                "gte" => ordering.is_ge(),
                "lt" => ordering.is_lt(),
                _ => ordering.is_le(),
            }
        }
        _ => false,
    }
}

fn compare(actual: &Value, operand: &Value) -> Option<std::cmp::Ordering> {
    match (actual, operand) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({"event_type": "order.created",
               "payload": {"status": "paid", "total": 150, "lines": [{"sku": "A1"}], "tags": ["vip"]}})
    }

    #[test]
    fn literals_and_operators() {
        let e = envelope();
        let yes = [
            json!({"payload.status": "paid"}),
            json!({"payload.total": {"gte": 100, "lt": 200}}),
            json!({"payload.lines.0.sku": {"in": ["A1", "B2"]}}),
            json!({"payload.tags": {"contains": "vip"}}),
            json!({"payload.note": {"exists": false}}),
            json!({"event_type": {"ne": "order.deleted"}}),
            json!({"event_type": {"prefix": "order."}}),
            json!({"event_type": {"prefix": ["invoice.", "order."]}}),
            json!({}),
        ];
        for c in yes {
            assert!(validate(&c).is_ok(), "{c}");
            assert!(matches(&c, &e), "{c} should match");
        }
        let no = [
            json!({"payload.status": "open"}),
            json!({"payload.total": {"gt": 150}}),
            json!({"payload.missing": 1}),
            json!({"payload.status": "paid", "payload.total": {"lt": 10}}),
            json!({"event_type": {"prefix": ["invoice.", "order.c."]}}),
            json!({"payload.total": {"prefix": "1"}}),
        ];
        for c in no {
            assert!(validate(&c).is_ok(), "{c}");
            assert!(!matches(&c, &e), "{c} should not match");
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        for c in [
            json!([1]),
            json!({"": 1}),
            json!({"a..b": 1}),
            json!({"payload.p": {"between": [1, 2]}}),
            json!({"payload.p": {"in": 3}}),
            json!({"payload.p": {"exists": "yes"}}),
            json!({"payload.p": {"prefix": 1}}),
            json!({"payload.p": {"prefix": []}}),
            json!({"events": ["order.created"]}),
            json!({"status": "paid"}),
        ] {
            assert!(validate(&c).is_err(), "{c} should be refused");
        }
    }
}
