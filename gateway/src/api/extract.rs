//! Request extractors: JSON bodies with path-precise errors, pagination, and the auth
//! extractors that prove who is calling so no handler re-checks it.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::{
    api::ApiState,
    iso::{Bound, EpochMillis, parse_time_param},
    model::problems::FieldError,
};

/// A JSON body. Wrong content type: 415; malformed JSON: 400 `invalid_json`; a value of
/// the wrong shape: 400 `validation_error` naming the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), status_code_name(e.status()), e.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn require_json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let mime = v.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        })
        .unwrap_or(false);
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as content-type: application/json",
        ))
    }
}

pub fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::BAD_REQUEST => "bad_request",
        _ => "error",
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let syntax = |e: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    };
    match parsed {
        Ok(value) => {
            de.end().map_err(|e| syntax(&e))?;
            Ok(value)
        }
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => Err(syntax(e.inner())),
        Err(e) => Err(ApiError::validation(vec![FieldError {
            field: e.path().to_string(),
            message: e.inner().to_string(),
        }])),
    }
}

/// `?limit=&iterator=` of every list route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, default 50, at most 1000.
    pub limit: Option<usize>,
    /// Opaque position from the previous page's `iterator`.
    pub iterator: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<usize, ApiError> {
        page_limit(self.limit).map_err(|e| ApiError::validation(vec![e]))
    }
}

/// A page size: default 50, at most 1000.
pub fn page_limit(limit: Option<usize>) -> Result<usize, FieldError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(FieldError {
            field: "limit".into(),
            message: "must be between 1 and 1000".into(),
        }),
    }
}

/// One end of a time range given as the query parameter `field` (`iso::parse_time_param`);
/// absent, the range is open on that side.
pub fn time_bound(
    value: Option<&str>,
    field: &str,
    bound: Bound,
) -> Result<EpochMillis, FieldError> {
    match value {
        None => Ok(match bound {
            Bound::Start => EpochMillis::MIN,
            Bound::End => EpochMillis::MAX,
        }),
        Some(text) => parse_time_param(text, bound).map_err(|message| FieldError {
            field: field.into(),
            message,
        }),
    }
}

/// `{"data": [...], "iterator": "...", "done": bool}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub iterator: Option<String>,
    pub done: bool,
}

impl<T> Page<T> {
    /// A page whose iterator is the key of its last item.
    pub fn keyed(data: Vec<T>, done: bool, key: impl Fn(&T) -> String) -> Self {
        let iterator = if done { None } else { data.last().map(key) };
        Page {
            data,
            iterator,
            done,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            iterator: self.iterator,
            done: self.done,
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <key>` header"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <key>`"))
}

/// Proof that the caller holds the admin token.
pub struct Admin;

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let presented = Sha256::digest(bearer(parts)?.as_bytes());
        if bool::from(presented.as_slice().ct_eq(&state.admin_token_sha256)) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("invalid admin token"))
        }
    }
}

/// Proof that the caller holds a key of the tenant named in the path (`/{tenant}/v1/...`).
/// A valid key of another tenant gets 404, so tenants cannot probe each other's names.
pub struct TenantAuth {
    pub tenant: String,
}

impl FromRequestParts<Arc<ApiState>> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let tenant = parts
            .uri
            .path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let key = bearer(parts)?;
        match state.catalog.authenticate_key(key).await? {
            None => Err(ApiError::unauthorized("invalid API key")),
            Some(owner) if owner == tenant => Ok(TenantAuth { tenant }),
            Some(_) => Err(ApiError::not_found(format!("no tenant `{tenant}`"))),
        }
    }
}
