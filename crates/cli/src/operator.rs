//! The operator CLI: `bulwark login`, `logout`, `tenant …` and `device …`.
//!
//! It speaks the same JSON API as the console (`/api/v1/…`) with a bearer
//! token kept in `$BULWARK_CONFIG_DIR/credentials.json` (default
//! `~/.config/bulwark`), a file only its owner can read. MFA is always
//! required: interactive login prompts for the password (without echo) and
//! the TOTP code; automation passes `--password-stdin` and `--otp CODE`.
//!
//! TLS is rustls with the ring provider only, trusting the webpki roots plus
//! an optional `--ca-cert` (a private CA), which is remembered with the token.

use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bulwark_protocol::token::fingerprint_text;
use bulwark_server::console::human_bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Operator commands, flattened into the top-level `bulwark` command.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Log in to a Bulwark server: password and TOTP code (MFA is always
    /// required), or `--device`: a code approved in the console with a passkey.
    Login {
        /// Server URL, e.g. https://bulwark.example.net or http://localhost:8080.
        #[arg(long, env = "BULWARK_SERVER", value_name = "URL")]
        server: String,
        /// Account name; prompted for when stdin is a terminal.
        #[arg(long)]
        username: Option<String>,
        /// Read the password from stdin (for automation; requires --otp).
        #[arg(long)]
        password_stdin: bool,
        /// The current TOTP code from the authenticator app.
        #[arg(long, value_name = "CODE")]
        otp: Option<String>,
        /// PEM file with a CA certificate to trust for https (a private CA).
        #[arg(long, value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// Sign in with a code approved in the console with a passkey (RFC 8628 device
        /// flow): prints a code and a URL, then waits for the approval.
        #[arg(long, conflicts_with_all = ["username", "password_stdin", "otp"])]
        device: bool,
    },
    /// End the session on the server and forget the stored token.
    Logout,
    /// Tenants (customers).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Managed devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Signing keys held on this machine (never sent to the server).
    Keys {
        #[command(subcommand)]
        command: crate::keys::KeysCommand,
    },
    /// A tenant's signed policy: who may sign which jobs, quorums, allow-list.
    Policy {
        #[command(subcommand)]
        command: crate::trust::PolicyCommand,
    },
    /// Trust statements signed by several people: list, check and sign proposals.
    Trust {
        #[command(subcommand)]
        command: crate::proposals::TrustCommand,
    },
    /// Signed jobs: run a script on devices, approve, follow results.
    Job {
        #[command(subcommand)]
        command: crate::jobs::JobCommand,
    },
    /// Transparency logs: verify one end to end, or export it for offline checks.
    Audit {
        #[command(subcommand)]
        command: crate::audit::AuditCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// List the tenants with their device counts.
    List {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Issue a one-time enrolment token for a new agent.
    EnrollToken {
        #[arg(long)]
        tenant: String,
        /// How long the token stays valid (the server's default when omitted).
        #[arg(long, value_name = "MINUTES")]
        ttl_minutes: Option<u32>,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Trust(crate::trust::TenantTrustCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// List the devices of a tenant.
    List {
        #[arg(long)]
        tenant: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one device with its inventory.
    Show {
        /// Device id (from `bulwark device list`).
        id: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Login {
            server,
            username,
            password_stdin,
            otp,
            ca_cert,
            device,
        } => {
            if device {
                login_device(server, ca_cert).await
            } else {
                login(server, username, password_stdin, otp, ca_cert).await
            }
        }
        OperatorCommand::Logout => logout().await,
        OperatorCommand::Keys { command } => crate::keys::run(command).await,
        OperatorCommand::Policy { command } => crate::trust::run_policy(command).await,
        OperatorCommand::Tenant {
            command: TenantCommand::Trust(command),
        } => crate::trust::run_tenant(command).await,
        OperatorCommand::Job { command } => crate::jobs::run(command).await,
        OperatorCommand::Audit { command } => crate::audit::run(command).await,
        OperatorCommand::Trust { command } => crate::proposals::run(command).await,
        OperatorCommand::Tenant {
            command: TenantCommand::List { json },
        } => {
            let tenants = Session::load()?.get("/api/v1/tenants").await?;
            if json {
                print_json(&tenants)
            } else {
                print_tenants(&tenants)
            }
        }
        OperatorCommand::Tenant {
            command:
                TenantCommand::EnrollToken {
                    tenant,
                    ttl_minutes,
                    json,
                },
        } => {
            let body = match ttl_minutes {
                Some(minutes) => json!({ "ttl_minutes": minutes }),
                None => json!({}),
            };
            let path = format!(
                "/api/v1/tenants/{}/enrollment-tokens",
                path_segment(&tenant)?
            );
            let session = Session::load()?;
            let mut reply = session.post(&path, &body).await?;
            let pinned = pinned_enrolment(&session, &tenant, &reply).await?;
            if json {
                reply["root_fingerprint"] = json!(fingerprint_text(&pinned.root));
                reply["log_key"] = json!(pinned.log_key);
                reply["install_command"] = json!(pinned.install_command(&reply)?);
                print_json(&reply)
            } else {
                print_enroll_token(&reply, &pinned)
            }
        }
        OperatorCommand::Device {
            command: DeviceCommand::List { tenant, json },
        } => {
            let path = format!("/api/v1/tenants/{}/devices", path_segment(&tenant)?);
            let devices = Session::load()?.get(&path).await?;
            if json {
                print_json(&devices)
            } else {
                print_devices(&devices)
            }
        }
        OperatorCommand::Device {
            command: DeviceCommand::Show { id, json },
        } => {
            let device = Session::load()?
                .get(&format!("/api/v1/devices/{}", path_segment(&id)?))
                .await?;
            if json {
                print_json(&device)
            } else {
                print_device(&device)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Login and the stored credentials
// ---------------------------------------------------------------------------

async fn login(
    server: String,
    username: Option<String>,
    password_stdin: bool,
    otp: Option<String>,
    ca_cert: Option<PathBuf>,
) -> Result<()> {
    let server = normalize_server(&server)?;
    let ca_cert_pem = match &ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?,
        ),
        None => None,
    };
    // Fail on a bad CA file before asking for secrets.
    let client = http_client(ca_cert_pem.as_deref())?;

    let interactive = std::io::stdin().is_terminal();
    let (username, password, otp) = if password_stdin {
        let Some(otp) = otp else {
            bail!(
                "--otp CODE is required with --password-stdin: every login needs the current TOTP code (MFA is always on)"
            );
        };
        let username = username.context("--username is required with --password-stdin")?;
        (username, read_password_from_stdin()?, otp)
    } else {
        if !interactive {
            bail!(
                "stdin is not a terminal, so the password cannot be prompted for: \
                 pass --password-stdin (password on stdin) and --otp CODE"
            );
        }
        let username = match username {
            Some(name) => name,
            None => prompt_line("Username: ")?,
        };
        let password = rpassword::prompt_password("Password: ").context("reading the password")?;
        let otp = match otp {
            Some(code) => code,
            None => prompt_line("TOTP code: ")?,
        };
        (username, password, otp)
    };
    ensure!(!username.is_empty(), "the username is empty");
    ensure!(!password.is_empty(), "the password is empty");
    let otp: String = otp.chars().filter(|c| !c.is_whitespace()).collect();
    ensure!(!otp.is_empty(), "the TOTP code is empty");

    let spinner = spinner("Logging in…");
    let body = json!({ "username": username, "password": password, "otp": otp });
    let reply = send(
        client
            .post(format!("{server}/api/v1/auth/login"))
            .json(&body),
        "login",
    )
    .await;
    spinner.finish_and_clear();
    let reply = reply?;
    let token = reply["token"]
        .as_str()
        .context("the server's login reply has no token")?;

    let credentials = Credentials {
        server: server.clone(),
        token: token.to_owned(),
        ca_cert_pem,
    };
    let path = credentials.save()?;
    match reply["expires_at"].as_str() {
        Some(expires) => {
            println!("Logged in to {server} as {username} (session expires {expires}).")
        }
        None => println!("Logged in to {server} as {username}."),
    }
    eprintln!("Credentials saved to {}.", path.display());
    Ok(())
}

/// `bulwark login --device`: RFC 8628. Asks for a code, prints it with the
/// console URL, and polls (at the interval the server names, longer after
/// `slow_down`) until an operator approves it with a passkey, denies it, or
/// it expires.
async fn login_device(server: String, ca_cert: Option<PathBuf>) -> Result<()> {
    let server = normalize_server(&server)?;
    let ca_cert_pem = match &ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?,
        ),
        None => None,
    };
    let client = http_client(ca_cert_pem.as_deref())?;
    let started = send(
        client
            .post(format!("{server}/api/v1/auth/device"))
            .json(&json!({})),
        "device sign-in",
    )
    .await?;
    let device_code = started["device_code"]
        .as_str()
        .context("the server's reply has no device_code")?
        .to_owned();
    let user_code = started["user_code"]
        .as_str()
        .context("the server's reply has no user_code")?;
    let path = started["verification_uri"].as_str().unwrap_or("/device");
    let expires_in = started["expires_in"].as_u64().unwrap_or(600);
    let mut interval = started["interval"].as_u64().unwrap_or(5).clamp(1, 60);
    println!("To sign in, open {server}{path} and enter the code:");
    println!();
    println!("    {user_code}");
    println!();
    println!(
        "Approve it there with your passkey (the code expires in {} minutes).",
        expires_in / 60
    );
    let _ = std::io::stdout().flush();
    let spinner = spinner("Waiting for approval in the console…");
    let deadline = std::time::Instant::now() + Duration::from_secs(expires_in + 5);
    let reply = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("the code expired before it was approved: run `bulwark login --device` again");
        }
        let response = client
            .post(format!("{server}/api/v1/auth/device/token"))
            .json(&json!({
                "device_code": device_code,
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            }))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // A network blip: keep polling until the code expires.
            Err(_) => continue,
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            break body;
        }
        match body["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += 5,
            Some("access_denied") => {
                spinner.finish_and_clear();
                bail!("the sign-in was denied in the console");
            }
            Some("expired_token") => {
                spinner.finish_and_clear();
                bail!(
                    "the code expired before it was approved: run `bulwark login --device` again"
                );
            }
            Some("invalid_grant") => {
                spinner.finish_and_clear();
                bail!(
                    "the server no longer knows this sign-in (was it restarted?): run `bulwark login --device` again"
                );
            }
            _ => {
                spinner.finish_and_clear();
                bail!("the server refused the sign-in (HTTP {status}): {body}");
            }
        }
    };
    spinner.finish_and_clear();
    let token = reply["access_token"]
        .as_str()
        .context("the server's reply has no access_token")?;
    let credentials = Credentials {
        server: server.clone(),
        token: token.to_owned(),
        ca_cert_pem,
    };
    let saved = credentials.save()?;
    match reply["expires_at"].as_str() {
        Some(expires) => println!("Logged in to {server} (session expires {expires})."),
        None => println!("Logged in to {server}."),
    }
    eprintln!("Credentials saved to {}.", saved.display());
    Ok(())
}

async fn logout() -> Result<()> {
    let path = Credentials::path()?;
    let Some(credentials) = Credentials::load_from(&path)? else {
        println!("Not logged in.");
        return Ok(());
    };
    let session = Session::new(credentials)?;
    let result = session.post_empty("/api/v1/auth/logout").await;
    // Forget the token whatever the server said: a revoked or expired session
    // is logged out already, and an unreachable server must not keep it here.
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    match result {
        Ok(()) => println!("Logged out of {}.", session.credentials.server),
        Err(error) if is_unauthorized(&error) => {
            println!(
                "Logged out (the session had already ended on {}).",
                session.credentials.server
            )
        }
        Err(error) => {
            return Err(error.context(
                "the stored token was removed, but the server could not be told to end the session",
            ));
        }
    }
    Ok(())
}

fn read_password_from_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .context("reading the password from stdin")?;
    // Only the line ending is stripped: spaces can be part of a password.
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_owned())
}

