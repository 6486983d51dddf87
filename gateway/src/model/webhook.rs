//! A webhook (Sterling "webhook", NewStore "integration", CloudBlue "webhook"): what the
//! API accepts (`WebhookSpec`), how it is validated, and the stored record (`Webhook`).

use std::collections::BTreeMap;

use hookgate_signing::{
    AuthConfig, DestinationPolicy, SecretString, TlsConfig, transport::check_url,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    filter,
    problems::{FieldError, Problems},
};
use crate::{
    ids,
    iso::{EpochMillis, IsoDuration, format_millis, parse_rfc3339},
};

pub const DEFAULT_TIMEOUT: &str = "PT30S";
pub const DEFAULT_SCHEDULE: [&str; 8] = [
    "PT0S", "PT5S", "PT5M", "PT30M", "PT2H", "PT5H", "PT10H", "PT10H",
];
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;
const MAX_TIMEOUT_SECS: u64 = 300;
const MAX_HEADERS: usize = 50;
const MAX_SCHEDULE_STEPS: usize = 25;
/// Headers the gateway owns on the wire; letting a tenant (or a plugin) set them would
/// corrupt framing or forge the gateway's own headers.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Get,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationType {
    #[default]
    Permanent,
    Temporary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    #[default]
    Unordered,
    Fifo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    #[default]
    Auto,
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default)]
    pub mode: RetryMode,
    #[serde(default = "default_schedule")]
    pub schedule: Vec<IsoDuration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            mode: RetryMode::Auto,
            schedule: default_schedule(),
        }
    }
}

fn default_schedule() -> Vec<IsoDuration> {
    DEFAULT_SCHEDULE
        .iter()
        .map(|s| s.parse().expect("valid literal"))
        .collect()
}

fn default_timeout() -> IsoDuration {
    DEFAULT_TIMEOUT.parse().expect("valid literal")
}

