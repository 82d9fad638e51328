//! Every error under `/api/` has the API's error shape (issue 13): status,
//! `content-type: application/json` and `{"error": {"code", "message"}}`,
//! whether a handler refused the request or axum did before it ran (a
//! method the route lacks, an undecodable path segment, a body of the
//! wrong type, size or syntax, a bad query). The console answers its own
//! refusals with an HTML page, never an empty body. Real server, real HTTP.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use live_server::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Asserts `reply` is `status` in the API's error shape; returns the code.
async fn api_error(reply: reqwest::Response, status: StatusCode, what: &str) -> String {
    assert_eq!(reply.status(), status, "{what}");
    let content_type = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = reply.bytes().await.unwrap();
    assert_eq!(
        content_type,
        "application/json",
        "{what}: {}",
        String::from_utf8_lossy(&bytes)
    );
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&bytes)));
    let fields = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(
        fields(&body),
        Some(vec!["error".to_owned()]),
        "{what}: {body}"
    );
    assert_eq!(
        fields(&body["error"]),
        Some(vec!["code".to_owned(), "message".to_owned()]),
        "{what}: {body}"
    );
    let code = body["error"]["code"].as_str().unwrap().to_owned();
    assert!(!code.is_empty(), "{what}: {body}");
    assert!(
        !body["error"]["message"].as_str().unwrap().is_empty(),
        "{what}: {body}"
    );
    code
}

/// Asserts `reply` is `status` with a non-empty HTML page.
async fn html_error(reply: reqwest::Response, status: StatusCode, what: &str) -> String {
    assert_eq!(reply.status(), status, "{what}");
    let content_type = reply
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let html = reply.text().await.unwrap();
    assert!(
        content_type.starts_with("text/html"),
        "{what}: {content_type} {html}"
    );
    assert!(html.contains("<html"), "{what}: {html}");
    html
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_error_has_the_json_error_shape() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    s.ok(
        Method::POST,
        "/api/v1/tenants",
        Some(&owner),
        Some(json!({"name": "acme"})),
    )
    .await;
    let send = |method: Method, path: &str| s.http.request(method, s.url(path)).bearer_auth(&owner);

    // A method the route does not take: 405 with `Allow`, signed in or not.
    for request in [
        send(Method::DELETE, "/api/v1/tenants"),
        s.http.put(s.url("/api/v1/auth/login")),
        s.http.delete(s.url("/healthz")),
    ] {
        let reply = request.send().await.unwrap();
        assert!(
            reply.headers().contains_key("allow"),
            "{:?}",
            reply.headers()
        );
        let code = api_error(reply, StatusCode::METHOD_NOT_ALLOWED, "wrong method").await;
        assert_eq!(code, "method_not_allowed");
    }

    // A path segment that does not decode to UTF-8.
    for path in [
        "/api/v1/jobs/%80",
        "/api/v1/devices/%80",
        "/api/v1/tenants/%FF/devices",
    ] {
        let reply = send(Method::GET, path).send().await.unwrap();
        let code = api_error(reply, StatusCode::BAD_REQUEST, path).await;
        assert_eq!(code, "bad_request");
    }

    // Bodies: wrong type, too large, not JSON, not the schema.
    let reply = send(Method::POST, "/api/v1/tenants")
        .header("content-type", "text/plain")
        .body(r#"{"name": "globex"}"#)
        .send()
        .await
        .unwrap();
    let code = api_error(reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain").await;
    assert_eq!(code, "unsupported_media_type");
    let reply = send(Method::POST, "/api/v1/tenants")
        .json(&json!({"name": "x".repeat(100 * 1024)}))
        .send()
        .await
        .unwrap();
    let code = api_error(reply, StatusCode::PAYLOAD_TOO_LARGE, "oversized").await;
    assert_eq!(code, "too_large");
    for body in [r#"{"name": "#, r#"{"nom": "globex"}"#, "[]"] {
        let reply = send(Method::POST, "/api/v1/tenants")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let code = api_error(reply, StatusCode::BAD_REQUEST, body).await;
        assert_eq!(code, "bad_request");
    }

    // A bad query parameter.
    for path in [
        "/api/v1/msp/log/entries?start=abc",
        "/api/v1/msp/log/entries?limit=1&bogus=1",
    ] {
        let reply = send(Method::GET, path).send().await.unwrap();
        let code = api_error(reply, StatusCode::BAD_REQUEST, path).await;
        assert_eq!(code, "bad_request");
    }

    // A route that does not exist.
    let reply = send(Method::GET, "/api/v1/no-such-route")
        .send()
        .await
        .unwrap();
    let code = api_error(reply, StatusCode::NOT_FOUND, "no route").await;
    assert_eq!(code, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_errors_are_html_pages() {
    let s = Server::start().await;
    let _owner = s.owner().await;

    let reply = s.http.delete(s.url("/login")).send().await.unwrap();
    assert!(reply.headers().contains_key("allow"));
    html_error(reply, StatusCode::METHOD_NOT_ALLOWED, "DELETE /login").await;

    let reply = s.http.get(s.url("/no-such-page")).send().await.unwrap();
    html_error(reply, StatusCode::NOT_FOUND, "no such page").await;

    // A form missing its fields, and a body that is no form at all.
    let reply = s
        .http
        .post(s.url("/login"))
        .form(&[("username", "olivia")])
        .send()
        .await
        .unwrap();
    let html = html_error(reply, StatusCode::BAD_REQUEST, "incomplete form").await;
    assert!(html.contains("password"), "{html}");
    let reply = s
        .http
        .post(s.url("/login"))
        .header("content-type", "text/plain")
        .body("username=olivia")
        .send()
        .await
        .unwrap();
    html_error(reply, StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain form").await;
    let reply = s
        .http
        .post(s.url("/login"))
        .form(&[("username", "x".repeat(100 * 1024))])
        .send()
        .await
        .unwrap();
    html_error(reply, StatusCode::PAYLOAD_TOO_LARGE, "oversized form").await;
    let reply = s.http.get(s.url("/invite/%80")).send().await.unwrap();
    html_error(reply, StatusCode::BAD_REQUEST, "undecodable path").await;
}