pub(crate) fn prompt_line(prompt: &str) -> Result<String> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading from the terminal")?;
    Ok(line.trim().to_owned())
}

/// Accepts `https://host[:port][/]`, and `http://` only to a loopback host
/// (the quickstart console): a password must not cross a network in clear.
fn normalize_server(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").with_context(|| {
        format!("server URL {url:?} must start with https:// (or http://localhost)")
    })?;
    let authority = rest.split('/').next().unwrap_or_default();
    ensure!(!authority.is_empty(), "server URL {url:?} has no host");
    match scheme {
        "https" => {}
        "http" => {
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => authority
                    .rsplit_once(':')
                    .map_or(authority, |(host, _)| host),
            };
            ensure!(
                matches!(host, "localhost" | "127.0.0.1" | "::1"),
                "refusing plain http:// to {host}: passwords and tokens would cross the network unencrypted; use https://"
            );
        }
        other => {
            bail!("server URL {url:?} has scheme {other:?}; use https:// (or http://localhost)")
        }
    }
    Ok(url.to_owned())
}

/// What `bulwark login` stores: server, bearer token, and the CA to trust.
#[derive(Serialize, Deserialize)]
pub(crate) struct Credentials {
    server: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert_pem: Option<String>,
}

impl Credentials {
    pub(crate) fn dir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("BULWARK_CONFIG_DIR").filter(|dir| !dir.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
            return Ok(PathBuf::from(config).join("bulwark"));
        }
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .context("cannot find the configuration directory: set BULWARK_CONFIG_DIR or HOME")?;
        Ok(PathBuf::from(home).join(".config").join("bulwark"))
    }

    fn path() -> Result<PathBuf> {
        Ok(Self::dir()?.join("credentials.json"))
    }

    fn load_from(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let credentials = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; run `bulwark login` again", path.display()))?;
        Ok(Some(credentials))
    }

    /// Writes the file with mode 0600 (in a 0700 directory), atomically.
    fn save(&self) -> Result<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let dir = Self::dir()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("credentials.json");
        let temp = dir.join(".credentials.json.tmp");
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        // The mode given to open() is reduced by the umask, never widened;
        // set it explicitly anyway so the file is exactly 0600.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(&serde_json::to_vec_pretty(self)?)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A logged-in client: stored credentials plus an HTTP client that trusts
