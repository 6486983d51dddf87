//! A webhook (Sterling "webhook", NewStore "integration", CloudBlue "webhook"): what the
//! API accepts (`WebhookSpec`), how it is validated, and the stored record (`Webhook`).
//! Where its events go is one typed value, [`Destination`] (`model/destination.rs`);
//! the spec's serde form is the flat wire form of `API.md` (`WireSpec`), the same for
//! requests, responses and stored records.

use std::collections::BTreeMap;

use hookgate_signing::{AuthConfig, DestinationPolicy, SecretString, TlsConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::destination::{Destination, HttpDestination, HttpMethod, S3Destination};
use super::{
    destination::{FlatSettings, WireDestination, WrittenBy, default_timeout, flatten_nested},
    filter,
    problems::{FieldError, Problems},
};
use crate::{
    ids,
    iso::{EpochMillis, IsoDuration, format_millis, parse_rfc3339},
};

pub const DEFAULT_SCHEDULE: [&str; 8] = [
    "PT0S", "PT5S", "PT5M", "PT30M", "PT2H", "PT5H", "PT10H", "PT10H",
];
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 16;
const MAX_SCHEDULE_STEPS: usize = 25;

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

/// Everything a client configures on a webhook, typed: where its events go is one
/// [`Destination`]. Its serde form is `WireSpec` (the contract's flat fields), so what
/// the API shows and what the store holds did not change when the destination became
/// typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WireSpec", into = "WireSpec")]
pub struct WebhookSpec {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub event_types: Vec<String>,
    pub filter_conditions: Option<Value>,
    pub additional_data: Option<Value>,
    pub integration_type: IntegrationType,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub retry: RetryPolicy,
    pub ordering: Ordering,
    pub rate_limit_per_second: Option<f64>,
    pub max_in_flight: u32,
    pub plugins: Vec<PluginAttachment>,
    pub destination: Destination,
}

/// The wire form of a spec, field for field the struct `WebhookSpec` was before the
/// destination became typed (`API.md`): the http settings and `timeout` flat, whatever
/// the destination, and `destination` holding only its type and the s3 settings. Unknown
/// fields are errors, so a typo is a 400 instead of a silently ignored setting.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSpec {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    method: HttpMethod,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    filter_conditions: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    additional_data: Option<Value>,
    #[serde(default)]
    query_key: Option<SecretString>,
    #[serde(default = "default_timeout")]
    timeout: IsoDuration,
    #[serde(default)]
    integration_type: IntegrationType,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    authentication: AuthConfig,
    #[serde(default)]
    tls: Option<TlsConfig>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    ordering: Ordering,
    #[serde(default)]
    rate_limit_per_second: Option<f64>,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: u32,
    #[serde(default)]
    plugins: Vec<PluginAttachment>,
    #[serde(default)]
    destination: WireDestination,
}

impl WebhookSpec {
    /// The typed spec of its wire form; errors name the wire field.
    fn from_wire(wire: WireSpec, written_by: WrittenBy) -> Result<WebhookSpec, Vec<FieldError>> {
        let WireSpec {
            id,
            name,
            description,
            url,
            method,
            enabled,
            event_types,
            filter_conditions,
            headers,
            additional_data,
            query_key,
            timeout,
            integration_type,
            starts_at,
            ends_at,
            authentication,
            tls,
            retry,
            ordering,
            rate_limit_per_second,
            max_in_flight,
            plugins,
            destination,
        } = wire;
        let flat = FlatSettings {
            url,
            method,
            headers,
            query_key,
            timeout,
            authentication,
            tls,
        };
        Ok(WebhookSpec {
            id,
            name,
            description,
            enabled,
            event_types,
            filter_conditions,
            additional_data,
            integration_type,
            starts_at,
            ends_at,
            retry,
            ordering,
            rate_limit_per_second,
            max_in_flight,
            plugins,
            destination: Destination::from_wire(flat, destination, written_by)?,
        })
    }
}

impl From<WebhookSpec> for WireSpec {
    fn from(spec: WebhookSpec) -> WireSpec {
        let (flat, destination) = spec.destination.into_wire();
        WireSpec {
            id: spec.id,
            name: spec.name,
            description: spec.description,
            url: flat.url,
            method: flat.method,
            enabled: spec.enabled,
            event_types: spec.event_types,
            filter_conditions: spec.filter_conditions,
            headers: flat.headers,
            additional_data: spec.additional_data,
            query_key: flat.query_key,
            timeout: flat.timeout,
            integration_type: spec.integration_type,
            starts_at: spec.starts_at,
            ends_at: spec.ends_at,
            authentication: flat.authentication,
            tls: flat.tls,
            retry: spec.retry,
            ordering: spec.ordering,
            rate_limit_per_second: spec.rate_limit_per_second,
            max_in_flight: spec.max_in_flight,
            plugins: spec.plugins,
            destination,
        }
    }
}

