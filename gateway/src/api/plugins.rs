//! `/{tenant}/v1/plugins`: upload WebAssembly plugin versions, list and delete them, keep
//! their write-only secrets, and dry-run a hook on a sample event. HTTP only: the rules
//! (compiling, version records, digests, the dry run) are `crate::plugin_registry`'s.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
};
use hookgate_plugin_host::{Hook, UploadError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};
use utoipa::ToSchema;
use utoipa_axum::{router::UtoipaMethodRouterExt, routes};

use super::{
    Routes,
    error::{ApiError, ApiResult},
    extract::{ApiJson, ListQuery, Page, TenantAuth},
};
use crate::{
    api::ApiState,
    ids,
    iso::{format_millis, now_millis},
    model::{problems::FieldError, webhook::is_event_type_name},
    plugin_registry::{DryRunInput, Registry, RegistryError},
    storage::StoredEvent,
    storage::catalog::{PluginSecret, PluginVersion},
};

const MAX_SECRET_BYTES: usize = 64 << 10;
const MAX_SECRET_KEY_LEN: usize = 128;

/// `upload_limit` is the largest component accepted (`plugin_max_component_bytes`, the
/// runtime's own cap), enforced while reading the body so a bigger upload is a 413 before
/// it is held in memory. It applies to the upload route only; the rest of the API keeps
/// `max_body_bytes`.
pub fn routes(upload_limit: usize) -> Routes {
    Routes::new()
        .routes(routes!(list_plugins))
        .routes(
            routes!(upload_plugin, get_plugin, delete_plugin)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .routes(routes!(get_plugin_version, delete_plugin_version))
        .routes(routes!(test_plugin))
        .routes(routes!(list_secrets))
        .routes(routes!(put_secret, get_secret, delete_secret))
}

/// Whether the tenant has a plugin of this name (at least one version).
pub(crate) async fn exists(state: &ApiState, tenant: &str, name: &str) -> bool {
    matches!(
        state.catalog.latest_plugin_version(tenant, name).await,
        Ok(Some(_))
    )
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

/// One uploaded version of a plugin.
#[derive(Serialize, ToSchema)]
struct VersionView {
    name: String,
    version: u32,
    /// Hex sha256 of the component.
    sha256: String,
    /// Size of the component in bytes.
    size: u64,
    /// Hooks the component exports (`filter`, `transform`, `authenticate`).
    #[schema(value_type = Vec<String>)]
    exports: Vec<Hook>,
    created_at: String,
}

fn version_view(v: PluginVersion) -> VersionView {
    VersionView {
        name: v.name,
        version: v.version,
        sha256: v.sha256,
        size: v.size,
        exports: v.exports,
        created_at: format_millis(v.created_at),
    }
}

/// A plugin in the list: its latest version's details and how many versions it has.
#[derive(Serialize, ToSchema)]
struct PluginSummary {
    name: String,
    latest_version: u32,
    version_count: usize,
    sha256: String,
    size: u64,
    #[schema(value_type = Vec<String>)]
    exports: Vec<Hook>,
    /// First upload under this name.
    created_at: String,
    /// Latest upload under this name.
    updated_at: String,
}

/// A plugin with every version, oldest first.
#[derive(Serialize, ToSchema)]
struct PluginDetail {
    name: String,
    latest_version: u32,
    created_at: String,
    updated_at: String,
    versions: Vec<VersionView>,
}

/// A secret's record; the value is never returned.
#[derive(Serialize, ToSchema)]
struct SecretView {
    key: String,
    created_at: String,
    updated_at: String,
}

fn secret_view(s: PluginSecret) -> SecretView {
    SecretView {
        key: s.key,
        created_at: format_millis(s.created_at),
        updated_at: format_millis(s.updated_at),
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

fn check_name(name: &str) -> ApiResult<()> {
    if ids::is_client_id(name) {
        Ok(())
    } else {
        Err(ApiError::validation(vec![FieldError {
            field: "name".into(),
            message: "must match ^[a-z0-9-]{1,50}$".into(),
        }]))
    }
}

fn check_secret_key(key: &str) -> ApiResult<()> {
    let valid = !key.is_empty()
        && key.len() <= MAX_SECRET_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::validation(vec![FieldError {
            field: "key".into(),
            message: "must match ^[A-Za-z0-9_.-]{1,128}$".into(),
        }]))
    }
}

fn require_wasm_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match mime.as_deref() {
        Some("application/wasm" | "application/octet-stream") => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component as content-type: application/wasm",
        )),
    }
}

fn upload_error(error: UploadError) -> ApiError {
    match error {
        UploadError::TooLarge { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            error.to_string(),
        ),
        UploadError::Cache(_) => ApiError::internal(error),
        UploadError::NotAComponent(_)
        | UploadError::Invalid(_)
        | UploadError::ForbiddenImports(_)
        | UploadError::WorldMismatch(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", error.to_string())
        }
    }
}

