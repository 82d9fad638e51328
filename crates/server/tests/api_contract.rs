//! What schemathesis found where the server and its OpenAPI document
//! disagreed (issue 13), each pinned here so it stays fixed without the
//! fuzzer: positions past `i64::MAX` refused, not read as an empty page;
//! whole numbers written `1800.0` read as the integers they are; the device
//! token endpoint's malformed bodies in its own RFC 6749 shape; names with
//! control characters refused everywhere; and the document's bounds and
//! responses the same as the checks. Real server, real HTTP.

#![allow(clippy::unwrap_used)]

#[path = "support/soft_passkey.rs"]
mod soft_passkey;

#[path = "support/live_server.rs"]
mod live_server;

use live_server::Server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_positions_past_i64_are_refused() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    for path in [
        "/api/v1/msp/log/entries?start=9223372036854775808",
        "/api/v1/msp/log/checkpoints?from_size=9223372036854775808",
    ] {
        let reply = s.send(Method::GET, path, Some(&owner), None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["code"], "bad_request", "{path}");
    }
    // The largest position the document allows is still a page (empty).
    let reply = s
        .send(
            Method::GET,
            "/api/v1/msp/log/entries?start=9223372036854775807",
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["entries"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_numbers_may_be_written_as_floats() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let path = "/api/v1/invitations";
    let invite = |ttl: Value| json!({"username": "otto", "role": "owner", "ttl_hours": ttl});
    for bad in [
        json!(24.5),
        json!(-1.0),
        json!(-1),
        json!(1e300),
        json!("24"),
    ] {
        let reply = s.post(path, Some(&owner), invite(bad.clone())).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
    }
    let reply = s.post(path, Some(&owner), invite(json!(24.0))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = s
        .post(
            "/api/v1/msp/log/exports",
            Some(&owner),
            json!({"purpose": "verify", "tree_size": 1.0}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["tree_size"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_token_answers_malformed_bodies_in_its_rfc_shape() {
    let s = Server::start().await;
    for body in [
        json!({"device_code": "x", "x-unknown": 42}),
        json!({"device_code": 7}),
        json!({}),
    ] {
        let reply = s
            .post("/api/v1/auth/device/token", None, body.clone())
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            reply.body["error"], "invalid_request",
            "{body}: {}",
            reply.body
        );
        assert!(
            reply.body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}: {}",
            reply.body
        );
    }
    // Not JSON at all stays the API's usual 415.
    let reply = s
        .http
        .post(s.url("/api/v1/auth/device/token"))
        .body("device_code=x")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_names_are_printable_and_counted_in_characters() {
    let s = Server::start().await;
    let (_totp, owner) = s.owner().await;
    let key = base64_32();
    for name in [
        "bad\u{1b}[2Jname",
        "   ",
        &"x".repeat(65),
        &format!(" {}", "x".repeat(64)),
    ] {
        let reply = s
            .post(
                "/api/v1/signing-keys",
                Some(&owner),
                json!({"name": name, "public_key": key}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name:?}: {}",
            reply.body
        );
    }
    // 64 characters of more than one byte each are 64 characters.
    let reply = s
        .post(
            "/api/v1/signing-keys",
            Some(&owner),
            json!({"name": "é".repeat(64), "public_key": key}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_states_the_checks() {
    let s = Server::start().await;
    let doc = s.ok(Method::GET, "/api/v1/openapi.json", None, None).await;
    let param = |path: &str, name: &str| -> Value {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))["schema"]
            .clone()
    };
    let limit = param("/api/v1/msp/log/entries", "limit");
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(1000))
    );
    let start = param("/api/v1/msp/log/entries", "start");
    assert_eq!(start["maximum"], json!(i64::MAX));
    let from = param("/api/v1/msp/log/proof/consistency", "from");
    assert_eq!(from["minimum"], json!(1));

    // Every operation that needs a caller lists what the caller check
    // answers: 401, and 403 (`passkey_required`).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if secured {
                for status in ["401", "403"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} does not document {status}"
                    );
                }
            }
        }
    }

    // The device token endpoint's 400 is RFC 6749's shape, not ErrorBody.
    let token_400 = &doc["paths"]["/api/v1/auth/device/token"]["post"]["responses"]["400"];
    assert_eq!(
        token_400["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/DeviceTokenError"
    );
}

fn base64_32() -> String {
    use base64::Engine as _;
    let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(public.as_bytes())
}