/// Serde reads stored records (requests go through [`parse_spec`]).
impl TryFrom<WireSpec> for WebhookSpec {
    type Error = WireErrors;

    fn try_from(wire: WireSpec) -> Result<WebhookSpec, WireErrors> {
        WebhookSpec::from_wire(wire, WrittenBy::Store).map_err(WireErrors)
    }
}

/// Why a stored wire spec is not a spec: `url: is required for http destinations`.
#[derive(Debug)]
pub struct WireErrors(Vec<FieldError>);

impl std::fmt::Display for WireErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

/// Fields a client may send back from a GET that are not configuration: accepted and
/// ignored so read-modify-write with PUT works.
pub const READ_ONLY_FIELDS: &[&str] = &["status", "created_at", "updated_at", "tenant"];

/// Parses a request body into a spec, naming the offending path on failure
/// (`retry.schedule[2]: ...`). Takes the flat wire form and the nested one
/// ([`flatten_nested`]).
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
    flatten_nested(&mut body)?;
    let wire: WireSpec = serde_path_to_error::deserialize(body).map_err(|e| {
        vec![FieldError {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        }]
    })?;
    WebhookSpec::from_wire(wire, WrittenBy::Client)
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
    /// The time of the request: `starts_at` may not be later.
    pub now: EpochMillis,
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
        self.destination.validate(&mut problems, &ctx.policy);
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
        if let Some(data) = &self.additional_data
            && !data.is_object()
        {
            problems.add("additional_data", "must be a JSON object");
        }
        self.validate_window(&mut problems, ctx.now);
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

    /// NewStore's rules: a temporary webhook replays `starts_at..=ends_at`; a permanent
    /// one may back-fill from `starts_at` and has no end; neither starts in the future.
    fn validate_window(&self, problems: &mut Problems, now: EpochMillis) {
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
        if let Some((_, Ok(s))) = &starts
            && *s > now
        {
            problems.add(
                "starts_at",
                "must not be in the future (events are taken as they arrive from now on \
                 without it)",
            );
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
                if ends.is_some() {
                    problems.add(
                        "ends_at",
                        "only applies to temporary webhooks (a permanent one has no end)",
                    );
                }
            }
        }
    }

    /// What NewStore says cannot change after creation: the type and the dates; and a
    /// temporary webhook, a replay of a fixed window, cannot change at all. `Err` names
    /// the first field that differs.
    pub fn check_update(&self, updated: &WebhookSpec) -> Result<(), FieldError> {
        let fixed = |field: &str| FieldError {
            field: field.into(),
            message: "cannot be changed after the webhook is created; create a new webhook \
                      for another window"
                .into(),
        };
        if self.integration_type != updated.integration_type {
            return Err(fixed("integration_type"));
        }
        if self.starts_at != updated.starts_at {
            return Err(fixed("starts_at"));
        }
        if self.ends_at != updated.ends_at {
            return Err(fixed("ends_at"));
        }
        if self.integration_type == IntegrationType::Temporary && self != updated {
            return Err(FieldError {
                field: "integration_type".into(),
                message: "a temporary webhook cannot be updated (only started, stopped or \
                          deleted); create a new one"
                    .into(),
            });
        }
        Ok(())
    }

    /// A permanent webhook's back-fill start, in millis; only meaningful after validation.
    pub fn backfill_from(&self) -> Option<EpochMillis> {
        match self.integration_type {
            IntegrationType::Permanent => parse_rfc3339(self.starts_at.as_deref()?).ok(),
            IntegrationType::Temporary => None,
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

/// Event type names: what Sterling (`ORDER_CREATE`), CloudBlue and dotted styles use.
pub fn is_event_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
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
    use hookgate_signing::{MasterKey, config::secret_scope};
    use serde_json::json;

    fn ctx() -> ValidationContext<'static> {
        ValidationContext {
            known_plugin: &|name| name == "only-large",
            policy: DestinationPolicy {
                allow_private: false,
            },
            now: 1_800_000_000_000,
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

    /// Records as the code before the typed destination wrote them (`serde_json` of a
    /// `Webhook`, secrets shown in plaintext as outside a sealing scope), and the views it
    /// showed for them: an http webhook with every http setting, and an s3 webhook.
    const STORED_HTTP: &str = r#"{"id":"erp-1","status":"running","created_at":1767225600000,"updated_at":1767225600000,"spec":{"id":"erp-1","name":"ERP","description":null,"url":"https://erp.example.com/hook?x=1","method":"POST","enabled":true,"event_types":["order.created"],"filter_conditions":null,"headers":{"X-Env":"prod"},"additional_data":null,"query_key":"query-key-value-0001","timeout":"PT10S","integration_type":"permanent","starts_at":null,"ends_at":null,"authentication":{"type":"hmac","secret":"hmac-secret-value-0002","header":"X-Sig"},"tls":{"ca_pem":"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n","client_cert_pem":"-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n","client_key_pem":"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"},"retry":{"mode":"auto","schedule":["PT0S","PT5S"]},"ordering":"unordered","rate_limit_per_second":null,"max_in_flight":16,"plugins":[],"destination":{"type":"http"}}}"#;
    const VIEW_HTTP: &str = r#"{"additional_data":null,"authentication":{"header":"X-Sig","secret":"****0002","type":"hmac"},"created_at":"2026-01-01T00:00:00.000Z","description":null,"destination":{"type":"http"},"enabled":true,"ends_at":null,"event_types":["order.created"],"filter_conditions":null,"headers":{"X-Env":"prod"},"id":"erp-1","integration_type":"permanent","max_in_flight":16,"method":"POST","name":"ERP","ordering":"unordered","plugins":[],"query_key":"****0001","rate_limit_per_second":null,"retry":{"mode":"auto","schedule":["PT0S","PT5S"]},"starts_at":null,"status":"running","timeout":"PT10S","tls":{"ca_pem":"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n","client_cert_pem":"-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n","client_key_pem":"(PEM private key, sha256:d4d1cff8)"},"updated_at":"2026-01-01T00:00:00.000Z","url":"https://erp.example.com/hook?x=1"}"#;
    const STORED_S3: &str = r#"{"id":"lake","status":"running","created_at":1767225600000,"updated_at":1767225600000,"spec":{"id":"lake","name":null,"description":null,"url":null,"method":"POST","enabled":true,"event_types":[],"filter_conditions":null,"headers":{},"additional_data":null,"query_key":null,"timeout":"PT30S","integration_type":"permanent","starts_at":null,"ends_at":null,"authentication":{"type":"none"},"tls":null,"retry":{"mode":"auto","schedule":["PT0S","PT5S","PT5M","PT30M","PT2H","PT5H","PT10H","PT10H"]},"ordering":"unordered","rate_limit_per_second":null,"max_in_flight":16,"plugins":[],"destination":{"type":"s3","bucket":"exports","key_prefix":"hg/raw","region":"eu-west-1","endpoint":"https://minio.example.com","path_style":true,"access_key_id":"AKIA","secret_access_key":"s3-secret-value-0003","flush_interval":"PT5M","max_file_bytes":52428800}}}"#;
    const VIEW_S3: &str = r#"{"additional_data":null,"authentication":{"type":"none"},"created_at":"2026-01-01T00:00:00.000Z","description":null,"destination":{"access_key_id":"AKIA","bucket":"exports","endpoint":"https://minio.example.com","flush_interval":"PT5M","key_prefix":"hg/raw","max_file_bytes":52428800,"path_style":true,"region":"eu-west-1","secret_access_key":"****0003","type":"s3"},"enabled":true,"ends_at":null,"event_types":[],"filter_conditions":null,"headers":{},"id":"lake","integration_type":"permanent","max_in_flight":16,"method":"POST","name":null,"ordering":"unordered","plugins":[],"query_key":null,"rate_limit_per_second":null,"retry":{"mode":"auto","schedule":["PT0S","PT5S","PT5M","PT30M","PT2H","PT5H","PT10H","PT10H"]},"starts_at":null,"status":"running","timeout":"PT30S","tls":null,"updated_at":"2026-01-01T00:00:00.000Z","url":null}"#;

    #[test]
    fn newstore_dates_and_type_are_fixed_and_temporary_webhooks_do_not_change() {
        let permanent = json!({"url": "https://x.io", "starts_at": "2026-01-01T00:00:00Z"});
        let spec = parse_spec(permanent.clone()).unwrap();
        assert_eq!(
            errors(permanent.clone()),
            Vec::<String>::new(),
            "a back-fill is fine"
        );
        assert_eq!(spec.backfill_from(), Some(1_767_225_600_000));
        let mut renamed = permanent.clone();
        renamed["name"] = json!("ERP");
        assert!(spec.check_update(&parse_spec(renamed).unwrap()).is_ok());
        let mut moved = permanent;
        moved["starts_at"] = json!("2026-02-01T00:00:00Z");
        let error = spec.check_update(&parse_spec(moved).unwrap()).unwrap_err();
        assert_eq!(error.field, "starts_at");

        let temporary = json!({"url": "https://x.io", "integration_type": "temporary",
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z"});
        let spec = parse_spec(temporary.clone()).unwrap();
        assert!(
            spec.check_update(&parse_spec(temporary.clone()).unwrap())
                .is_ok()
        );
        let mut renamed = temporary.clone();
        renamed["name"] = json!("ERP");
        let error = spec
            .check_update(&parse_spec(renamed).unwrap())
            .unwrap_err();
        assert!(error.message.contains("temporary"), "{error:?}");
        let mut permanent = temporary;
        permanent["integration_type"] = json!("permanent");
        permanent["ends_at"] = Value::Null;
        let error = spec
            .check_update(&parse_spec(permanent).unwrap())
            .unwrap_err();
        assert_eq!(error.field, "integration_type");
    }

    #[test]
    fn records_written_before_the_typed_destination_read_back_identically() {
        for (stored, view) in [(STORED_HTTP, VIEW_HTTP), (STORED_S3, VIEW_S3)] {
            let webhook: Webhook = serde_json::from_str(stored).unwrap();
            // Written back byte for byte (the wire struct keeps the old field order).
            assert_eq!(serde_json::to_string(&webhook).unwrap(), stored);
            let value: Value = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_value(&webhook).unwrap(), value);
            // The API view, secrets masked, is what it was.
            let shown = secret_scope::masked(|| webhook.to_view());
            assert_eq!(shown, serde_json::from_str::<Value>(view).unwrap());
            // Sealed for storage and opened again: the same webhook.
            let (key, _) = MasterKey::generate();
            let sealed = secret_scope::to_sealed_json(&webhook, &key).unwrap();
            let opened: Webhook = secret_scope::from_sealed_json(&sealed, &key).unwrap();
            assert_eq!(opened.spec, webhook.spec);
            // A GET sent back by PUT (read-modify-write) parses to the same spec.
            let mut sent_back = shown.clone();
            secret_scope::restore_masked(&mut sent_back, &webhook.spec).unwrap();
            assert_eq!(parse_spec(sent_back).unwrap(), webhook.spec);
        }

        let http: Webhook = serde_json::from_str(STORED_HTTP).unwrap();
        let Destination::Http(destination) = &http.spec.destination else {
            panic!("{:?}", http.spec.destination);
        };
        assert_eq!(destination.url, "https://erp.example.com/hook?x=1");
        assert_eq!(destination.timeout.as_str(), "PT10S");
        assert_eq!(
            destination.query_key.as_ref().unwrap().expose(),
            "query-key-value-0001"
        );
        assert!(matches!(destination.authentication, AuthConfig::Hmac(_)));
        assert!(destination.tls.as_ref().unwrap().client_key_pem.is_some());
        assert_eq!(destination.headers["X-Env"], "prod");

        let s3: Webhook = serde_json::from_str(STORED_S3).unwrap();
        let Destination::S3(destination) = &s3.spec.destination else {
            panic!("{:?}", s3.spec.destination);
        };
        assert_eq!(destination.bucket, "exports");
        assert_eq!(destination.timeout.as_str(), "PT30S");
        assert_eq!(
            destination.secret_access_key.expose(),
            "s3-secret-value-0003"
        );
    }

    /// Before the typed destination, validation let an s3 webhook keep `headers`,
    /// `query_key`, `authentication` and `tls` (export never used them): such a record
    /// loads, without them. From a client they are refused.
    #[test]
    fn stored_s3_records_with_unused_http_settings_still_load() {
        let mut value: Value = serde_json::from_str(STORED_S3).unwrap();
        let spec = &mut value["spec"];
        spec["headers"] = json!({"X-Env": "prod"});
        spec["query_key"] = json!("abc");
        spec["authentication"] = json!({"type": "hmac", "secret": "s"});
        spec["tls"] = json!({});
        let loaded: Webhook = serde_json::from_value(value.clone()).unwrap();
        let clean: Webhook = serde_json::from_str(STORED_S3).unwrap();
        assert_eq!(loaded.spec, clean.spec);
        let errors = parse_spec(value["spec"].take()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["headers", "query_key", "authentication", "tls"]);
    }

    #[test]
    fn a_stored_record_that_is_no_spec_names_the_field() {
        let mut value: Value = serde_json::from_str(STORED_HTTP).unwrap();
        value["spec"]["url"] = Value::Null;
        let error = serde_json::from_value::<Webhook>(value).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("url: is required for http destinations"),
            "{error}"
        );
    }

    #[test]
    fn defaults_fill_a_minimal_webhook() {
        let spec = parse_spec(json!({"url": "https://erp.example.com/hook"})).unwrap();
        spec.validate(&ctx()).unwrap();
        assert_eq!(spec.destination.http().unwrap().timeout.as_str(), "PT30S");
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
                json!({"url": "https://x.io", "ends_at": "2026-01-01T00:00:00Z"}),
                "ends_at",
            ),
            (
                json!({"url": "https://x.io", "starts_at": "2030-01-01T00:00:00Z"}),
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