fn default_max_in_flight() -> u32 {
    DEFAULT_MAX_IN_FLIGHT
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginAttachment {
    pub plugin: String,
    /// Pinned version; `None` follows the latest.
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub config: Value,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Destination {
    #[default]
    Http,
    S3(S3Destination),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Destination {
    pub bucket: String,
    #[serde(default)]
    pub key_prefix: String,
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    #[serde(default = "default_flush_interval")]
    pub flush_interval: IsoDuration,
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_flush_interval() -> IsoDuration {
    "PT5M".parse().expect("valid literal")
}

fn default_max_file_bytes() -> u64 {
    50 * 1024 * 1024
}

/// Everything a client configures on a webhook. Unknown fields are errors, so a typo is a
/// 400 instead of a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub filter_conditions: Option<Value>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub additional_data: Option<Value>,
    #[serde(default)]
    pub query_key: Option<SecretString>,
    #[serde(default = "default_timeout")]
    pub timeout: IsoDuration,
    #[serde(default)]
    pub integration_type: IntegrationType,
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub authentication: AuthConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub ordering: Ordering,
    #[serde(default)]
    pub rate_limit_per_second: Option<f64>,
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    #[serde(default)]
    pub plugins: Vec<PluginAttachment>,
    #[serde(default)]
    pub destination: Destination,
}

/// Fields a client may send back from a GET that are not configuration: accepted and
/// ignored so read-modify-write with PUT works.
pub const READ_ONLY_FIELDS: &[&str] = &["status", "created_at", "updated_at", "tenant"];

/// Parses a request body into a spec, naming the offending path on failure
/// (`retry.schedule[2]: ...`).
pub fn parse_spec(mut body: Value) -> Result<WebhookSpec, Vec<FieldError>> {
    let Value::Object(map) = &mut body else {
        return Err(vec![FieldError {
            field: "".into(),
            message: "the body must be a JSON object".into(),
        }]);
    };
    for field in READ_ONLY_FIELDS {
        map.remove(*field);
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        vec![FieldError {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        }]
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Running,
    Stopped,
    /// Turned off by the gateway after too many consecutive failures (CloudBlue).
    Disabled,
    /// A temporary webhook that delivered its whole window.
    Completed,
}

/// The stored webhook: the validated spec plus the state the gateway manages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub status: WebhookStatus,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub spec: WebhookSpec,
}

/// What validation needs to know beyond the spec itself.
pub struct ValidationContext<'a> {
    pub known_plugin: &'a dyn Fn(&str) -> bool,
    /// Which destinations are allowed (the SSRF guard).
    pub policy: DestinationPolicy,
}

impl WebhookSpec {
    /// Every problem of the spec at once. The id is checked where a client chooses it
    /// (`check_client_id`), since generated ids (`whk_…`) are valid too.
    pub fn validate(&self, ctx: &ValidationContext<'_>) -> Result<(), Vec<FieldError>> {
        let mut problems = Problems::default();
        check_text(&mut problems, "name", self.name.as_deref(), 200);
        check_text(
            &mut problems,
            "description",
            self.description.as_deref(),
            2000,
        );
        self.validate_destination(&mut problems, &ctx.policy);
        let auth_problems = self
            .authentication
            .validate()
            .and_then(|()| self.authentication.check_destinations(&ctx.policy));
        if let Err(errors) = auth_problems {
            problems.extend(errors.into_iter().map(|e| FieldError {
                field: e.field,
                message: e.message,
            }));
        }
        if let Some(tls) = &self.tls
            && let Err(errors) = tls.validate()
        {
            problems.extend(errors.into_iter().map(|e| FieldError {
                field: e.field,
                message: e.message,
            }));
        }
        for (i, event_type) in self.event_types.iter().enumerate() {
            if !is_event_type_name(event_type) {
                problems.add(
                    format!("event_types[{i}]"),
                    "must match ^[A-Za-z0-9_.:-]{1,128}$",
                );
            }
        }
        if let Some(conditions) = &self.filter_conditions
            && let Err(message) = filter::validate(conditions)
        {
            problems.add("filter_conditions", message);
        }
        self.validate_headers(&mut problems);
        if let Some(data) = &self.additional_data
            && !data.is_object()
        {
            problems.add("additional_data", "must be a JSON object");
        }
        if let Some(key) = &self.query_key
            && (key.expose().is_empty() || key.expose().len() > 512)
        {
            problems.add("query_key", "must be 1 to 512 characters");
        }
        let timeout = self.timeout.duration();
        if timeout.is_zero() || timeout.as_secs() > MAX_TIMEOUT_SECS {
            problems.add("timeout", "must be more than PT0S and at most PT5M");
        }
        self.validate_window(&mut problems);
        self.validate_retry(&mut problems);
        if let Some(rate) = self.rate_limit_per_second
            && !(rate > 0.0 && rate <= 100_000.0)
        {
            problems.add(
                "rate_limit_per_second",
                "must be more than 0 and at most 100000 (or null for no limit)",
            );
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            problems.add("max_in_flight", "must be between 1 and 1024");
        }
        for (i, attachment) in self.plugins.iter().enumerate() {
            if !(ctx.known_plugin)(&attachment.plugin) {
                problems.add(
                    format!("plugins[{i}].plugin"),
                    format!("no plugin named `{}` is uploaded", attachment.plugin),
                );
            }
            if attachment.version == Some(0) {
                problems.add(format!("plugins[{i}].version"), "versions start at 1");
            }
        }
        problems.into_result()
    }

    fn validate_destination(&self, problems: &mut Problems, policy: &DestinationPolicy) {
        match &self.destination {
            Destination::Http => match &self.url {
                None => problems.add("url", "is required for http destinations"),
                Some(url) => match check_http_url(url) {
                    Err(message) => problems.add("url", message),
                    Ok(parsed) => {
                        if let Err(refused) = check_url(&parsed, policy) {
                            problems.add("url", refused.to_string());
                        }
                    }
                },
            },
            Destination::S3(s3) => {
                if self.url.is_some() {
                    problems.add("url", "must be absent for s3 destinations");
                }
                if self.method != HttpMethod::Post {
                    problems.add("method", "only applies to http destinations");
                }
                if !is_bucket_name(&s3.bucket) {
                    problems.add("destination.bucket", "is not a valid S3 bucket name");
                }
                if s3.region.trim().is_empty() {
                    problems.add("destination.region", "is required");
                }
                if s3.access_key_id.is_empty() {
                    problems.add("destination.access_key_id", "is required");
                }
                if s3.secret_access_key.expose().is_empty() {
                    problems.add("destination.secret_access_key", "is required");
                }
                if let Some(endpoint) = &s3.endpoint {
                    match check_http_url(endpoint) {
                        Err(message) => problems.add("destination.endpoint", message),
                        Ok(parsed) => {
                            if let Err(refused) = check_url(&parsed, policy) {
                                problems.add("destination.endpoint", refused.to_string());
                            }
                            let is_ip = matches!(
                                parsed.host(),
                                Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
                            );
                            if is_ip && !s3.path_style {
                                problems.add(
                                    "destination.path_style",
                                    "must be true when the endpoint is an IP address",
                                );
                            }
                        }
                    }
                }
                if s3.flush_interval.duration().is_zero() {
                    problems.add("destination.flush_interval", "must be more than PT0S");
                }
                if !(1024..=5 * 1024 * 1024 * 1024).contains(&s3.max_file_bytes) {
                    problems.add(
                        "destination.max_file_bytes",
                        "must be between 1024 and 5368709120",
                    );
                }
                if let Err(message) = check_key_prefix(&s3.key_prefix) {
                    problems.add("destination.key_prefix", message);
                }
            }
        }
    }

    fn validate_headers(&self, problems: &mut Problems) {
        if self.headers.len() > MAX_HEADERS {
            problems.add("headers", format!("at most {MAX_HEADERS} headers"));
        }
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => problems.add(field, "is not a valid HTTP header name"),
                Ok(parsed) if RESERVED_HEADERS.contains(&parsed.as_str()) => {
                    problems.add(field, "is set by the gateway and cannot be overridden")
                }
                Ok(_) => {
                    if http::HeaderValue::from_str(value).is_err() {
                        problems.add(field, "value must be visible ASCII without line breaks");
                    }
                }
            }
        }
    }

    fn validate_window(&self, problems: &mut Problems) {
        let starts = self
            .starts_at
            .as_deref()
            .map(|s| ("starts_at", parse_rfc3339(s)));
        let ends = self
            .ends_at
            .as_deref()
            .map(|s| ("ends_at", parse_rfc3339(s)));
        for (field, parsed) in [&starts, &ends].into_iter().flatten() {
            if let Err(message) = parsed {
                problems.add(*field, message.clone());
            }
        }
        match self.integration_type {
            IntegrationType::Temporary => {
                if starts.is_none() {
                    problems.add("starts_at", "is required for temporary webhooks");
                }
                if ends.is_none() {
                    problems.add("ends_at", "is required for temporary webhooks");
                }
                if let (Some((_, Ok(s))), Some((_, Ok(e)))) = (&starts, &ends)
                    && s >= e
                {
                    problems.add("ends_at", "must be after starts_at");
                }
            }
            IntegrationType::Permanent => {
                for (field, _) in [&starts, &ends].into_iter().flatten() {
                    problems.add(*field, "only applies to temporary webhooks");
                }
            }
        }
    }

    fn validate_retry(&self, problems: &mut Problems) {
        let steps = self.retry.schedule.len();
        if self.retry.mode == RetryMode::Auto && steps == 0 {
            problems.add("retry.schedule", "needs at least one step in auto mode");
        }
        if steps > MAX_SCHEDULE_STEPS {
            problems.add(
                "retry.schedule",
                format!("at most {MAX_SCHEDULE_STEPS} steps"),
            );
        }
    }

    /// Window bounds in millis; only meaningful after validation.
    pub fn window(&self) -> Option<(EpochMillis, EpochMillis)> {
        let starts = parse_rfc3339(self.starts_at.as_deref()?).ok()?;
        let ends = parse_rfc3339(self.ends_at.as_deref()?).ok()?;
        Some((starts, ends))
    }

    /// Does this webhook take events of `event_type`? Empty list: all types.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// Object keys are `{key_prefix}/{tenant}/…`: the prefix must make a clean key path.
fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 512 {
        return Err("at most 512 characters".into());
    }
    if prefix.starts_with('/') || prefix.ends_with('/') {
        return Err("must not start or end with /".into());
    }
    if prefix.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if !prefix.is_empty()
        && prefix
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("segments must not be empty, `.` or `..`".into());
    }
    Ok(())
}