/// their CA.
pub(crate) struct Session {
    credentials: Credentials,
    client: reqwest::Client,
}

impl Session {
    pub(crate) fn load() -> Result<Self> {
        let path = Credentials::path()?;
        let credentials = Credentials::load_from(&path)?
            .context("not logged in: run `bulwark login --server URL` first")?;
        Self::new(credentials)
    }

    /// The server's URL, as given at login.
    pub(crate) fn server(&self) -> &str {
        &self.credentials.server
    }

    fn new(credentials: Credentials) -> Result<Self> {
        let client = http_client(credentials.ca_cert_pem.as_deref())?;
        Ok(Self {
            credentials,
            client,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.credentials.server))
            .bearer_auth(&self.credentials.token)
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.authed(send(self.request(reqwest::Method::GET, path), path).await)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.authed(send(self.request(reqwest::Method::POST, path).json(body), path).await)
    }

    /// A privileged action: when the server asks for a fresh MFA check
    /// (403 `step_up_required`), confirm a TOTP code (`otp`, or prompted on a
    /// terminal) and try once more.
    pub(crate) async fn post_privileged(
        &self,
        path: &str,
        body: &Value,
        otp: Option<&str>,
    ) -> Result<Value> {
        match self.post(path, body).await {
            Err(error) if is_step_up_required(&error) => {
                let code = match otp {
                    Some(code) => code.to_owned(),
                    None if std::io::stdin().is_terminal() => {
                        prompt_line("This action needs a fresh MFA check. Authenticator code: ")?
                    }
                    None => {
                        return Err(
                            error.context("this action needs a fresh MFA check: pass --otp CODE")
                        );
                    }
                };
                self.post_empty_json("/api/v1/auth/step-up", &json!({ "otp": code.trim() }))
                    .await
                    .context("the MFA check failed")?;
                self.post(path, body).await
            }
            other => other,
        }
    }

