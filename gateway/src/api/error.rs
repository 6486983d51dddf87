//! The one API error type. Every error response is
//! `{"error_code", "message", "request_id"}` (plus `errors` for field problems);
//! `envelope` also rewrites the plain-text rejections of axum itself into that shape.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{model::problems::FieldError, storage::StorageError};

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Vec<FieldError>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let message = errors
            .iter()
            .map(|e| {
                if e.field.is_empty() || e.field == "." {
                    e.message.clone()
                } else {
                    format!("{}: {}", e.field, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "validation_error",
            message,
            errors,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 503: what the request needs cannot be reached now (another node of the cluster).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The destination behind a request sent on the caller's behalf did not take it.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the server log has details under this request id",
        )
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            // Like a failed flush: nothing was acknowledged, a retry may succeed.
            StorageError::Unavailable(e) => {
                tracing::error!(error = %e, "storage unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_durable", e)
            }
            // The API writes no fenced set; a worker's reaching here moved meanwhile.
            StorageError::Fenced(e) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_durable", e)
            }
            corrupt @ StorageError::Corrupt(_) => ApiError::internal(corrupt),
        }
    }
}

fn body(code: &str, message: &str, errors: &[FieldError]) -> Value {
    let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
    let mut body = json!({"error_code": code, "message": message, "request_id": request_id});
    if !errors.is_empty() {
        body["errors"] = serde_json::to_value(errors).expect("field errors serialize");
    }
    body
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(body(self.code, &self.message, &self.errors)),
        )
            .into_response();
        response.extensions_mut().insert(Rendered);
        response
    }
}

/// Marks a response whose error body is already in the contract's shape.
#[derive(Clone, Copy)]
struct Rendered;

const REQUEST_ID_HEADER: &str = "x-request-id";

/// Assigns the request id (the caller's `x-request-id` when it is sane), sets it on the
/// response, and turns any error response not produced by `ApiError` into the contract's
/// error shape.
pub async fn envelope(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| crate::ids::generate("req"));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let response = next.run(request).await;
            let failed = response.status().is_client_error() || response.status().is_server_error();
            if failed && response.extensions().get::<Rendered>().is_none() {
                return rewrap(response).await;
            }
            response
        })
        .await;
    if response.status().is_server_error() {
        tracing::warn!(request_id = %id, %method, %path, status = %response.status(), "request failed");
    }
    response.headers_mut().insert(
        REQUEST_ID_HEADER,
        HeaderValue::from_str(&id).expect("request id is visible ascii"),
    );
    response
}

/// Re-renders a framework rejection (plain text) as a contract error.
async fn rewrap(response: Response) -> Response {
    let status = response.status();
    let (mut parts, original) = response.into_parts();
    let text = axum::body::to_bytes(original, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        _ if status.is_server_error() => "internal_error",
        _ => "error",
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => "the request body is larger than the limit".into(),
        (StatusCode::NOT_FOUND, true) => "no such route".into(),
        (StatusCode::METHOD_NOT_ALLOWED, true) => "method not allowed on this route".into(),
        (_, true) => status.canonical_reason().unwrap_or("error").to_string(),
        (_, false) => text,
    };
    let json = serde_json::to_vec(&body(code, &message, &[])).expect("serializes");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::from_parts(parts, Body::from(json));
    response.extensions_mut().insert(Rendered);
    response
}