/// A client-chosen webhook id must match NewStore's pattern.
pub fn check_client_id(id: &str) -> Result<(), Vec<FieldError>> {
    if ids::is_client_id(id) {
        Ok(())
    } else {
        Err(vec![FieldError {
            field: "id".into(),
            message: "must match ^[a-z0-9-]{1,50}$".into(),
        }])
    }
}

fn check_text(problems: &mut Problems, field: &str, value: Option<&str>, max: usize) {
    if let Some(value) = value
        && value.chars().count() > max
    {
        problems.add(field, format!("at most {max} characters"));
    }
}

pub fn check_http_url(text: &str) -> Result<url::Url, String> {
    if text.len() > 2048 {
        return Err("at most 2048 characters".into());
    }
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("needs a host".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a #fragment".into());
    }
    Ok(url)
}

/// Event type names: what Sterling (`ORDER_CREATE`), CloudBlue and dotted styles use.
pub fn is_event_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

impl Webhook {
    /// The API view: the spec's fields, flat, plus id/status/times. Secrets are masked by
    /// the caller (the API layer knows the secret fields).
    pub fn to_view(&self) -> Value {
        let mut view = serde_json::to_value(&self.spec).expect("spec serializes");
        let map = view.as_object_mut().expect("spec is an object");
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert(
            "status".into(),
            serde_json::to_value(self.status).expect("status serializes"),
        );
        map.insert("created_at".into(), format_millis(self.created_at).into());
        map.insert("updated_at".into(), format_millis(self.updated_at).into());
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> ValidationContext<'static> {
        ValidationContext {
            known_plugin: &|name| name == "only-large",
            policy: DestinationPolicy {
                allow_private: false,
            },
        }
    }

