//! Trying one hook of a plugin on a sample event, the way a delivery calls it (the event
//! in the default envelope, the attachment's config as the plugin reads it, the same
//! sandbox and limits, the same checks on what the hook returns), and reporting what the
//! call used. Two callers: the dry run (`POST /{tenant}/v1/plugins/{name}/test`, through
//! `plugin_registry`) and `hookgate plugin run`, which needs no gateway.

use std::sync::Arc;

use hookgate_plugin_host::{
    CallContext, CallReport, Header, Hook, LoadedPlugin, OutgoingRequest, PluginError,
    PluginRuntime, SecretSource,
};
use serde_json::{Value, json};

use crate::{delivery::envelope, pipeline, storage::StoredEvent};

/// What one trial call did.
#[derive(Debug)]
pub struct Trial {
    pub hook: Hook,
    /// filter: `true`/`false`; transform: `{event_type, headers, body}` (body as JSON
    /// when it parses, else as text); authenticate: `[{name, value}]`.
    pub result: Result<Value, PluginError>,
    /// `[{level, message}]`.
    pub logs: Value,
    pub elapsed_us: u64,
    pub instantiate_us: u64,
    pub fuel_used: Option<u64>,
    /// The most memory the call had at once (the memory limit's measure).
    pub peak_memory_bytes: u64,
    /// The size of what the hook returned: a transform's event type, headers and body; an
    /// authenticate hook's headers; 0 for a filter.
    pub output_bytes: u64,
}

/// The inputs of a trial besides the plugin: the event, the attachment's config (any
/// JSON), the plugin's secrets, and for authenticate the URL of the request it signs.
#[derive(Clone)]
pub struct TrialInput {
    pub hook: Hook,
    pub event: StoredEvent,
    pub config: Value,
    pub secrets: Arc<dyn SecretSource>,
    pub url: Option<String>,
}

/// Runs the hook once on `tenant`'s handle of the plugin.
pub async fn run(
    runtime: &PluginRuntime,
    plugin: &Arc<LoadedPlugin>,
    tenant: &str,
    input: TrialInput,
) -> Trial {
    let config = pipeline::config_string(&input.config);
    let context = CallContext::new(input.secrets);
    let event = input.event;
    let body = envelope::body(tenant, &event, None, None);
    match input.hook {
        Hook::Filter => {
            let event = pipeline::plugin_event(tenant, &event, body);
            let report = runtime.call_filter(plugin, &config, event, context).await;
            trial(
                Hook::Filter,
                &report,
                0,
                report.result.clone().map(Value::Bool),
            )
        }
        Hook::Transform => {
            let event = pipeline::plugin_event(tenant, &event, body);
            let report = runtime
                .call_transform(plugin, &config, event, context)
                .await;
            let size = report.result.as_ref().map_or(0, |out| {
                out.event_type.len() + headers_size(&out.headers) + out.body.len()
            });
            let result = report.result.clone().and_then(|out| {
                pipeline::check_transform_output(&out)?;
                Ok(json!({
                    "event_type": out.event_type,
                    "headers": headers_value(&out.headers),
                    "body": body_value(&out.body),
                }))
            });
            trial(Hook::Transform, &report, size, result)
        }
        Hook::Authenticate => {
            let request = OutgoingRequest {
                method: "POST".into(),
                url: input
                    .url
                    .unwrap_or_else(|| "https://receiver.example/webhook".into()),
                headers: vec![
                    Header {
                        name: "content-type".into(),
                        value: "application/json".into(),
                    },
                    Header {
                        name: "webhook-id".into(),
                        value: event.id.clone(),
                    },
                ],
                body,
            };
            let report = runtime
                .call_authenticate(plugin, &config, request, context)
                .await;
            let size = report.result.as_ref().map_or(0, |h| headers_size(h));
            let result = report.result.clone().and_then(|headers| {
                pipeline::check_plugin_headers(&headers)?;
                Ok(headers_value(&headers))
            });
            trial(Hook::Authenticate, &report, size, result)
        }
    }
}

fn trial<T>(
    hook: Hook,
    report: &CallReport<T>,
    output_bytes: usize,
    result: Result<Value, PluginError>,
) -> Trial {
    Trial {
        hook,
        result,
        logs: serde_json::to_value(&report.logs).unwrap_or(Value::Null),
        elapsed_us: report.elapsed.as_micros() as u64,
        instantiate_us: report.instantiate.as_micros() as u64,
        fuel_used: report.fuel_used,
        peak_memory_bytes: report.peak_memory_bytes,
        output_bytes: output_bytes as u64,
    }
}

fn headers_size(headers: &[Header]) -> usize {
    headers.iter().map(|h| h.name.len() + h.value.len()).sum()
}

fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn headers_value(headers: &[Header]) -> Value {
    headers
        .iter()
        .map(|h| json!({"name": h.name, "value": h.value}))
        .collect()
}
