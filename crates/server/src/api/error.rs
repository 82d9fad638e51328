//! The API's one error type: `{ "error": { "code", "message" } }` with the
//! right status. Server-side failures get a generic message and an id; the
//! detail goes to the log only.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bulwark_api::error::ErrorCode;
use bulwark_api::error::{ErrorBody, ErrorDetail};
use bulwark_store::StoreError;

/// Also put in the extensions of the response it makes, so a layer that
/// shows errors differently (the console's HTML pages) finds it there.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "sign in first: this route needs a session or an API token",
        )
    }

    pub fn login_failed() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::LoginFailed,
            "the username, password or one-time code is wrong",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "your role does not allow this action",
        )
    }

    /// A privileged action on a session without a recent MFA check: pass
    /// `POST /api/v1/auth/step-up` (or the console's form) and try again.
    pub fn step_up_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::StepUpRequired,
            "this action needs a fresh one-time code: confirm it (step up) and try again",
        )
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Csrf,
            "the request did not carry this session's CSRF token",
        )
    }

    /// An unsafe-method request from a page of another site (its `Origin`,
    /// or `Sec-Fetch-Site` when it sends none): see
    /// [`crate::auth::session::cross_origin_write`].
    pub fn cross_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Csrf,
            "this request came from another site, so nothing was done: open the console \
             at its own address and try again",
        )
    }

    /// Also what a foreign tenant's object looks like: its existence is not revealed.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no such {what}"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// A request refused before (or instead of) a handler: an extractor's
    /// rejection, a method the route lacks, any bare error axum answers.
    /// The one mapping from such a refusal to the API's codes: the status
    /// stays, but a body that parses and does not fit the schema (axum's
    /// 422) is a 400 like any other bad request; a server-side failure is
    /// [`ApiError::internal`] (its detail goes to the log only).
    pub fn rejected(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthenticated,
            StatusCode::FORBIDDEN => ErrorCode::Forbidden,
            StatusCode::NOT_FOUND => ErrorCode::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
            StatusCode::CONFLICT => ErrorCode::Conflict,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
            StatusCode::UNPROCESSABLE_ENTITY => return Self::bad_request(message),
            status if status.is_client_error() => ErrorCode::BadRequest,
            _ => {
                let mut error = Self::internal(message.into());
                if status.is_server_error() {
                    error.status = status;
                }
                return error;
            }
        };
        Self::new(status, code, message)
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, %error, "Request failed.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("internal error (id {id}); see the server log"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// The API router's last layer: an error response that is not JSON yet
/// (the rejection of an extractor a handler did not wrap, such as a bare
/// `Path` meeting `%80`) is given the API's shape. Everything else passes
/// untouched.
pub async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !is_error(response.status()) {
        return response;
    }
    let (error, headers) = refusal(response).await;
    with_headers(error.into_response(), headers)
}

pub fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// What an error response means: the [`ApiError`] that made it, or else
/// (axum refused the request itself) [`ApiError::rejected`] with its status
/// and its text as the message. Also its headers, for [`with_headers`].
pub async fn refusal(response: Response) -> (ApiError, HeaderMap) {
    const LONGEST: usize = 2048;
    let (parts, body) = response.into_parts();
    if let Some(error) = parts.extensions.get::<ApiError>() {
        return (error.clone(), parts.headers);
    }
    let text = axum::body::to_bytes(body, LONGEST)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let message = text.unwrap_or_else(|| {
        parts
            .status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase()
    });
    (ApiError::rejected(parts.status, message), parts.headers)
}

/// `response` (a restyled error) with the headers of the one it replaces
/// (`Allow`, `Retry-After`, `WWW-Authenticate`, ...) but its own body's.
pub fn with_headers(mut response: Response, mut headers: HeaderMap) -> Response {
    headers.remove(header::CONTENT_TYPE);
    headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &headers {
        response.headers_mut().append(name, value.clone());
    }
    response
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::not_found("object"),
            StoreError::Conflict(what) => ApiError::conflict(what),
            StoreError::ForeignTarget(target) => {
                ApiError::bad_request(format!("{target} is not a device of this tenant"))
            }
            StoreError::Invalid(what) => ApiError::bad_request(what),
            other => ApiError::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<FormRejection> for ApiError {
    fn from(rejection: FormRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::rejected(rejection.status(), rejection.body_text())
    }
}