    fn errors(body: Value) -> Vec<String> {
        match parse_spec(body) {
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
            Ok(spec) => match spec
                .id
                .as_deref()
                .map_or(Ok(()), check_client_id)
                .and_then(|()| spec.validate(&ctx()))
            {
                Ok(()) => vec![],
                Err(errors) => errors.into_iter().map(|e| e.field).collect(),
            },
        }
    }

    #[test]
    fn defaults_fill_a_minimal_webhook() {
        let spec = parse_spec(json!({"url": "https://erp.example.com/hook"})).unwrap();
        spec.validate(&ctx()).unwrap();
        assert_eq!(spec.timeout.as_str(), "PT30S");
        assert_eq!(spec.retry.schedule.len(), 8);
        assert_eq!(spec.max_in_flight, 16);
        assert!(spec.enabled);
        assert!(spec.subscribes_to("anything"));
    }

    #[test]
    fn every_field_of_the_contract_is_accepted() {
        let body = json!({
            "id": "erp-1", "name": "ERP", "description": "d",
            "url": "https://erp.example.com/hook", "method": "GET", "enabled": false,
            "event_types": ["order.created", "ORDER_CREATE"],
            "filter_conditions": {"payload.total": {"gte": 100}},
            "headers": {"X-Env": "prod"}, "additional_data": {"k": "v"},
            "query_key": "abc", "timeout": "PT10S",
            "integration_type": "temporary",
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-02-01T00:00:00Z",
            "authentication": {"type": "none"}, "tls": null,
            "retry": {"mode": "manual", "schedule": ["PT1S"]},
            "ordering": "fifo", "rate_limit_per_second": 5.5, "max_in_flight": 4,
            "plugins": [{"plugin": "only-large", "version": 2, "config": {"min": 1}}],
            "destination": {"type": "http"},
            "status": "running", "created_at": "ignored"
        });
        assert_eq!(errors(body), Vec::<String>::new());
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases = [
            (json!({"url": "ftp://x"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({}), "url"),
            (json!({"url": "https://x.io", "id": "Bad_Id"}), "id"),
            (
                json!({"url": "https://x.io", "timeout": "30 seconds"}),
                "timeout",
            ),
            (json!({"url": "https://x.io", "timeout": "PT0S"}), "timeout"),
            (
                json!({"url": "https://x.io", "retry": {"schedule": ["PT5S", "soon"]}}),
                "retry.schedule[1]",
            ),
            (
                json!({"url": "https://x.io", "integration_type": "temporary", "starts_at": "2026-01-01T00:00:00Z"}),
                "ends_at",
            ),
            (
                json!({"url": "https://x.io", "starts_at": "2026-01-01T00:00:00Z"}),
                "starts_at",
            ),
            (
                json!({"url": "https://x.io", "headers": {"Host": "x"}}),
                "headers.Host",
            ),
            (
                json!({"url": "https://x.io", "headers": {"bad name": "x"}}),
                "headers.bad name",
            ),
            (
                json!({"url": "https://x.io", "max_in_flight": 0}),
                "max_in_flight",
            ),
            (
                json!({"url": "https://x.io", "rate_limit_per_second": -1}),
                "rate_limit_per_second",
            ),
            (
                json!({"url": "https://x.io", "plugins": [{"plugin": "nope"}]}),
                "plugins[0].plugin",
            ),
            (
                json!({"url": "https://x.io", "event_types": ["has space"]}),
                "event_types[0]",
            ),
            (
                json!({"url": "https://x.io", "filter_conditions": {"a": {"zz": 1}}}),
                "filter_conditions",
            ),
            (json!({"url": "https://x.io", "method": "DELETE"}), "method"),
            (json!({"url": "https://x.io", "colour": "red"}), "colour"),
            (
                json!({"url": "https://x.io", "destination": {"type": "s3", "bucket": "b", "region": "r", "access_key_id": "a", "secret_access_key": "s"}}),
                "url",
            ),
        ];
        for (body, field) in cases {
            let errs = errors(body.clone());
            assert!(
                errs.iter().any(|f| f == field),
                "{body} should report {field}, got {errs:?}"
            );
        }
    }

    #[test]
    fn private_destinations_and_bad_auth_are_refused() {
        for url in [
            "http://127.0.0.1/h",
            "http://10.0.0.1/h",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://localhost:8080/",
        ] {
            assert!(
                errors(json!({"url": url})).contains(&"url".to_string()),
                "{url}"
            );
        }
        let errs = errors(json!({"url": "https://x.io", "authentication": {"type": "hmac"}}));
        assert!(
            errs.iter().any(|f| f.starts_with("authentication")),
            "{errs:?}"
        );
        let errs = errors(
            json!({"url": "https://x.io", "authentication": {"type": "jwt", "algorithm": "RS256", "private_key": "nope", "iss": "a", "sub": "b"}}),
        );
        assert!(
            errs.iter().any(|f| f.starts_with("authentication")),
            "{errs:?}"
        );
        let errs = errors(json!({"url": "https://x.io", "tls": {"ca_pem": "not a pem"}}));
        assert!(errs.iter().any(|f| f.starts_with("tls")), "{errs:?}");
    }

    #[test]
    fn s3_destination_without_url_is_valid() {
        let s3 = |endpoint: &str, path_style: bool| {
            json!({"destination": {"type": "s3", "bucket": "exports", "key_prefix": "hg/raw",
                "region": "us-east-1", "endpoint": endpoint, "path_style": path_style,
                "access_key_id": "a", "secret_access_key": "s", "flush_interval": "PT5S",
                "max_file_bytes": 65536}})
        };
        assert_eq!(
            errors(s3("https://minio.example.com", true)),
            Vec::<String>::new()
        );
        // The SSRF guard covers the S3 endpoint too; an IP endpoint needs path style.
        assert!(
            errors(s3("http://127.0.0.1:9000", true)).contains(&"destination.endpoint".to_string())
        );
        assert!(
            errors(s3("https://203.0.113.9", false))
                .contains(&"destination.path_style".to_string())
        );
        let mut bad_prefix = s3("https://minio.example.com", true);
        bad_prefix["destination"]["key_prefix"] = json!("a//b");
        assert!(errors(bad_prefix).contains(&"destination.key_prefix".to_string()));
    }
}
