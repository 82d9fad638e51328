//! The witness's HTTP service: `POST /add-checkpoint` (C2SP tlog-witness)
//! and `POST /bulwark/v1/freeze` (RFD 0006), one request per log at a time,
//! the state recorded before the answer. Plain HTTP: cosignatures and
//! requests carry their own signatures; put TLS in front where the network
//! needs it.

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
use crate::freeze::{self, FreezeRefusal, LogTrust};
use crate::state::{FollowedLog, WitnessDir};

/// Set (to anything) only by the crash tests: exit right after a state was
/// recorded and before its cosignature is sent, as a power cut would.
pub const CRASH_AFTER_RECORD_ENV: &str = "BULWARK_WITNESS_TEST_CRASH_AFTER_RECORD";

/// How the witness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// From this long after it took a tenant's freeze, the witness cosigns
    /// none of that tenant's log (RFD 0006: agents stop by `T + grace + W`).
    pub freeze_grace_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            freeze_grace_secs: freeze::DEFAULT_GRACE_SECS,
        }
    }
}

/// What the witness holds of a log's tenant trust, behind the log's lock.
enum TrustSlot {
    /// Added without a root fingerprint: cannot be frozen.
    NotFreezable,
    Held(Box<LogTrust>),
    /// The record does not read: this log is stopped (cosigns nothing).
    Unreadable,
}

struct Log {
    log: FollowedLog,
    /// One lock per origin: checking `old` and recording the new state
    /// happen as one step (the spec's rollback race), and a freeze is
    /// taken between two checkpoints, never during one.
    trust: Mutex<TrustSlot>,
}

struct Witness {
    dir: WitnessDir,
    cosigner: Cosigner,
    logs: HashMap<String, Log>,
    limits: Limits,
    options: Options,
    crash_after_record: bool,
}

/// Serves the witness in `dir` on `listener` until the process ends.
pub async fn serve(
    dir: &std::path::Path,
    listener: tokio::net::TcpListener,
    options: Options,
) -> Result<()> {
    let (dir, cosigner) = WitnessDir::open(dir)?;
    let limits = Limits::default();
    let now = now_secs();
    let mut logs = HashMap::new();
    for log in dir.logs()? {
        let origin = log.origin.clone();
        // A state that does not read is reported now, not at the first request.
        if let Err(error) = dir.cosigned(&origin) {
            tracing::error!(%origin, "{error:#}");
        }
        let trust = match dir.trust(&log, &limits) {
            Ok(None) => TrustSlot::NotFreezable,
            Ok(Some(trust)) => {
                if let Some(stop) = freeze::stops_at(trust.freeze(), options.freeze_grace_secs) {
                    tracing::warn!(
                        %origin,
                        tenant = trust.tenant(),
                        stops_at = stop,
                        stopped = now >= stop,
                        "The tenant is frozen: this witness does not cosign its log."
                    );
                }
                TrustSlot::Held(Box::new(trust))
            }
            Err(error) => {
                tracing::error!(%origin, "{error:#}");
                TrustSlot::Unreadable
            }
        };
        logs.insert(
            origin,
            Log {
                log,
                trust: Mutex::new(trust),
            },
        );
    }
    tracing::info!(
        witness = %cosigner.verifier().to_vkey(),
        logs = logs.len(),
        freeze_grace_secs = options.freeze_grace_secs,
        "Witness ready."
    );
    let checkpoint_limit = add_checkpoint::max_body_bytes(&limits);
    let freeze_limit = freeze::max_body_bytes(&limits);
    let witness = Arc::new(Witness {
        dir,
        cosigner,
        logs,
        limits,
        options,
        crash_after_record: std::env::var_os(CRASH_AFTER_RECORD_ENV).is_some(),
    });
    let app = Router::new()
        .route(
            "/add-checkpoint",
            post(add_checkpoint_route).layer(DefaultBodyLimit::max(checkpoint_limit)),
        )
        .route(
            freeze::PATH,
            post(freeze_route).layer(DefaultBodyLimit::max(freeze_limit)),
        )
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
    let Some(Log { log, trust }) = witness.logs.get(&origin) else {
        return refused(&Refusal::UnknownOrigin(format!(
            "this witness does not follow {origin}"
        )));
    };
    let trust = trust.lock().await;
    // One time for the freeze rule and the cosignature: a frozen log's
    // last cosignature is dated before its stop (RFD 0006's bound).
    let now = now_secs();
    // Frozen by the tenant's customer, and the grace has passed: nothing.
    match &*trust {
        TrustSlot::NotFreezable => {}
        TrustSlot::Held(held) => {
            if let Err(refusal) =
                freeze::may_cosign(held.freeze(), witness.options.freeze_grace_secs, now)
            {
                tracing::info!(%origin, "Refused to cosign: the tenant is frozen.");
                return refused(&refusal);
            }
        }
        TrustSlot::Unreadable => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this witness cannot read its record of the tenant's freeze; it cosigns nothing \
                 for this log\n",
            )
                .into_response();
        }
    }
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
    match witness.cosigner.cosign(&checkpoint.to_note_body(), now) {
        Ok(line) => {
            tracing::info!(%origin, size = state.size, "Cosigned.");
            line.into_response()
        }
        Err(error) => refused(&Refusal::BadRequest(error.to_string())),
    }
}