fn no_plugin(name: &str) -> ApiError {
    ApiError::not_found(format!("no plugin `{name}`"))
}

pub(crate) fn registry(state: &ApiState) -> Registry<'_> {
    Registry {
        catalog: &*state.catalog,
        runtime: &state.plugins,
        components: state.components.as_deref(),
        max_versions_per_tenant: state.config.plugin_max_versions_per_tenant,
        webhook_writes: &state.webhook_writes,
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NoPlugin(_) | RegistryError::NoVersion { .. } => {
                ApiError::not_found(error.to_string())
            }
            RegistryError::VersionLimit(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "plugin_version_limit_reached",
                error.to_string(),
            ),
            RegistryError::InUse(message) => ApiError::conflict(message),
            RegistryError::Invalid(upload) => upload_error(upload),
            RegistryError::Storage(error) => ApiError::from(error),
            RegistryError::Runtime(_) => ApiError::internal(error),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Upload, read, delete
// ---------------------------------------------------------------------------------------

/// A component's bytes, as an upload's body (binary, not a JSON array).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Only its schema is used: the handler reads the body as `Bytes`.
struct ComponentBytes(Vec<u8>);

/// Uploads a new version of a plugin (versions count 1, 2, 3… per name). The body is the
/// `.wasm` component itself. It is validated (a component of the `hookgate:plugin@0.1.0`
/// world, importing nothing else, instantiable within the sandbox limits), compiled once
/// and cached; anything else is refused with a 400 `invalid_plugin` and the reason.
#[utoipa::path(post, path = "/{tenant}/v1/plugins/{name}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path, description = "^[a-z0-9-]{1,50}$")),
    request_body(content(
            (ComponentBytes = "application/wasm"),
            (ComponentBytes = "application/octet-stream"),
        ),
        description = "The component (at most 10 MiB)"),
    responses((status = 201, body = VersionView),
        (status = 400, description = "Not a component of the hookgate:plugin world (reason in `message`), or a bad name"),
        (status = 413, description = "Larger than 10 MiB"),
        (status = 415, description = "Not sent as application/wasm or application/octet-stream"),
        (status = 429, description = "The tenant stores `plugin_max_versions_per_tenant` versions already")))]
async fn upload_plugin(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<VersionView>)> {
    check_name(&name)?;
    require_wasm_content_type(&headers)?;
    let version = registry(&state).upload(&auth.tenant, &name, body).await?;
    tracing::info!(tenant = %auth.tenant, plugin = %name, version = version.version, sha256 = %version.sha256, "plugin version uploaded");
    Ok((StatusCode::CREATED, Json(version_view(version))))
}

#[utoipa::path(get, path = "/{tenant}/v1/plugins", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ListQuery),
    responses((status = 200, description = "`{data: [plugin summary (latest version)], iterator, done}`",
        body = Page<PluginSummary>)))]
async fn list_plugins(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<PluginSummary>>> {
    let (heads, done) = state
        .catalog
        .plugin_heads_page(&auth.tenant, query.iterator.as_deref(), query.limit()?)
        .await?;
    let mut data = Vec::with_capacity(heads.len());
    for head in &heads {
        let versions = state
            .catalog
            .plugin_versions(&auth.tenant, &head.name)
            .await?;
        // Heads without versions do not exist (store invariant); skip one defensively.
        let Some(latest) = versions.last() else {
            continue;
        };
        data.push(PluginSummary {
            name: head.name.clone(),
            latest_version: latest.version,
            version_count: versions.len(),
            sha256: latest.sha256.clone(),
            size: latest.size,
            exports: latest.exports.clone(),
            created_at: format_millis(head.created_at),
            updated_at: format_millis(head.updated_at),
        });
    }
    let iterator = if done {
        None
    } else {
        heads.last().map(|h| h.name.clone())
    };
    Ok(Json(Page {
        data,
        iterator,
        done,
    }))
}

#[utoipa::path(get, path = "/{tenant}/v1/plugins/{name}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = PluginDetail), (status = 404)))]
async fn get_plugin(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<PluginDetail>> {
    let versions = registry(&state).versions_of(&auth.tenant, &name).await?;
    let head = state
        .catalog
        .plugin_head(&auth.tenant, &name)
        .await?
        .ok_or_else(|| no_plugin(&name))?;
    Ok(Json(PluginDetail {
        latest_version: versions.last().map_or(0, |v| v.version),
        name,
        created_at: format_millis(head.created_at),
        updated_at: format_millis(head.updated_at),
        versions: versions.into_iter().map(version_view).collect(),
    }))
}

#[utoipa::path(get, path = "/{tenant}/v1/plugins/{name}/versions/{version}", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = VersionView), (status = 404)))]
async fn get_plugin_version(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name, version)): Path<(String, String, u32)>,
) -> ApiResult<Json<VersionView>> {
    state
        .catalog
        .plugin_version(&auth.tenant, &name, version)
        .await?
        .map(|v| Json(version_view(v)))
        .ok_or_else(|| ApiError::not_found(format!("plugin `{name}` has no version {version}")))
}

