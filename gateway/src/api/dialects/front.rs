//! Front Systems: the subscribe body `{"event", "url"}` names one event type; the message
//! query's `includePayload`/`includeRuns` (declared beside Hookgate's names) and its
//! date-only `from`/`to` (`iso::parse_time_param`) need nothing here.

use serde_json::{Map, Value};

use super::set;
use crate::model::problems::Problems;

pub(super) fn webhook_body(map: &mut Map<String, Value>, problems: &mut Problems) {
    match map.remove("event") {
        None | Some(Value::Null) => {}
        Some(Value::String(event)) => set(
            map,
            "event_types",
            Value::Array(vec![Value::String(event)]),
            "event",
            problems,
        ),
        Some(_) => problems.add("event", "must be the name of one event type"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::webhook_body as translate;
    use serde_json::json;

    #[test]
    fn the_subscribe_example_names_one_event_type() {
        let mut body = json!({"event": "OmniChannelEndlessAisleOrderCreated",
            "url": "https://yourcallback.com/url"});
        translate(&mut body).unwrap();
        assert_eq!(
            body,
            json!({"event_types": ["OmniChannelEndlessAisleOrderCreated"],
                   "url": "https://yourcallback.com/url"})
        );
        let mut body = json!({"event": ["a", "b"]});
        assert_eq!(translate(&mut body).unwrap_err()[0].field, "event");
    }
}
