//! Starting and stopping a server: lock the data directory, open storage,
//! load TLS, bind both listeners, serve until told to stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use bulwark_protocol::Limits;
use bulwark_store::Store;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{info, warn};

use crate::config::{ServeMode, ServerConfig};
use crate::datadir::{DataDirLock, write_private_file};
use crate::gateway::{self, GatewayState};
use crate::presence::Presence;
use crate::state::{AppState, Inner};
use crate::tls::ServerTls;
use crate::transparency_log::checkpoints::LogSigner;

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub console_url: String,
    pub gateway_url: String,
    pub ca_fingerprint: [u8; 32],
    pub ca_pem: String,
    pub store: Store,
    /// A fresh one-time code for creating the first owner, while none exists.
    pub setup_code: Option<String>,
    pub presence: Presence,
    data_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    _lock: DataDirLock,
}

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not "no-referrer": under it browsers send `Origin: null` with a
    // form POST (Fetch §3.1, "append a request Origin header"), which the
    // origin test (`auth::session::cross_origin_write`: the session check
    // and every console form, the login form too) refuses. "same-origin"
    // still sends nothing to other sites.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The whole HTTP surface: API, OpenAPI document and console. Every error
/// has its side's shape: JSON under `/api/` (`api::with_api_errors`), an
/// HTML page on the console's routes (`console::router`), and so for a path
/// neither has ([`not_found`]).
pub fn app(state: AppState) -> Router {
    let (api, openapi) = crate::api::router();
    let openapi = Arc::new(openapi);
    let api = api.route(
        "/api/v1/openapi.json",
        axum::routing::get(move || {
            let openapi = openapi.clone();
            async move { axum::Json(openapi.as_ref().clone()) }
        }),
    );
    crate::api::with_api_errors(api)
        .merge(crate::console::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(crate::api::MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// No route has this path: a JSON 404 for the API's paths, a page otherwise.
async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        crate::api::error::ApiError::not_found("route").into_response()
    } else {
        crate::console::not_found_page()
    }
}

/// Starts the server described by `config`; returns once both listeners are bound.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let store = Store::open(&config.database_url())
        .await
        .context("cannot open the database")?;
    let tls = ServerTls::load_or_create(&config.data_dir, &config.public_hostnames)?;
    let log = Arc::new(LogSigner::load_or_create(
        &config.data_dir,
        &config.public_hostnames,
    )?);
    let setup_code = crate::auth::flows::issue_setup_code(&store).await?;
    let decoy_key = {
        use rand::RngCore;
        let mut candidate = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut candidate);
        store
            .shared_secret("login_decoy", candidate, crate::now_millis())
            .await
            .context("cannot read the deployment's login decoy key")?
    };

    let http_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let gateway_listener = gateway::listen(config.gateway_listen)
        .with_context(|| format!("cannot listen on {} (agent gateway)", config.gateway_listen))?;
    let http_addr = http_listener.local_addr()?;
    let gateway_addr = gateway_listener.local_addr()?;

    let console_url = match config.mode {
        ServeMode::LoopbackHttp => format!("http://localhost:{}/", http_addr.port()),
        ServeMode::Https => format!("https://{}/", host_for(&config, http_addr)),
    };
    let gateway_url = format!("https://{}", host_for(&config, gateway_addr));

    let cap = crate::open_files::agent_cap(
        crate::open_files::raise_to_hard_limit(),
        config.max_agent_connections,
    );
    info!(
        connections = cap.connections,
        "Accepting up to {} agents: {}.", cap.connections, cap.reason
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let handshakes = gateway::admission::Admission::handshakes(config.max_agent_handshakes, cores);
    info!(
        handshakes,
        "Running up to {handshakes} agent handshakes at once ({}).",
        match config.max_agent_handshakes {
            Some(_) => "max_agent_handshakes".to_owned(),
            None => format!(
                "{} per core, {cores} cores",
                gateway::admission::HANDSHAKES_PER_CORE
            ),
        }
    );

    let bus = match &config.bus_url {
        Some(url) => {
            crate::bus::Bus::connect_nats(url, &hex::encode(&tls.ca_fingerprint[..8])).await?
        }
        None => crate::bus::Bus::in_process(),
    };
    let presence = Presence::new(bus.clone());
    let state = AppState::new(Inner {
        store: store.clone(),
        presence: presence.clone(),
        ca_fingerprint: tls.ca_fingerprint,
        gateway_url: gateway_url.clone(),
        log: log.clone(),
        auth: crate::auth::Auth {
            store: store.clone(),
            session_policy: Default::default(),
            rp_id: crate::auth::passkey::rp_id_for(config.mode, &config.public_hostnames),
            passkeys: crate::auth::ceremonies::Ceremonies::with_decoy_key(decoy_key),
        },
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    let acceptor = TlsAcceptor::from(tls.rustls_config.clone());
    let witnesses = Arc::new(crate::transparency_log::witnessing::WitnessClient::new()?);
    let notifier = Arc::new(crate::alerts::notify::Notifier::new(
        store.clone(),
        config.smtp.as_ref(),
        console_url.clone(),
    )?);
    let gateway_state = Arc::new(GatewayState {
        store: store.clone(),
        presence: presence.clone(),
        acceptor: acceptor.clone(),
        limits: Limits::default(),
        heartbeat: Duration::from_secs(u64::from(config.heartbeat_secs)),
        slots: Arc::new(Semaphore::new(cap.connections)),
        log: log.clone(),
        witnesses: witnesses.clone(),
        alert_nudge: notifier.nudge.clone(),
        downloads: gateway::releases::download_slots(),
        deliveries: gateway::fanout::Recorder::start(store.clone()),
        proofs: Default::default(),
        admission: gateway::admission::Admission::new(
            handshakes,
            gateway::admission::ADMISSION_WAIT,
        ),
    });
    tasks.spawn(gateway::serve(
        gateway_listener,
        gateway_state,
        shutdown_rx.clone(),
    ));

    tasks.spawn(gateway::record_connected(
        store.clone(),
        presence.clone(),
        Duration::from_secs(u64::from(config.heartbeat_secs)),
        shutdown_rx.clone(),
    ));
    tasks.spawn(crate::presence::follow_bus(
        presence.clone(),
        shutdown_rx.clone(),
    ));
    // Every node heartbeats; each fleet-wide duty runs on one node at a
    // time (RFD 0018; with SQLite, at once on the only node).
    tasks.spawn(crate::duties::heartbeat(
        store.clone(),
        presence.clone(),
        shutdown_rx.clone(),
    ));
    let duties = crate::duties::Duties::new(store.clone(), bus.node(), shutdown_rx.clone());
    let s = store.clone();
    duties.spawn(&mut tasks, "expiry", move |stop, _| {
        expire_jobs(s.clone(), stop)
    });
    let (s, l) = (store.clone(), log.clone());
    duties.spawn(&mut tasks, "checkpoints", move |stop, _| {
        crate::transparency_log::checkpoints::sign_grown_logs(l.clone(), s.clone(), stop)
    });
    let (s, l) = (store.clone(), log.clone());
    duties.spawn(&mut tasks, "witnessing", move |stop, _| {
        crate::transparency_log::witnessing::witness_logs(
            l.clone(),
            witnesses.clone(),
            s.clone(),
            stop,
        )
    });
    let (s, l) = (store.clone(), log.clone());
    let (data_dir, retention_days) = (config.data_dir.clone(), config.retention_days);
    let sinks: Vec<String> = config
        .siem
        .iter()
        .map(|sink| sink.name().to_owned())
        .collect();
    duties.spawn(&mut tasks, "archiving", move |stop, _| {
        crate::transparency_log::retention::archive_old_entries(
            l.clone(),
            s.clone(),
            data_dir.clone(),
            retention_days,
            sinks.clone(),
            stop,
        )
    });
    crate::transparency_log::siem::spawn(&store, &config.siem, &duties, &mut tasks)?;
    let n = notifier.clone();
    duties.spawn(&mut tasks, "alert-mail", move |stop, fence| {
        crate::alerts::notify::run(n.clone(), fence, stop)
    });
    let (s, p, n) = (store.clone(), presence.clone(), notifier.clone());
    let offline_after = config.offline_after();
    duties.spawn(&mut tasks, "offline-watch", move |stop, _| {
        crate::alerts::watch_offline(s.clone(), p.clone(), offline_after, n.clone(), stop)
    });
    let s = store.clone();
    duties.spawn(&mut tasks, "metrics-compaction", move |stop, _| {
        crate::metrics_history::compact(s.clone(), stop)
    });
    let (s, n) = (store.clone(), notifier);
    duties.spawn(&mut tasks, "alert-raising", move |stop, _| {
        crate::alerts::raise_alerts(s.clone(), n.clone(), stop)
    });
    let (s, p, node) = (store.clone(), presence.clone(), bus.node().to_owned());
    duties.spawn(&mut tasks, "scheduler", move |stop, _| {
        crate::scheduler::run(s.clone(), p.clone(), node.clone(), stop)
    });

    let https = (config.mode == ServeMode::Https).then_some(acceptor);
    tasks.spawn(serve_http(http_listener, https, app(state), shutdown_rx));

    let runtime_file = serde_json::json!({
        "console_url": console_url,
        "gateway_url": gateway_url,
        "pid": std::process::id(),
    });
    write_private_file(
        &config.data_dir.join("server.json"),
        runtime_file.to_string().as_bytes(),
    )?;
    info!(%console_url, %gateway_url, backend = ?store.backend(), bus = ?bus.transport(), node = bus.node(), "Bulwark server started.");

    Ok(RunningServer {
        console_url,
        gateway_url,
        ca_fingerprint: tls.ca_fingerprint,
        ca_pem: tls.ca_pem,
        store,
        setup_code,
        presence,
        data_dir: config.data_dir,
        shutdown,
        tasks,
        _lock: lock,
    })
}

fn host_for(config: &ServerConfig, addr: SocketAddr) -> String {
    match config.public_hostnames.first() {
        Some(name) => format!("{name}:{}", addr.port()),
        None if addr.ip().is_unspecified() || addr.ip().is_loopback() => {
            format!("127.0.0.1:{}", addr.port())
        }
        None => addr.to_string(),
    }
}

impl RunningServer {
    /// Stops accepting, closes agent connections, closes storage, removes
    /// the runtime file and releases the data directory.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        // Give agent sessions a moment to record their last-seen time.
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        self.store.close().await;
        let _ = std::fs::remove_file(self.data_dir.join("server.json"));
        info!("Bulwark server stopped.");
    }
}

async fn serve_http(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        warn!(%error, "HTTP accept failed.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let app = app.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    let service = app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request.extensions_mut().insert(ConnectInfo(peer));
                        request.map(axum::body::Body::new)
                    });
                    let service = hyper_util::service::TowerToHyperService::new(service);
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(15));
                    let result = match tls {
                        Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => builder.serve_connection(TokioIo::new(stream), service).with_upgrades().await,
                            _ => return,
                        },
                        None => builder.serve_connection(TokioIo::new(tcp), service).with_upgrades().await,
                    };
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "HTTP connection ended with an error.");
                    }
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
            _ = shutdown.changed() => break,
        }
    }
    connections.abort_all();
}

/// Marks jobs past their validity as expired, once a minute. Agents refuse
/// an expired job anyway; this keeps what people see true. Also drops
/// expired passkey ceremonies and device sign-ins (RFD 0018).
async fn expire_jobs(store: Store, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Each expiry is audited by the store in its own transaction.
                if let Err(error) = store.expire_jobs(crate::now_millis()).await {
                    tracing::warn!(%error, "Cannot expire jobs.");
                }
                if let Err(error) = store.expire_trust_proposals(crate::now_millis()).await {
                    tracing::warn!(%error, "Cannot expire trust proposals.");
                }
                let now = crate::now_millis();
                let forget = now - crate::auth::cli_sign_in::KEEP_EXPIRED_MS;
                if let Err(error) = store.sweep_sign_in_state(now, forget).await {
                    tracing::warn!(%error, "Cannot sweep expired sign-in ceremonies.");
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