/// Deletes a plugin: every version and its secrets. Refused with 409 while any webhook of
/// the tenant has it attached.
#[utoipa::path(delete, path = "/{tenant}/v1/plugins/{name}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404),
        (status = 409, description = "A webhook has it attached (the message names them)")))]
async fn delete_plugin(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    registry(&state).delete_plugin(&auth.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes one version. Refused with 409 while a webhook pins it, or follows the latest
/// version and this is the latest. Deleting the only version deletes the plugin (with its
/// secrets). Version numbers are not reused while the plugin exists.
#[utoipa::path(delete, path = "/{tenant}/v1/plugins/{name}/versions/{version}", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path), ("version" = u32, Path)),
    responses((status = 204), (status = 404),
        (status = 409, description = "A webhook uses this version (the message names them)")))]
async fn delete_plugin_version(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name, version)): Path<(String, String, u32)>,
) -> ApiResult<StatusCode> {
    registry(&state)
        .delete_version(&auth.tenant, &name, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Dry run
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SampleEvent {
    event_type: String,
    #[schema(value_type = Object)]
    payload: Value,
    /// Event id the plugin sees; generated when absent.
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum TestHook {
    Filter,
    Transform,
    Authenticate,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// Wrapped in the default envelope, as a delivery would be.
    event: SampleEvent,
    /// The attachment config the plugin receives (as a JSON string); `null` when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Value,
    hook: TestHook,
    /// Version to run; the latest when absent.
    #[serde(default)]
    version: Option<u32>,
    /// For `authenticate`: the URL of the request the plugin sees
    /// (default `https://receiver.example/webhook`).
    #[serde(default)]
    url: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TestError {
    /// e.g. `timeout`, `trap`, `memory_limit`, `plugin_error`, `invalid_output`.
    code: String,
    message: String,
}

#[derive(Serialize, ToSchema)]
struct TestResponse {
    hook: String,
    version: u32,
    /// filter: `true`/`false`; transform: `{event_type, headers, body}` (body as JSON
    /// when it parses, else as text); authenticate: `[{name, value}]`. `null` on error.
    #[schema(value_type = Object)]
    result: Value,
    /// Lines the plugin logged: `[{level, message}]`.
    #[schema(value_type = Vec<Object>)]
    logs: Value,
    elapsed_us: u64,
    instantiate_us: u64,
    /// Only when the runtime meters fuel.
    fuel_used: Option<u64>,
    /// The most memory (linear memories and tables together) the call had at once; the
    /// limit is `plugin_memory_limit_bytes`.
    peak_memory_bytes: u64,
    /// The size of what the hook returned (a transform's event type, headers and body;
    /// an authenticate hook's headers; 0 for a filter).
    output_bytes: u64,
    /// Set when the plugin failed (the dry run itself worked).
    error: Option<TestError>,
}

fn test_event(sample: SampleEvent) -> ApiResult<StoredEvent> {
    let mut problems = Vec::new();
    if !is_event_type_name(&sample.event_type) {
        problems.push(FieldError {
            field: "event.event_type".into(),
            message: "must match ^[A-Za-z0-9_.:-]{1,128}$".into(),
        });
    }
    if let Some(id) = &sample.id
        && !ids::is_client_id(id)
    {
        problems.push(FieldError {
            field: "event.id".into(),
            message: "must match ^[a-z0-9-]{1,50}$".into(),
        });
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let payload = RawValue::from_string(sample.payload.to_string()).map_err(ApiError::internal)?;
    let now = now_millis();
    Ok(StoredEvent {
        id: sample.id.unwrap_or_else(|| ids::generate("evt")),
        event_type: sample.event_type,
        published_at: now,
        received_at: now,
        payload,
    })
}

/// Dry run: runs one hook of a plugin on a sample event (wrapped in the default envelope)
/// with the given config and the tenant's real secrets for this plugin, exactly as a
/// delivery would, and reports the result, the plugin's log lines and the time (and fuel)
/// used. Nothing is stored or sent.
///
/// A plugin that fails (trap, timeout, memory limit, invalid output, its own error) still
/// gives **200**: the dry run worked and `error` says how the plugin failed, with `result`
/// null. 4xx answers are about the request itself (unknown plugin or version, bad event).
#[utoipa::path(post, path = "/{tenant}/v1/plugins/{name}/test", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path)), request_body = TestRequest,
    responses((status = 200, body = TestResponse,
        description = "The dry run happened; `error` is set when the plugin failed"),
        (status = 400), (status = 404, description = "No such plugin or version")))]
async fn test_plugin(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<TestRequest>,
) -> ApiResult<Json<TestResponse>> {
    let input = DryRunInput {
        event: test_event(body.event)?,
        config: body.config,
        hook: match body.hook {
            TestHook::Filter => Hook::Filter,
            TestHook::Transform => Hook::Transform,
            TestHook::Authenticate => Hook::Authenticate,
        },
        version: body.version,
        url: body.url,
    };
    let run = registry(&state).dry_run(&auth.tenant, &name, input).await?;
    let trial = run.trial;
    let (result, error) = match trial.result {
        Ok(value) => (value, None),
        Err(error) => (
            Value::Null,
            Some(TestError {
                code: error.code().to_string(),
                message: error.to_string(),
            }),
        ),
    };
    Ok(Json(TestResponse {
        hook: trial.hook.name().to_string(),
        version: run.version,
        result,
        logs: trial.logs,
        elapsed_us: trial.elapsed_us,
        instantiate_us: trial.instantiate_us,
        fuel_used: trial.fuel_used,
        peak_memory_bytes: trial.peak_memory_bytes,
        output_bytes: trial.output_bytes,
        error,
    }))
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    /// The secret (at most 64 KiB); never returned by the API.
    value: String,
}

/// The plugin must exist for its secrets to be read or written.
async fn require_plugin(state: &ApiState, tenant: &str, name: &str) -> ApiResult<()> {
    if exists(state, tenant, name).await {
        Ok(())
    } else {
        Err(no_plugin(name))
    }
}

/// Stores a secret the plugin can read with `secret(key)`; sealed at rest and write-only.
/// Only this plugin of this tenant can read it.
#[utoipa::path(put, path = "/{tenant}/v1/plugins/{name}/secrets/{key}", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path),
        ("key" = String, Path, description = "^[A-Za-z0-9_.-]{1,128}$")),
    request_body = SecretValue,
    responses((status = 201, body = SecretView, description = "Created"),
        (status = 200, body = SecretView, description = "Replaced"),
        (status = 400), (status = 404)))]
