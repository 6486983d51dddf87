//! The reference platforms' request shapes, accepted as other spellings of Hookgate's own
//! fields. Each platform's translation lives in one small pure module that rewrites a
//! request body into the contract's form before anything else reads it; what Hookgate
//! stores and shows is always its own form (`docs/API.md`, "Coming from …").
//!
//! A platform field and the Hookgate field it stands for given together is a 400 naming
//! both: one of them would otherwise be silently ignored.

mod automation;
mod front;
mod newstore;
mod sterling;

use serde_json::{Map, Value};

use crate::model::problems::{FieldError, Problems};

/// Rewrites every platform spelling in a webhook body (create, `PUT`, `PATCH`) into
/// Hookgate's fields. A body that is not an object is left for the parser to refuse.
pub fn webhook_body(body: &mut Value) -> Result<(), Vec<FieldError>> {
    let Value::Object(map) = body else {
        return Ok(());
    };
    let mut problems = Problems::default();
    sterling::webhook_body(map, &mut problems);
    newstore::webhook_body(map, &mut problems);
    front::webhook_body(map, &mut problems);
    automation::webhook_body(map, &mut problems);
    problems.into_result()
}

/// One query parameter given in Hookgate's spelling or a platform's, never both.
pub fn either<T>(
    (ours, our_value): (&str, Option<T>),
    (theirs, their_value): (&str, Option<T>),
) -> Result<Option<T>, FieldError> {
    match (our_value, their_value) {
        (Some(_), Some(_)) => Err(FieldError {
            field: theirs.into(),
            message: format!("the same parameter as `{ours}`; send one of them"),
        }),
        (ours, theirs) => Ok(ours.or(theirs)),
    }
}

/// Writes `value` as the Hookgate field `field` in place of the platform field `from`,
/// refusing when the client also set `field` itself (a `null` counts as not set).
fn set(
    map: &mut Map<String, Value>,
    field: &str,
    value: Value,
    from: &str,
    problems: &mut Problems,
) {
    match map.get(field) {
        Some(existing) if !existing.is_null() => problems.add(
            from,
            format!("the same setting as `{field}`, which is also given; send one of them"),
        ),
        _ => {
            map.insert(field.to_owned(), value);
        }
    }
}

/// Moves the keys of a platform object to their Hookgate names (`renames`: theirs, ours);
/// any other key is refused under `parent.key`, listing the ones it takes.
fn renamed(
    parent: &str,
    object: Map<String, Value>,
    renames: &[(&str, &str)],
    problems: &mut Problems,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in object {
        match renames.iter().find(|(theirs, _)| *theirs == key) {
            Some((_, ours)) => {
                out.insert((*ours).to_owned(), value);
            }
            None => {
                let takes: Vec<&str> = renames.iter().map(|(theirs, _)| *theirs).collect();
                problems.add(
                    format!("{parent}.{key}"),
                    format!("unknown field; `{parent}` takes {}", takes.join(", ")),
                );
            }
        }
    }
    out
}

/// Takes the platform field `field` out of the body when it holds an object; another
/// type is refused (and removed, so the parser does not report it again).
fn take_object(
    map: &mut Map<String, Value>,
    field: &str,
    problems: &mut Problems,
) -> Option<Map<String, Value>> {
    match map.remove(field)? {
        Value::Object(object) => Some(object),
        Value::Null => None,
        _ => {
            problems.add(field, "must be an object");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_platform_field_beside_its_hookgate_field_is_refused_naming_both() {
        let mut body = json!({"event": "SaleCreated", "event_types": ["SaleCreated"]});
        let errors = webhook_body(&mut body).unwrap_err();
        assert_eq!(errors[0].field, "event");
        assert!(errors[0].message.contains("event_types"), "{errors:?}");
    }

    #[test]
    fn a_body_in_hookgate_form_is_left_as_it_is() {
        let original = json!({"url": "https://x.example/h", "event_types": ["a"],
            "authentication": {"type": "hmac", "secret": "s"}, "filter_conditions": {"payload.a": 1}});
        let mut body = original.clone();
        webhook_body(&mut body).unwrap();
        assert_eq!(body, original);
    }

    #[test]
    fn either_spelling_of_a_query_parameter_but_not_both() {
        assert_eq!(
            either(("start_date", Some(1)), ("startDate", None)).unwrap(),
            Some(1)
        );
        assert_eq!(
            either(("start_date", None), ("startDate", Some(2))).unwrap(),
            Some(2)
        );
        assert_eq!(
            either::<i32>(("start_date", None), ("startDate", None)).unwrap(),
            None
        );
        let error = either(("start_date", Some(1)), ("startDate", Some(2))).unwrap_err();
        assert_eq!(error.field, "startDate");
    }
}