    async fn post_empty_json(&self, path: &str, body: &Value) -> Result<()> {
        self.authed(send(self.request(reqwest::Method::POST, path).json(body), path).await)
            .map(drop)
    }

    async fn post_empty(&self, path: &str) -> Result<()> {
        send(self.request(reqwest::Method::POST, path), path)
            .await
            .map(drop)
    }

    /// Turns a 401 into advice to log in again.
    fn authed(&self, result: Result<Value>) -> Result<Value> {
        result.map_err(|error| {
            if is_unauthorized(&error) {
                error.context(format!(
                    "the session with {} has ended (expired or logged out); run `bulwark login` again",
                    self.credentials.server
                ))
            } else {
                error
            }
        })
    }
}

/// An error reply from the API, shown with the server's own message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: reqwest::StatusCode,
    code: Option<String>,
    message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "{} (HTTP {}, {code})",
                self.message,
                self.status.as_u16()
            ),
            None => write!(f, "{} (HTTP {})", self.message, self.status.as_u16()),
        }
    }
}

impl std::error::Error for ApiError {}

fn is_step_up_required(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|api| api.code.as_deref() == Some("step_up_required"))
}

fn is_unauthorized(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|api| api.status == reqwest::StatusCode::UNAUTHORIZED)
}

/// Sends a request; a 2xx reply is returned as JSON (`null` when empty),
/// anything else becomes an [`ApiError`] carrying the server's message.
async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
    let response = request.send().await.map_err(|error| {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let _ = write!(text, ": {cause}");
            source = cause.source();
        }
        anyhow!("could not reach the server ({what}): {text}")
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the server's reply ({what})"))?;
    if status.is_success() {
        if body.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&body)
            .with_context(|| format!("the server's reply ({what}) is not JSON"));
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let error = parsed.as_ref().map(|value| &value["error"]);
    let message = error
        .and_then(|error| error["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned()
        });
    let code = error
        .and_then(|error| error["code"].as_str())
        .map(str::to_owned);
    Err(ApiError {
        status,
        code,
        message,
    }
    .into())
}