async fn put_secret(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name, key)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<SecretValue>,
) -> ApiResult<(StatusCode, Json<SecretView>)> {
    require_plugin(&state, &auth.tenant, &name).await?;
    check_secret_key(&key)?;
    if body.value.is_empty() || body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::validation(vec![FieldError {
            field: "value".into(),
            message: "must be 1 byte to 64 KiB".into(),
        }]));
    }
    let (secret, created) = state
        .catalog
        .put_plugin_secret(&auth.tenant, &name, &key, &body.value, now_millis())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(secret_view(secret))))
}

/// A secret's key and timestamps; the value is write-only.
#[utoipa::path(get, path = "/{tenant}/v1/plugins/{name}/secrets/{key}", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = SecretView), (status = 404)))]
async fn get_secret(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name, key)): Path<(String, String, String)>,
) -> ApiResult<Json<SecretView>> {
    require_plugin(&state, &auth.tenant, &name).await?;
    state
        .catalog
        .plugin_secret(&auth.tenant, &name, &key)
        .await?
        .map(|s| Json(secret_view(s)))
        .ok_or_else(|| ApiError::not_found(format!("plugin `{name}` has no secret `{key}`")))
}

#[utoipa::path(delete, path = "/{tenant}/v1/plugins/{name}/secrets/{key}", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404)))]
async fn delete_secret(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name, key)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    require_plugin(&state, &auth.tenant, &name).await?;
    if !state
        .catalog
        .delete_plugin_secret(&auth.tenant, &name, &key)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "plugin `{name}` has no secret `{key}`"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The plugin's secret keys (values are write-only).
#[utoipa::path(get, path = "/{tenant}/v1/plugins/{name}/secrets", tag = "plugins",
    security(("bearer" = [])),
    params(("tenant" = String, Path), ("name" = String, Path), ListQuery),
    responses((status = 200, description = "`{data: [{key, created_at, updated_at}], iterator, done}`",
        body = Vec<SecretView>), (status = 404)))]
async fn list_secrets(
    State(state): State<Arc<ApiState>>,
    auth: TenantAuth,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<SecretView>>> {
    require_plugin(&state, &auth.tenant, &name).await?;
    let (secrets, done) = state
        .catalog
        .plugin_secrets_page(
            &auth.tenant,
            &name,
            query.iterator.as_deref(),
            query.limit()?,
        )
        .await?;
    Ok(Json(
        Page::keyed(secrets, done, |s| s.key.clone()).map(secret_view),
    ))
}
