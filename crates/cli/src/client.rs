//! How the CLI talks to the server: the credentials `bulwark login` stores
//! (`$BULWARK_CONFIG_DIR/credentials.json`, default `~/.config/bulwark`, a
//! file only its owner can read), the signed-in [`Session`] every command
//! uses, and the HTTP client: rustls with the ring provider only, trusting
//! the webpki roots plus an optional `--ca-cert` (a private CA), which is
//! remembered with the token.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use bulwark_api::error::ErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::output::prompt_line;

/// What `bulwark login` stores: server, bearer token, and the CA to trust.
#[derive(Serialize, Deserialize)]
pub(crate) struct Credentials {
    pub(crate) server: String,
    pub(crate) token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_cert_pem: Option<String>,
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

    pub(crate) fn path() -> Result<PathBuf> {
        Ok(Self::dir()?.join("credentials.json"))
    }

    pub(crate) fn load_from(path: &Path) -> Result<Option<Self>> {
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
    pub(crate) fn save(&self) -> Result<PathBuf> {
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

/// A logged-in client: stored credentials plus an HTTP client that trusts
/// their CA.
pub(crate) struct Session {
    pub(crate) credentials: Credentials,
    pub(crate) client: reqwest::Client,
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

    /// The bearer token (for a connection reqwest does not make: the shell relay).
    pub(crate) fn token(&self) -> &str {
        &self.credentials.token
    }

    /// The private CA given at login, if any.
    pub(crate) fn ca_cert_pem(&self) -> Option<&str> {
        self.credentials.ca_cert_pem.as_deref()
    }

    pub(crate) fn new(credentials: Credentials) -> Result<Self> {
        let client = http_client(credentials.ca_cert_pem.as_deref())?;
        Ok(Self {
            credentials,
            client,
        })
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.credentials.server))
            .bearer_auth(&self.credentials.token)
    }

    /// `GET path`, its reply decoded as the `bulwark-api` type the route
    /// answers with.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.authed(send(self.request(reqwest::Method::GET, path), path).await)
    }

    /// `GET path?query`, the query encoded from `(name, value)` pairs.
    pub(crate) async fn get_query<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.authed(send(self.request(reqwest::Method::GET, path).query(query), path).await)
    }

    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.authed(send(self.request(reqwest::Method::POST, path).json(body), path).await)
    }

    pub(crate) async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.authed(send(self.request(reqwest::Method::PUT, path).json(body), path).await)
    }

    /// `PUT path`, a privileged action (see [`Session::post_privileged`]).
    pub(crate) async fn put_privileged<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        otp: Option<&str>,
    ) -> Result<T> {
        self.with_step_up(otp, || self.put(path, body)).await
    }

    /// A privileged action: when the server asks for a fresh MFA check
    /// (403 `step_up_required`), confirm a TOTP code (`otp`, or prompted on a
    /// terminal) and try once more.
    pub(crate) async fn post_privileged<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        otp: Option<&str>,
    ) -> Result<T> {
        self.with_step_up(otp, || self.post(path, body)).await
    }

    /// `DELETE path`, a privileged action (see [`Session::post_privileged`]).
    pub(crate) async fn delete_privileged(&self, path: &str, otp: Option<&str>) -> Result<()> {
        self.with_step_up(otp, || async {
            self.authed(send(self.request(reqwest::Method::DELETE, path), path).await)
        })
        .await
    }

    async fn with_step_up<T, F, Fut>(&self, otp: Option<&str>, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        match attempt().await {
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
                let step_up = bulwark_api::account::StepUpRequest {
                    otp: code.trim().to_owned(),
                };
                self.post::<_, ()>("/api/v1/auth/step-up", &step_up)
                    .await
                    .context("the MFA check failed")?;
                attempt().await
            }
            other => other,
        }
    }

    pub(crate) async fn post_empty(&self, path: &str) -> Result<()> {
        send(self.request(reqwest::Method::POST, path), path).await
    }

    /// Turns a 401 into advice to log in again.
    pub(crate) fn authed<T>(&self, result: Result<T>) -> Result<T> {
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
    pub(crate) code: Option<String>,
    pub(crate) message: String,
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

pub(crate) fn is_step_up_required(error: &anyhow::Error) -> bool {
    error.downcast_ref::<ApiError>().is_some_and(|api| {
        api.code.as_deref().and_then(ErrorCode::parse) == Some(ErrorCode::StepUpRequired)
    })
}

pub(crate) fn is_unauthorized(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ApiError>()
        .is_some_and(|api| api.status == reqwest::StatusCode::UNAUTHORIZED)
}

/// Sends a request; a 2xx reply is decoded as `T` (an empty one as JSON
/// `null`, which `()` and `Option` take), anything else becomes an
/// [`ApiError`] carrying the server's message. A reply that is not `T`
/// (a renamed or missing field) is an error naming the route, never a
/// silent blank.
pub(crate) async fn send<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T> {
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
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        return serde_json::from_slice(body)
            .with_context(|| format!("the server's reply ({what}) is not what this CLI expects"));
    }
    let error = serde_json::from_slice::<bulwark_api::ErrorBody>(&body)
        .ok()
        .map(|body| body.error);
    let message = error
        .as_ref()
        .map(|error| error.message.clone())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_owned()
        });
    let code = error.map(|error| error.code);
    Err(ApiError {
        status,
        code,
        message,
    }
    .into())
}

/// The rustls client configuration every connection of the CLI uses: the
/// ring provider (never aws-lc), the webpki roots and, if given, the PEM CA
/// certificates of a private CA.
pub(crate) fn tls_config(ca_cert_pem: Option<&str>) -> Result<rustls::ClientConfig> {
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
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// reqwest over [`tls_config`].
pub(crate) fn http_client(ca_cert_pem: Option<&str>) -> Result<reqwest::Client> {
    let tls = tls_config(ca_cert_pem)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("demo").ok().as_deref(), Some("demo"));
        assert_eq!(path_segment("../x y").ok().as_deref(), Some("..%2Fx%20y"));
        assert!(path_segment("").is_err());
        assert!(path_segment("..").is_err());
    }

    #[test]
    fn bad_ca_files_are_refused() {
        assert!(http_client(Some("not a certificate")).is_err());
        assert!(http_client(None).is_ok());
    }
}