/// reqwest over rustls with the ring provider (never aws-lc), trusting the
/// webpki roots and, if given, the PEM CA certificates of a private CA.
fn http_client(ca_cert_pem: Option<&str>) -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_cert_pem {
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.context("the CA certificate file is not valid PEM")?;
            roots
                .add(cert)
                .context("the CA certificate is not a usable X.509 certificate")?;
            added += 1;
        }
        ensure!(
            added > 0,
            "the CA certificate file holds no PEM CERTIFICATE block"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("bulwark-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")
}

/// Percent-encodes a user-given id or name for use as one path segment.
pub(crate) fn path_segment(text: &str) -> Result<String> {
    ensure!(!text.is_empty(), "an empty name or id was given");
    // URL parsers resolve these (even percent-encoded) instead of sending them.
    ensure!(
        text != "." && text != "..",
        "{text:?} is not a valid name or id"
    );
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    Ok(out)
}

pub(crate) fn spinner(message: &'static str) -> indicatif::ProgressBar {
    // indicatif draws to stderr and hides itself when that is not a terminal.
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

pub(crate) fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Whether to colour stdout: a terminal, and NO_COLOR unset.
pub(crate) fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A table cell: its text, and an optional ANSI colour applied after padding
/// so that alignment counts only visible characters.
pub(crate) struct Cell {
    text: String,
    colour: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self { text, colour: None }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            colour: None,
        }
    }
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const RESET: &str = "\x1b[0m";

