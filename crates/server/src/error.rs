//! API errors: a status, a stable code, a message naming what was wrong, and for bad input the field.
//! Body: `{"error": {"code", "message", "field"?}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_s: None,
        }
    }

    pub fn bad_request(message: impl Into<String>, field: Option<String>) -> Self {
        Self {
            field,
            ..Self::new(StatusCode::BAD_REQUEST, "request.validation", message)
        }
    }

    /// Unknown, or another tenant's: the same answer, so existence does not leak.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} `{id}` not found"))
    }

    pub fn unavailable(message: impl Into<String>, retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "server.overloaded", message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal.error", message)
    }

    /// A runtime failure outside a turn (listing, reading or deleting sessions, dropping an
    /// agent): its error code's status and code, so that a store that is down answers 503
    /// `store.unavailable` with Retry-After, not a 500.
    pub fn engine(e: aether_runtime::EngineError) -> Self {
        let code = e.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            retry_after_s: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
            ..Self::new(status, code.as_str(), e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(f) = &self.field {
            body["error"]["field"] = json!(f);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Parses a JSON body into a contract type; errors name the field (`messages[0].role: ...`).
pub fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", r.body_text())
        } else {
            ApiError::bad_request(r.body_text(), None)
        }
    })?;
    // serde reads a struct from an array too (its fields in order): every body is an object.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        let found = match first {
            None => "nothing".to_owned(),
            Some(b) => format!("`{}`", char::from(*b).escape_default()),
        };
        return Err(ApiError::bad_request(
            format!("request body: expected a JSON object, found {found}"),
            None,
        ));
    }
    aether_contracts::from_json_slice(&body).map_err(|e| {
        let field = (e.path != ".").then(|| e.path.clone());
        ApiError::bad_request(e.to_string(), field)
    })
}

/// A query string parsed into `T`, or a 400 with the `Error` body naming the parameter (axum's own
/// rejection would answer plain text, outside the API's documented error shape).
pub fn parse_query<T>(
    query: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query.map(|q| q.0).map_err(|r| {
        let text = r.body_text();
        // serde names the parameter either as "unknown field `name`" or as a "name: " prefix
        // of the value's error; pick it out for `field`.
        let detail = text.rsplit("query string: ").next().unwrap_or(&text);
        let field = detail
            .split("field `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .or_else(|| {
                detail
                    .split_once(": ")
                    .map(|(name, _)| name)
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            })
            .map(str::to_owned);
        ApiError::bad_request(format!("bad query string: {text}"), field)
    })
}

/// Path parameters, or a 400 with the `Error` body naming the parameter (axum's own rejection
/// answers plain text, outside the API's documented error shape): an id that is not UTF-8 once
/// percent-decoded, say.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(r) => {
                let field = match &r {
                    PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                        ErrorKind::InvalidUtf8InPathParam { key } => Some(key.clone()),
                        ErrorKind::ParseErrorAtKey { key, .. } => Some(key.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                Err(ApiError::bad_request(r.body_text(), field))
            }
        }
    }
}
