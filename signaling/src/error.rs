//! The API's error type: every failure becomes `{"code", "message", "errors"?}` with its HTTP
//! status. Internal errors are logged with their cause and answered with a bare 500.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use confab_chat::ChatError;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Error body of every failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Confab error code (stable; see docs).
    pub code: u32,
    pub message: String,
    /// Messages per invalid field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
pub enum ApiError {
    Chat(ChatError),
    BadRequest(String),
    PayloadTooLarge,
    /// A body over a route's own limit, which the message names.
    TooLarge(String),
    UnsupportedMediaType,
    Unauthorized(&'static str),
    RateLimited {
        retry_after: f64,
    },
    Unavailable(&'static str),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        ApiError::Chat(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::Chat(ChatError::Internal(e))
    }
}

impl ApiError {
    fn parts(self) -> (StatusCode, ErrorBody) {
        let body = |code, message: String| ErrorBody {
            code,
            message,
            errors: None,
        };
        match self {
            ApiError::Chat(ChatError::Validation(errors)) => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    code: 50035,
                    message: "invalid form body".into(),
                    errors: Some(errors),
                },
            ),
            ApiError::Chat(ChatError::Unauthorized(m)) => {
                (StatusCode::UNAUTHORIZED, body(40001, m.into()))
            }
            ApiError::Chat(ChatError::Forbidden(m)) => {
                (StatusCode::FORBIDDEN, body(50013, m.into()))
            }
            // Discord's "cannot send messages to this user".
            ApiError::Chat(ChatError::Blocked(m)) => (StatusCode::FORBIDDEN, body(50007, m.into())),
            ApiError::Chat(ChatError::NotFound(what)) => {
                let code = match what {
                    "server" => 10004,
                    "channel" => 10003,
                    "message" => 10008,
                    "invite" => 10006,
                    "user" => 10013,
                    "member" => 10007,
                    "session" => 10020,
                    _ => 10000,
                };
                (StatusCode::NOT_FOUND, body(code, format!("unknown {what}")))
            }
            // Discord's "transfer ownership of any owned guilds before deleting your account"
            // is the first such rule.
            ApiError::Chat(ChatError::Refused(m)) => (StatusCode::BAD_REQUEST, body(40011, m)),
            ApiError::Chat(ChatError::Conflict(m)) => (StatusCode::CONFLICT, body(40900, m)),
            // An automod block is about the content (400, as Discord's 200000, with the
            // message under `content` for the composer); the other refusals are about the
            // member (403).
            ApiError::Chat(ChatError::Safety { code, message }) => {
                if code == confab_chat::safety::CODE_AUTOMOD_BLOCKED {
                    let mut errors = BTreeMap::new();
                    errors.insert("content".to_string(), vec![message.clone()]);
                    (
                        StatusCode::BAD_REQUEST,
                        ErrorBody {
                            code,
                            message,
                            errors: Some(errors),
                        },
                    )
                } else {
                    (StatusCode::FORBIDDEN, body(code, message))
                }
            }
            ApiError::Chat(ChatError::Unavailable) => database_unavailable(),
            ApiError::Chat(ChatError::Internal(e))
                if e.downcast_ref::<sqlx::Error>()
                    .is_some_and(confab_chat::error::is_unavailable) =>
            {
                database_unavailable()
            }
            ApiError::Chat(ChatError::Internal(e)) => {
                tracing::error!(error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    body(0, "internal server error".into()),
                )
            }
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, body(50109, m)),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(40005, "request body too large".into()),
            ),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, body(40005, m)),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                body(50109, "expected Content-Type: application/json".into()),
            ),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, body(40001, m.into())),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                body(
                    42900,
                    format!("rate limited; retry after {retry_after:.3} s"),
                ),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, body(50300, m.into())),
        }
    }
}

/// Code of the 503 a request gets while the database is unreachable.
pub const DATABASE_UNAVAILABLE: u32 = 50301;

fn database_unavailable() -> (StatusCode, ErrorBody) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorBody {
            code: DATABASE_UNAVAILABLE,
            message: "the database is unavailable; retry shortly".into(),
            errors: None,
        },
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = match &self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Unavailable(_) => Some(1.0),
            _ => None,
        };
        let (status, body) = self.parts();
        let db_down = body.code == DATABASE_UNAVAILABLE;
        let retry = retry.or(db_down.then_some(1.0));
        let mut resp = (status, axum::Json(body)).into_response();
        if db_down {
            // Seen by the circuit breaker (`crate::db_circuit`) on the way out.
            resp.extensions_mut()
                .insert(crate::db_circuit::DatabaseUnavailable);
        }
        if let Some(r) = retry {
            if let Ok(v) = HeaderValue::from_str(&format!("{}", r.ceil().max(1.0) as u64)) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        match r {
            // A malformed id cannot name anything that exists.
            PathRejection::FailedToDeserializePathParams(_) => {
                ApiError::Chat(ChatError::NotFound("resource"))
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

/// A JSON body whose rejections are API errors, screened for NULs (`crate::input`).
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(e.body_text())
                }
            })?;
        crate::input::decode_json(&bytes).map(Json)
    }
}

/// `application/json` or `application/<something>+json`, as axum's `Json` accepts.
pub(crate) fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Path` whose rejections are API errors (a malformed id is a 404).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejections are API errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A JSON body that may be absent: an empty (or whitespace-only) body means `T::default()`.
/// Anything else must be valid JSON for `T`, or it is a 400 like every other body.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        crate::input::decode_json(&bytes).map(OptionalJson)
    }
}
