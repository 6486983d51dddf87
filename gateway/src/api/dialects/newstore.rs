//! NewStore event stream integrations: `callback_parameters{callback_url, api_key}`,
//! `s3_parameters{aws_access_key_id, aws_secret_access_key, aws_region, bucket,
//! key_prefix}` and the `filter_conditions` shapes `{"events": [...]}` and
//! `{"entities": [...]}` (an entity is the part of an event name before its first dot:
//! `order` for `order.items_cancelled`).

use serde_json::{Map, Value, json};

use super::{renamed, set, take_object};
use crate::model::problems::Problems;

const CALLBACK_FIELDS: &[(&str, &str)] = &[("callback_url", "url"), ("api_key", "api_key")];

/// NewStore's names first; Hookgate's own s3 settings are taken too, so an S3-compatible
/// store (`endpoint`, `path_style`) can be reached from this shape.
const S3_FIELDS: &[(&str, &str)] = &[
    ("aws_access_key_id", "access_key_id"),
    ("aws_secret_access_key", "secret_access_key"),
    ("aws_region", "region"),
    ("bucket", "bucket"),
    ("key_prefix", "key_prefix"),
    ("endpoint", "endpoint"),
    ("path_style", "path_style"),
    ("flush_interval", "flush_interval"),
    ("max_file_bytes", "max_file_bytes"),
];

pub(super) fn webhook_body(map: &mut Map<String, Value>, problems: &mut Problems) {
    if let Some(callback) = take_object(map, "callback_parameters", problems) {
        let mut callback = renamed("callback_parameters", callback, CALLBACK_FIELDS, problems);
        if let Some(url) = callback.remove("url") {
            set(
                map,
                "url",
                url,
                "callback_parameters.callback_url",
                problems,
            );
        }
        if let Some(api_key) = callback.remove("api_key") {
            let auth = json!({"type": "api_key", "api_key": api_key});
            set(
                map,
                "authentication",
                auth,
                "callback_parameters.api_key",
                problems,
            );
        }
    }
    if let Some(s3) = take_object(map, "s3_parameters", problems) {
        let mut s3 = renamed("s3_parameters", s3, S3_FIELDS, problems);
        s3.insert("type".into(), json!("s3"));
        set(
            map,
            "destination",
            Value::Object(s3),
            "s3_parameters",
            problems,
        );
    }
    if let Some(Value::Object(conditions)) = map.get("filter_conditions")
        && let Some(translated) = filter_conditions(conditions, problems)
    {
        map.insert("filter_conditions".into(), translated);
    }
}

/// NewStore's filter, as Hookgate's: `{"events": [a, b]}` holds for those event types,
/// `{"entities": [order]}` for every type of those entities. `None` when the conditions
/// are Hookgate's own (their keys are envelope paths, and no envelope path is `events` or
/// `entities`, so the two shapes cannot be confused).
fn filter_conditions(conditions: &Map<String, Value>, problems: &mut Problems) -> Option<Value> {
    let is_newstore = !conditions.is_empty()
        && conditions
            .keys()
            .all(|key| key == "events" || key == "entities");
    if !is_newstore {
        return None;
    }
    let mut on_event_type = Map::new();
    for (key, operator) in [("events", "in"), ("entities", "prefix")] {
        let Some(value) = conditions.get(key) else {
            continue;
        };
        let names: Option<Vec<&str>> = value
            .as_array()
            .and_then(|items| items.iter().map(Value::as_str).collect());
        match names {
            Some(names) if !names.is_empty() => {
                let operand: Vec<Value> = names
                    .iter()
                    .map(|name| match key {
                        "entities" => json!(format!("{name}.")),
                        _ => json!(name),
                    })
                    .collect();
                on_event_type.insert(operator.into(), Value::Array(operand));
            }
            _ => problems.add(
                format!("filter_conditions.{key}"),
                "must be a non-empty array of names",
            ),
        }
    }
    Some(json!({"event_type": on_event_type}))
}

#[cfg(test)]
mod tests {
    use super::super::webhook_body as translate;
    use serde_json::json;

    #[test]
    fn a_webhook_integration_becomes_url_and_api_key_authentication() {
        let mut body = json!({"id": "erp-1", "integration_type": "permanent",
            "callback_parameters": {"callback_url": "https://erp.example.com/hook", "api_key": "eyJ"}});
        translate(&mut body).unwrap();
        assert_eq!(
            body,
            json!({"id": "erp-1", "integration_type": "permanent", "url": "https://erp.example.com/hook",
                   "authentication": {"type": "api_key", "api_key": "eyJ"}})
        );
        // An update may change only the key.
        let mut body = json!({"callback_parameters": {"api_key": "new"}});
        translate(&mut body).unwrap();
        assert_eq!(
            body,
            json!({"authentication": {"type": "api_key", "api_key": "new"}})
        );
    }

    #[test]
    fn an_s3_integration_becomes_an_s3_destination() {
        let mut body = json!({"id": "sap-s3", "s3_parameters": {"aws_access_key_id": "a",
            "aws_secret_access_key": "s", "aws_region": "us-east-1", "bucket": "sap_export",
            "key_prefix": "ns"}});
        translate(&mut body).unwrap();
        assert_eq!(
            body["destination"],
            json!({"type": "s3", "access_key_id": "a", "secret_access_key": "s",
                   "region": "us-east-1", "bucket": "sap_export", "key_prefix": "ns"})
        );
        let mut body = json!({"s3_parameters": {"aws_region": "x", "acl": "private"}});
        assert_eq!(
            translate(&mut body).unwrap_err()[0].field,
            "s3_parameters.acl"
        );
    }

    #[test]
    fn event_and_entity_filters_become_conditions_on_the_event_type() {
        let mut body =
            json!({"filter_conditions": {"events": ["order.created", "order.items_cancelled"]}});
        translate(&mut body).unwrap();
        assert_eq!(
            body["filter_conditions"],
            json!({"event_type": {"in": ["order.created", "order.items_cancelled"]}})
        );
        let mut body = json!({"filter_conditions": {"entities": ["order", "fulfillment_request"]}});
        translate(&mut body).unwrap();
        assert_eq!(
            body["filter_conditions"],
            json!({"event_type": {"prefix": ["order.", "fulfillment_request."]}})
        );
        let mut body = json!({"filter_conditions": {"events": []}});
        assert_eq!(
            translate(&mut body).unwrap_err()[0].field,
            "filter_conditions.events"
        );
        // Hookgate's own conditions are not touched.
        let mut body = json!({"filter_conditions": {"payload.events": ["x"]}});
        translate(&mut body).unwrap();
        assert_eq!(body["filter_conditions"], json!({"payload.events": ["x"]}));
    }
}