fn freeze_refused(refusal: &FreezeRefusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, refusal.body()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `POST /bulwark/v1/freeze`: a tenant's freeze (or unfreeze) and its root
/// chain, taken for every log of that tenant this witness can freeze,
/// recorded before the answer.
async fn freeze_route(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    let request = match freeze::parse_request(&body, &witness.limits) {
        Ok(request) => request,
        Err(refusal) => return freeze_refused(&refusal),
    };
    let tenant = request.statement.tenant.clone();
    let mut origins: Vec<&String> = witness
        .logs
        .iter()
        .filter(|(_, l)| l.log.freezable.as_ref().is_some_and(|f| f.tenant == tenant))
        .map(|(origin, _)| origin)
        .collect();
    origins.sort();
    if origins.is_empty() {
        return freeze_refused(&FreezeRefusal::UnknownLog(format!(
            "this witness follows no log of tenant {tenant} with a pinned root \
             (`bulwark witness add-log --root-fingerprint`)"
        )));
    }
    let grace = witness.options.freeze_grace_secs;
    let mut taken = String::new();
    let mut first_refusal = None;
    for origin in origins {
        let Some(log) = witness.logs.get(origin) else {
            continue;
        };
        let mut slot = log.trust.lock().await;
        let TrustSlot::Held(held) = &*slot else {
            tracing::error!(%origin, "A freeze for a log whose trust record does not read.");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("this witness cannot read its record of {origin}'s tenant trust\n"),
            )
                .into_response();
        };
        let now = now_secs();
        match held.offer(&request, now, &witness.limits) {
            Ok(next) => {
                // Recorded before it is acknowledged.
                if next.trust != **held
                    && let Err(error) = witness.dir.record_trust(origin, &next.trust)
                {
                    tracing::error!(%origin, "Cannot record the freeze: {error:#}");
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "this witness cannot record the freeze\n",
                    )
                        .into_response();
                }
                let text = freeze::taken_text(origin, &next, grace, now);
                tracing::warn!(%origin, %tenant, "{}", text.trim_end());
                taken.push_str(&text);
                *slot = TrustSlot::Held(Box::new(next.trust));
            }
            Err(refusal) => {
                tracing::warn!(%origin, %tenant, reason = %refusal.body().trim_end(), "Refused a freeze statement.");
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match first_refusal {
        Some(refusal) if taken.is_empty() => freeze_refused(&refusal),
        _ => taken.into_response(),
    }
}
