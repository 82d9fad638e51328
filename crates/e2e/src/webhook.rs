//! A webhook receiver on loopback: what the server's alert webhooks send.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::Value;

/// The JSON bodies received, in order.
pub type Received = Arc<Mutex<Vec<Value>>>;

async fn hook(
    axum::extract::State(received): axum::extract::State<Received>,
    axum::Json(body): axum::Json<Value>,
) -> axum::http::StatusCode {
    received.lock().expect("lock").push(body);
    axum::http::StatusCode::NO_CONTENT
}

/// Starts a receiver: its URL (`http://127.0.0.1:PORT/hook`) and what it
/// was sent. It runs until the test's runtime ends.
pub async fn webhook_receiver() -> Result<(String, Received)> {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// The alert openings received (`"event": "trigger"`, not the
/// acknowledge and resolve follow-ups) whose alert has `kind` and mentions
/// `text`.
pub fn hooked(received: &Received, kind: &str, text: &str) -> Vec<Value> {
    received
        .lock()
        .expect("lock")
        .iter()
        .filter(|b| {
            b["event"] == "trigger" && b["alert"]["kind"] == kind && b.to_string().contains(text)
        })
        .cloned()
        .collect()
}