pub(crate) fn render_table(headers: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.text.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<Cell> = headers.iter().map(|h| Cell::from(*h)).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let last = i + 1 == row.len();
            let padded = if last {
                cell.text.clone()
            } else {
                format!("{:<width$}  ", cell.text)
            };
            match (colour, cell.colour) {
                (true, Some(code)) => {
                    let (text, pad) = padded.split_at(cell.text.len());
                    let _ = write!(line, "{code}{text}{RESET}{pad}");
                }
                _ => line.push_str(&padded),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Text of a JSON scalar for a table cell (`-` when absent).
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status_cell(online: &Value) -> Cell {
    match online.as_bool() {
        Some(true) => Cell {
            text: "online".to_owned(),
            colour: Some(GREEN),
        },
        Some(false) => Cell {
            text: "offline".to_owned(),
            colour: Some(RED),
        },
        None => Cell::from("-"),
    }
}

pub(crate) fn items(value: &Value) -> Result<&Vec<Value>> {
    value
        .as_array()
        .with_context(|| format!("expected a JSON list from the server, got {value}"))
}

fn print_tenants(tenants: &Value) -> Result<()> {
    let tenants = items(tenants)?;
    if tenants.is_empty() {
        println!("No tenants.");
        return Ok(());
    }
    let rows: Vec<Vec<Cell>> = tenants
        .iter()
        .map(|t| {
            vec![
                text(&t["name"]).into(),
                text(&t["device_count"]).into(),
                text(&t["online_count"]).into(),
                text(&t["id"]).into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(&["NAME", "DEVICES", "ONLINE", "ID"], &rows, use_colour())
    );
    Ok(())
}

fn print_devices(devices: &Value) -> Result<()> {
    let devices = items(devices)?;
    if devices.is_empty() {
        println!("No devices. Enrol one with `bulwark tenant enroll-token --tenant NAME`.");
        return Ok(());
    }
    let rows: Vec<Vec<Cell>> = devices
        .iter()
        .map(|d| {
            vec![
                text(&d["id"]).into(),
                text(&d["hostname"]).into(),
                status_cell(&d["online"]),
                text(&d["os"]).into(),
                text(&d["agent_version"]).into(),
                text(&d["last_seen_at"]).into(),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            &["ID", "HOSTNAME", "STATUS", "OS", "AGENT", "LAST SEEN"],
            &rows,
            use_colour()
        )
    );
    Ok(())
}

/// The trust anchors an enrolment carries, from this machine's pins.
struct PinnedEnrolment {
    root: [u8; 32],
    log_key: String,
}

impl PinnedEnrolment {
    fn install_command(&self, reply: &Value) -> Result<String> {
        let token = reply["token"]
            .as_str()
            .context("the server's reply has no token")?;
        Ok(format!(
            "bulwark-agent enroll --server https://GATEWAY:PORT --token {token} --root {} --log-key {}",
            hex::encode(self.root),
            self.log_key
        ))
    }
}

/// The token's root must be the root this machine pinned for the tenant,
/// and the server's log key the one pinned for the server: the install
/// command then carries the pins, and the agent refuses a token or a
/// server that disagrees with them.
async fn pinned_enrolment(
    session: &Session,
    tenant: &str,
    reply: &Value,
) -> Result<PinnedEnrolment> {
    let token = bulwark_protocol::token::EnrollToken::parse(
        reply["token"]
            .as_str()
            .context("the server's reply has no token")?,
    )
    .context("the server's token is malformed")?;
    let trust = crate::trust::fetch_trust(session, tenant).await?;
    let root = trust
        .fingerprint
        .with_context(|| format!("tenant {tenant} has no trust root yet"))?;
    ensure!(
        token.root_fingerprint == root,
        "STOP: the server issued a token that pins trust root {}, but tenant {tenant}'s root is {} \
         (pinned on this machine). An agent enrolled with it would obey another root: do not use it",
        fingerprint_text(&token.root_fingerprint),
        fingerprint_text(&root)
    );
    let served = session.get("/api/v1/log/key").await?;
    let served = served["vkey"]
        .as_str()
        .context("the server's log key reply has no vkey")?
        .trim()
        .to_owned();
    if let (path, Some(_)) = crate::pins::check_log_key(session.server(), &served)? {
        eprintln!(
            "First use: pinned the log key {served}\n  in {path}. Compare it with the MSP out of band."
        );
    }
    Ok(PinnedEnrolment {
        root,
        log_key: served,
    })
}

fn print_enroll_token(reply: &Value, pinned: &PinnedEnrolment) -> Result<()> {
    let token = reply["token"]
        .as_str()
        .context("the server's reply has no token")?;
    println!(
        "Enrolment token for tenant {} (one use, expires {}):",
        text(&reply["tenant"]),
        text(&reply["expires_at"])
    );
    println!();
    println!("  {token}");
    println!();
    println!(
        "Server CA fingerprint:   {}",
        text(&reply["ca_fingerprint"])
    );
    println!(
        "Tenant root (pinned):    {}",
        fingerprint_text(&pinned.root)
    );
    println!("Log key (pinned):        {}", pinned.log_key);
    println!("On the device, run:");
    println!("  {}", pinned.install_command(reply)?);
    Ok(())
}

fn print_device(device: &Value) -> Result<()> {
    let colour = use_colour();
    let status = status_cell(&device["online"]);
    let status = match (colour, status.colour) {
        (true, Some(code)) => format!("{code}{}{RESET}", status.text),
        _ => status.text,
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", text(&device["hostname"]));
    let fields = [
        ("ID", text(&device["id"])),
        ("Tenant", text(&device["tenant"])),
        ("Status", status),
        ("OS", text(&device["os"])),
        ("Agent", text(&device["agent_version"])),
        ("Enrolled", text(&device["enrolled_at"])),
        ("Last seen", text(&device["last_seen_at"])),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:<10} {value}");
    }
    match &device["inventory"] {
        Value::Object(sections) => render_inventory(&mut out, sections, unix_now()),
        _ => {
            let _ = writeln!(out, "\nNo inventory reported yet.");
        }
    }
    print!("{out}");
    Ok(())
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The inventory sections people look for, in a fixed order and readable
/// units; sections this version does not know are shown generically.
fn render_inventory(out: &mut String, sections: &serde_json::Map<String, Value>, now: u64) {
    let known = ["system", "cpu", "memory", "disks", "network", "users"];
    let system = &sections["system"];
    if system.is_object() {
        let os = format!(
            "{} {}",
            text(&system["os_name"]),
            text(&system["os_version"])
        );
        let uptime = system["boot_time"].as_u64().map_or_else(
            || "-".to_owned(),
            |boot| human_duration(now.saturating_sub(boot)),
        );
        let _ = writeln!(out, "\nSystem");
        for (name, value) in [
            ("OS", os.trim().to_owned()),
            ("Kernel", text(&system["kernel_version"])),
            ("Arch", text(&system["architecture"])),
            ("Uptime", uptime),
        ] {
            let _ = writeln!(out, "  {name:<10} {value}");
        }
    }
    let cpu = &sections["cpu"];
    let memory = &sections["memory"];
    if cpu.is_object() || memory.is_object() {
        let _ = writeln!(out, "\nCPU and memory");
        if cpu.is_object() {
            let physical = cpu["physical_cores"]
                .as_u64()
                .map_or_else(String::new, |n| format!(" ({n} physical)"));
            let _ = writeln!(
                out,
                "  {:<10} {} · {} cores{physical}",
                "CPU",
                text(&cpu["model"]),
                text(&cpu["logical_cores"])
            );
        }
        if memory.is_object() {
            let used_of = |total: &Value, free: &Value| match (total.as_u64(), free.as_u64()) {
                (Some(total), Some(free)) => format!(
                    "{} used of {}",
                    human_bytes(total.saturating_sub(free)),
                    human_bytes(total)
                ),
                _ => "-".to_owned(),
            };
            let ram = used_of(&memory["total_bytes"], &memory["available_bytes"]);
            let swap = used_of(&memory["swap_total_bytes"], &memory["swap_free_bytes"]);
            let _ = writeln!(out, "  {:<10} {ram}", "Memory");
            let _ = writeln!(out, "  {:<10} {swap}", "Swap");
        }
    }
    if let Some(disks) = sections["disks"].as_array() {
        let _ = writeln!(out, "\nDisks");
        let rows: Vec<Vec<Cell>> = disks
            .iter()
            .map(|d| {
                let used = match (d["total_bytes"].as_u64(), d["available_bytes"].as_u64()) {
                    (Some(total), Some(free)) if total > 0 => {
                        format!("{}%", total.saturating_sub(free) * 100 / total)
                    }
                    _ => "-".to_owned(),
                };
                vec![
                    text(&d["mount_point"]).into(),
                    text(&d["name"]).into(),
                    text(&d["file_system"]).into(),
                    field_text("total_bytes", &d["total_bytes"]).into(),
                    field_text("available_bytes", &d["available_bytes"]).into(),
                    used.into(),
                ]
            })
            .collect();
        let headers = [
            "MOUNT POINT",
            "DEVICE",
            "FILE SYSTEM",
            "SIZE",
            "FREE",
            "USED",
        ];
        indented_table(out, &headers, &rows);
    }
    if let Some(interfaces) = sections["network"].as_array() {
        let _ = writeln!(out, "\nNetwork");
        let rows: Vec<Vec<Cell>> = interfaces
            .iter()
            .map(|n| {
                let mac = n["mac"].as_str().filter(|m| !m.is_empty()).unwrap_or("-");
                let addresses = field_text("addresses", &n["addresses"]);
                let addresses = if addresses.is_empty() {
                    "-".to_owned()
                } else {
                    addresses
                };
                vec![text(&n["name"]).into(), mac.into(), addresses.into()]
            })
            .collect();
        indented_table(out, &["INTERFACE", "MAC", "ADDRESSES"], &rows);
    }
    if let Some(users) = sections["users"].as_array() {
        let _ = writeln!(out, "\nLogged-in users");
        if users.is_empty() {
            let _ = writeln!(out, "  Nobody is logged in.");
        } else {
            let rows: Vec<Vec<Cell>> = users
                .iter()
                .map(|u| {
                    let since = u["login_time"].as_u64().map_or_else(
                        || "-".to_owned(),
                        |t| format!("{} ago", human_duration(now.saturating_sub(t))),
                    );
                    vec![
                        text(&u["name"]).into(),
                        text(&u["terminal"]).into(),
                        text(&u["host"]).into(),
                        since.into(),
                    ]
                })
                .collect();
            indented_table(out, &["USER", "TERMINAL", "FROM", "SINCE"], &rows);
        }
    }
    for (name, section) in sections
        .iter()
        .filter(|(name, _)| !known.contains(&name.as_str()))
    {
        let _ = writeln!(out, "\n{}", title(name));
        render_section(out, section);
    }
}

fn indented_table(out: &mut String, headers: &[&str], rows: &[Vec<Cell>]) {
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
        return;
    }
    for line in render_table(headers, rows, false).lines() {
        let _ = writeln!(out, "  {line}");
    }
}

/// 93 → "1 min", 7200 → "2 h", 200000 → "2 d 7 h".
pub(crate) fn human_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86400, secs % 86400 / 3600),
    }
}

/// "disk_info" → "Disk info".
fn title(key: &str) -> String {
    let spaced = key.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

/// An inventory section: an object as `key: value` lines, a list of objects
/// as a table, anything else as its text.
fn render_section(out: &mut String, section: &Value) {
    match section {
        Value::Object(fields) => {
            let width = fields.keys().map(|k| k.len()).max().unwrap_or(0) + 1;
            for (key, value) in fields {
                let _ = writeln!(
                    out,
                    "  {:<width$} {}",
                    format!("{}:", title(key)),
                    field_text(key, value)
                );
            }
        }
        Value::Array(rows) if rows.iter().all(Value::is_object) => {
            if rows.is_empty() {
                let _ = writeln!(out, "  (none)");
                return;
            }
            let mut columns: Vec<&str> = Vec::new();
            for row in rows.iter().filter_map(Value::as_object) {
                for key in row.keys() {
                    if !columns.contains(&key.as_str()) {
                        columns.push(key);
                    }
                }
            }
            let headers: Vec<String> = columns
                .iter()
                .map(|c| c.replace('_', " ").to_uppercase())
                .collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            let cells: Vec<Vec<Cell>> = rows
                .iter()
                .map(|row| {
                    columns
                        .iter()
                        .map(|c| Cell::from(field_text(c, &row[*c])))
                        .collect()
                })
                .collect();
            for line in render_table(&headers, &cells, false).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        other => {
            let _ = writeln!(out, "  {}", field_text("", other));
        }
    }
}

fn field_text(key: &str, value: &Value) -> String {
    match value {
        Value::Number(n) if key.ends_with("_bytes") => {
            n.as_u64().map_or_else(|| n.to_string(), human_bytes)
        }
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            normalize_server("https://rmm.example.net/").ok().as_deref(),
            Some("https://rmm.example.net")
        );
        assert_eq!(
            normalize_server("http://localhost:8080/").ok().as_deref(),
            Some("http://localhost:8080")
        );
        assert_eq!(
            normalize_server("http://127.0.0.1:1").ok().as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(
            normalize_server("http://[::1]:1").ok().as_deref(),
            Some("http://[::1]:1")
        );
        assert!(normalize_server("http://rmm.example.net").is_err());
        assert!(normalize_server("http://localhost.evil.net").is_err());
        assert!(normalize_server("ftp://localhost").is_err());
        assert!(normalize_server("localhost:8080").is_err());
        assert!(normalize_server("https://").is_err());
    }

    #[test]
    fn tables_align_on_visible_text() {
        let rows = vec![
            vec![
                Cell::from("a"),
                Cell {
                    text: "online".into(),
                    colour: Some(GREEN),
                },
                Cell::from("x"),
            ],
            vec![
                Cell::from("long-name"),
                Cell {
                    text: "offline".into(),
                    colour: Some(RED),
                },
                Cell::from("y"),
            ],
        ];
        let plain = render_table(&["NAME", "STATUS", "Z"], &rows, false);
        assert_eq!(
            plain,
            "NAME       STATUS   Z\na          online   x\nlong-name  offline  y\n"
        );
        let coloured = render_table(&["NAME", "STATUS", "Z"], &rows, true);
        assert_eq!(
            coloured
                .replace(GREEN, "")
                .replace(RED, "")
                .replace(RESET, ""),
            plain
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("demo").ok().as_deref(), Some("demo"));
        assert_eq!(path_segment("../x y").ok().as_deref(), Some("..%2Fx%20y"));
        assert!(path_segment("").is_err());
        assert!(path_segment("..").is_err());
    }

    #[test]
    fn inventory_is_readable() {
        let inventory = json!({
            "system": {"hostname": "vm", "os_name": "Debian GNU/Linux", "os_version": "12",
                       "kernel_version": "6.1", "architecture": "x86_64", "boot_time": 1000,
                       "agent_version": "0.1.0"},
            "cpu": {"model": "AMD EPYC", "logical_cores": 2, "physical_cores": 2},
            "memory": {"total_bytes": 4096, "available_bytes": 1024,
                       "swap_total_bytes": 0, "swap_free_bytes": 0},
            "disks": [{"name": "/dev/vda", "mount_point": "/", "file_system": "ext4",
                       "total_bytes": 2048, "available_bytes": 1024, "removable": false}],
            "network": [{"name": "lo", "mac": "", "addresses": ["127.0.0.1/8", "::1/128"]}],
            "users": [],
            "future_section": {"answer": 42}
        });
        let mut out = String::new();
        let sections = inventory.as_object().expect("object");
        render_inventory(&mut out, sections, 1000 + 2 * 3600 + 60);
        let expected = "
System
  OS         Debian GNU/Linux 12
  Kernel     6.1
  Arch       x86_64
  Uptime     2 h 1 min

CPU and memory
  CPU        AMD EPYC · 2 cores (2 physical)
  Memory     3.0 KiB used of 4.0 KiB
  Swap       0 B used of 0 B

Disks
  MOUNT POINT  DEVICE    FILE SYSTEM  SIZE     FREE     USED
  /            /dev/vda  ext4         2.0 KiB  1.0 KiB  50%

Network
  INTERFACE  MAC  ADDRESSES
  lo         -    127.0.0.1/8, ::1/128

Logged-in users
  Nobody is logged in.

Future section
  Answer: 42
";
        assert_eq!(out, expected);
    }

    #[test]
    fn durations_are_human() {
        assert_eq!(human_duration(5), "5 s");
        assert_eq!(human_duration(93), "1 min");
        assert_eq!(human_duration(7260), "2 h 1 min");
        assert_eq!(human_duration(200_000), "2 d 7 h");
    }

    #[test]
    fn bad_ca_files_are_refused() {
        assert!(http_client(Some("not a certificate")).is_err());
        assert!(http_client(None).is_ok());
    }
}
