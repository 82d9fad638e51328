//! The witness's HTTP service: `POST /add-checkpoint` (C2SP tlog-witness),
//! one request per log at a time, the state recorded before the answer.
//! Plain HTTP: cosignatures and requests carry their own signatures; put TLS
//! in front where the network needs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bulwark_translog::Limits;
use bulwark_translog::cosignature::Cosigner;
use tokio::sync::Mutex;

use crate::add_checkpoint::{self, Cosigned, Refusal};
use crate::state::{FollowedLog, WitnessDir};

/// Set (to anything) only by the crash tests: exit right after a state was
/// recorded and before its cosignature is sent, as a power cut would.
pub const CRASH_AFTER_RECORD_ENV: &str = "BULWARK_WITNESS_TEST_CRASH_AFTER_RECORD";

struct Witness {
    dir: WitnessDir,
    cosigner: Cosigner,
    /// One lock per origin: checking `old` and recording the new state
    /// happen as one step (the spec's rollback race).
    logs: HashMap<String, (FollowedLog, Mutex<()>)>,
    limits: Limits,
    crash_after_record: bool,
}

/// Serves the witness in `dir` on `listener` until the process ends.
pub async fn serve(dir: &std::path::Path, listener: tokio::net::TcpListener) -> Result<()> {
    let (dir, cosigner) = WitnessDir::open(dir)?;
    let logs = dir
        .logs()?
        .into_iter()
        .map(|log| (log.origin.clone(), (log, Mutex::new(()))))
        .collect::<HashMap<_, _>>();
    for origin in logs.keys() {
        // A state that does not read is reported now, not at the first request.
        if let Err(error) = dir.cosigned(origin) {
            tracing::error!(%origin, "{error:#}");
        }
    }
    tracing::info!(
        witness = %cosigner.verifier().to_vkey(),
        logs = logs.len(),
        "Witness ready."
    );
    let limits = Limits::default();
    let body_limit = add_checkpoint::max_body_bytes(&limits);
    let witness = Arc::new(Witness {
        dir,
        cosigner,
        logs,
        limits,
        crash_after_record: std::env::var_os(CRASH_AFTER_RECORD_ENV).is_some(),
    });
    let app = Router::new()
        .route("/add-checkpoint", post(add_checkpoint_route))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(witness);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .context("serving")
}

fn refused(refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let content_type = if matches!(refusal, Refusal::Conflict { .. }) {
        "text/x.tlog.size"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut response = (status, refusal.body()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint_route(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let request = match add_checkpoint::parse_request(&body, &witness.limits) {
        Ok(request) => request,
        Err(refusal) => return refused(&refusal),
    };
    let origin = match add_checkpoint::origin(&request.note) {
        Ok(origin) => origin.to_owned(),
        Err(refusal) => return refused(&refusal),
    };
    let Some((log, lock)) = witness.logs.get(&origin) else {
        return refused(&Refusal::UnknownOrigin(format!(
            "this witness does not follow {origin}"
        )));
    };
    let _one_at_a_time = lock.lock().await;
    let held = match witness.dir.cosigned(&origin) {
        Ok(held) => held,
        Err(error) => {
            tracing::error!(%origin, "{error:#}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this witness cannot read its record of the log; it cosigns nothing for it\n",
            )
                .into_response();
        }
    };
    let checkpoint = match add_checkpoint::check(&request, &log.key, held.as_ref(), &witness.limits)
    {
        Ok(checkpoint) => checkpoint,
        Err(refusal) => {
            // A signed checkpoint that does not extend what was
            // cosigned may be evidence of a fork: keep it in the log.
            if let Refusal::Inconsistent(reason) = &refusal {
                tracing::warn!(%origin, %reason, checkpoint = %request.note, "Refused to cosign.");
            }
            return refused(&refusal);
        }
    };
    let state = Cosigned {
        size: checkpoint.size(),
        root: *checkpoint.root(),
    };
    // Recorded before the cosignature leaves (RFD 0006, "State and crashes").
    if held != Some(state)
        && let Err(error) = witness.dir.record(&origin, &state)
    {
        tracing::error!(%origin, "Cannot record the checkpoint: {error:#}");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this witness cannot record the checkpoint, so it does not cosign it\n",
        )
            .into_response();
    }
    if witness.crash_after_record {
        std::process::exit(86);
    }
    match witness
        .cosigner
        .cosign(&checkpoint.to_note_body(), now_secs())
    {
        Ok(line) => {
            tracing::info!(%origin, size = state.size, "Cosigned.");
            line.into_response()
        }
        Err(error) => refused(&Refusal::BadRequest(error.to_string())),
    }
}
