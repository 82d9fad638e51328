//! What the API refuses before a handler runs, in the API's error shape:
//! the extractors every handler takes its body and path through
//! ([`ApiJson`], [`ApiPath`]), the 405 and the layer that shapes any other
//! refusal ([`with_api_errors`]), and the document's record of them
//! ([`RefusedRequests`]), and the decoders of base64 fields.

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use utoipa::Modify;

use super::error::{self, ApiError};
use crate::state::AppState;

/// The refusals axum answers before a handler runs, added to the document
/// where an operation can meet them and its annotation does not list them
/// (most do): a JSON body may be refused 400 (not JSON, or not the schema),
/// 413 or 415, a path or query parameter 400 (e.g. not UTF-8), and an
/// operation needing a caller 401 and 403 (`passkey_required`, `csrf`). All in
/// the `ErrorBody` shape ([`with_api_errors`]); so are a 405 for a method a
/// path does not take and a 404 for a path no route has, which the
/// document's description says since no operation can list them.
pub(super) struct RefusedRequests;

impl Modify for RefusedRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let mut refusals = Vec::new();
                if operation.request_body.is_some() {
                    refusals.extend([
                        ("400", "The body is not JSON, or not this schema."),
                        ("413", "The body is larger than this route takes."),
                        ("415", "The body is not `application/json`."),
                    ]);
                }
                if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    refusals.push(("400", "A parameter does not decode (e.g. not UTF-8)."));
                }
                // What the `Caller` extractor answers before the handler.
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    refusals.extend([
                        (
                            "401",
                            "No session or API token, or an expired or revoked one.",
                        ),
                        (
                            "403",
                            "Refused before the action: a session of a role that must sign in \
                             with a passkey but did not (`passkey_required`: it may only \
                             register one), or a console session's write without its CSRF \
                             token (`csrf`).",
                        ),
                    ]);
                }
                for (status, description) in refusals {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// JSON body extractor whose rejections use the API's error shape.
///
/// It refuses every content type but `application/json` (and `+json`) with
/// a 415, which is also why the public routes taking it (login, setup,
/// invitation redemption, passkey login, the device flow) need no `Origin`
/// check against login CSRF: a cross-site HTML form can only send
/// urlencoded, multipart or text/plain bodies, and a cross-site `fetch`
/// with `application/json` needs a CORS preflight this server never
/// grants (no route answers `OPTIONS` with CORS headers). They answer a
/// bearer token in the body, never a cookie, besides.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Path parameters whose rejection (e.g. `%80`, not UTF-8) uses the API's
/// error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// Every API route, its errors in the API's shape even where axum answers
/// before a handler runs: a method the path does not take is a 405 (axum
/// adds `Allow`), and [`error::json_errors`] gives the shape to any other
/// refusal that is not JSON yet (an extractor a handler did not wrap).
pub fn with_api_errors(router: Router<AppState>) -> Router<AppState> {
    router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(error::json_errors))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::rejected(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this route does not take {method}; `Allow` lists the methods it takes"),
    )
}

/// A standard-base64 field of a request (keys, envelopes, signatures); the
/// body limit bounds its size.
pub(crate) fn base64_field(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text.trim())
        .map_err(|_| ApiError::bad_request(format!("{what} is not valid base64")))
}

/// A base64url field from a browser's WebAuthn answer (padding and
/// surrounding whitespace tolerated, as browsers and scripts vary) of at
/// most `max` decoded bytes.
pub(crate) fn base64url_field(what: &str, text: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    let text = text.trim().trim_end_matches('=');
    if text.len() > max.div_ceil(3) * 4 {
        return Err(ApiError::bad_request(format!(
            "{what} is longer than {max} bytes"
        )));
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ApiError::bad_request(format!("{what} is not base64url")))
}
