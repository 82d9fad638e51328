//! The HTTP API as an operator's client sees it.

use bulwark_api::account::LoginResponse;
use bulwark_api::devices::DeviceView;
use bulwark_api::jobs::JobView;
use bulwark_api::setup::{OperatorView, SetupResponse};
use bulwark_api::tenants::{AuditEventView, EnrollmentTokenView, TenantView};
use bulwark_api::trust::TrustView;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::*;

/// A reqwest client using rustls with the ring provider (the workspace builds
/// reqwest without a default crypto provider).
pub fn http_client() -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The JSON API of one server, optionally with a bearer token.
#[derive(Clone)]
pub struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) token: Option<String>,
    /// How far the server's clock is from this machine's, in seconds (see
    /// [`UpOptions::clock_offset_days`]): TOTP codes are made for its time.
    pub(crate) clock_offset_secs: i64,
}

/// A response as the tests inspect it: status, headers and the body (JSON
/// when it parses, else a JSON string of the text, `null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The body as the API type `T` (a normal reply; errors and deliberately
    /// malformed exchanges are read from [`Reply::body`] as they are).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        decode_body(&self.body).with_context(|| format!("a reply with HTTP {}", self.status))
    }

    /// Asserts the contract's error shape `{"error":{"code","message"}}` and
    /// returns the code.
    pub fn error_code(&self) -> Result<String> {
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        match (code, message) {
            (Some(code), Some(message)) if !code.is_empty() && !message.is_empty() => {
                Ok(code.to_owned())
            }
            _ => bail!(
                "expected the error shape {{\"error\":{{\"code\",\"message\"}}}} with HTTP {}, got: {}",
                self.status,
                self.body
            ),
        }
    }
}

impl Api {
    pub fn new(base_url: &str) -> Self {
        // A client that cannot be built is a broken test machine, not a test result.
        let http = http_client().expect("building the HTTP client");
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            token: None,
            clock_offset_secs: 0,
        }
    }

    /// The same server, whose clock is `secs` from this machine's (in the
    /// past if negative): the TOTP codes this client sends follow it.
    pub fn with_clock_offset_secs(self, secs: i64) -> Self {
        Self {
            clock_offset_secs: secs,
            ..self
        }
    }

    /// The same server, authenticated with `token`.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the bearer token (if any) set.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and reads the whole reply, whatever its status.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Reply> {
        let response = request.send().await.context("sending the request")?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.context("reading the response body")?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// `tenant`'s audit trail as the API lists it.
    pub async fn audit(&self, tenant: &str) -> Result<Vec<AuditEventView>> {
        self.get_as(&format!("/api/v1/tenants/{tenant}/audit"))
            .await
    }

    /// The security alerts (`alert.*` events) in `tenant`'s audit trail.
    pub async fn security_alerts(&self, tenant: &str) -> Result<Vec<AuditEventView>> {
        Ok(self
            .audit(tenant)
            .await?
            .into_iter()
            .filter(|e| e.action.starts_with("alert."))
            .collect())
    }

    /// GET, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let reply = self.call(Method::GET, path, None).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "GET {path}: expected 200, got {} {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    /// POST JSON, expecting a 2xx status.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let reply = self.call(Method::POST, path, Some(body)).await?;
        ensure!(
            reply.status.is_success(),
            "POST {path}: expected 2xx, got {} {}",
            reply.status,
            reply.body
        );
        Ok(reply.body)
    }

    /// GET, expecting 200 and the API type `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.get_json(path).await?;
        decode_body(&body).with_context(|| format!("GET {path}"))
    }

    /// POST `body` as JSON, expecting a 2xx status and the API type `T`.
    pub async fn post_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let reply = self
            .send(self.request(Method::POST, path).json(body))
            .await?;
        ensure!(
            reply.status.is_success(),
            "POST {path}: expected 2xx, got {} {}",
            reply.status,
            reply.body
        );
        reply.decode().with_context(|| format!("POST {path}"))
    }

    /// Redeems the setup code and enrols TOTP: the first owner account.
    pub async fn create_owner(&self, setup_code: &str) -> Result<Owner> {
        let path = "/api/v1/setup";
        let body =
            json!({ "code": setup_code, "username": OWNER_USERNAME, "password": OWNER_PASSWORD });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::CREATED,
            "POST {path}: expected 201, got {} {}",
            reply.status,
            reply.body
        );
        let setup: SetupResponse = reply.decode().with_context(|| format!("POST {path}"))?;
        let owner = Owner::new(OWNER_USERNAME, OWNER_PASSWORD, &setup.totp_secret);

        let path = "/api/v1/setup/confirm";
        let body = json!({ "enrolment_id": setup.enrolment_id, "otp": owner.next_otp_skewed(self.clock_offset_secs).await? });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::CREATED,
            "POST {path}: expected 201, got {} {}",
            reply.status,
            reply.body
        );
        let operator: OperatorView = reply.decode().with_context(|| format!("POST {path}"))?;
        ensure!(
            operator.username == OWNER_USERNAME,
            "POST {path}: expected username {OWNER_USERNAME:?}, got {}",
            reply.body
        );
        Ok(owner)
    }

    /// Logs in with password and a fresh TOTP code; returns the bearer token.
    pub async fn login(&self, owner: &Owner) -> Result<String> {
        let path = "/api/v1/auth/login";
        let body = json!({ "username": owner.username, "password": owner.password, "otp": owner.next_otp_skewed(self.clock_offset_secs).await? });
        let reply = self.call(Method::POST, path, Some(&body)).await?;
        ensure!(
            reply.status == StatusCode::OK,
            "POST {path}: expected 200, got {} {}",
            reply.status,
            reply.body
        );
        let login: LoginResponse = reply.decode().with_context(|| format!("POST {path}"))?;
        Ok(login.token)
    }

    /// Setup code → owner → login: an authenticated client for a fresh server.
    pub async fn bootstrap(up: &UpProcess) -> Result<(Owner, Api)> {
        let api = up.api();
        let owner = api.create_owner(&up.setup_code().await?).await?;
        let token = api.login(&owner).await?;
        Ok((owner, api.with_token(&token)))
    }

    pub async fn tenants(&self) -> Result<Vec<TenantView>> {
        self.get_as("/api/v1/tenants").await
    }

    pub async fn devices(&self, tenant: &str) -> Result<Vec<DeviceView>> {
        self.get_as(&format!("/api/v1/tenants/{tenant}/devices"))
            .await
    }

    pub async fn device(&self, id: &str) -> Result<DeviceView> {
        self.get_as(&format!("/api/v1/devices/{id}")).await
    }

    /// Job `id` as the API shows one job (with its script and envelope).
    pub async fn job(&self, id: &str) -> Result<JobView> {
        self.get_as(&format!("/api/v1/jobs/{id}")).await
    }

    /// `tenant`'s trust state as the server replays it.
    pub async fn trust(&self, tenant: &str) -> Result<TrustView> {
        self.get_as(&format!("/api/v1/tenants/{tenant}/trust"))
            .await
    }

    /// A new enrolment token for `tenant` (the whole reply).
    pub async fn issue_token_reply(&self, tenant: &str) -> Result<EnrollmentTokenView> {
        self.post_as(
            &format!("/api/v1/tenants/{tenant}/enrollment-tokens"),
            &json!({}),
        )
        .await
    }

    pub async fn issue_token(&self, tenant: &str) -> Result<String> {
        Ok(self.issue_token_reply(tenant).await?.token)
    }

    /// Waits until `tenant` has exactly one device and it is online; returns it.
    pub async fn wait_single_device_online(
        &self,
        tenant: &str,
        timeout: Duration,
    ) -> Result<DeviceView> {
        wait_for(
            timeout,
            &format!("the one device of tenant {tenant} to be online"),
            async || {
                let devices = self.devices(tenant).await?;
                ensure!(
                    devices.len() <= 1,
                    "expected at most one device in {tenant}, got {devices:?}"
                );
                Ok(devices.into_iter().find(|d| d.online))
            },
        )
        .await
    }

    /// Waits until device `id` reports `online == want`.
    pub async fn wait_device_online(
        &self,
        id: &str,
        want: bool,
        timeout: Duration,
    ) -> Result<DeviceView> {
        let what = format!(
            "device {id} to be {}",
            if want { "online" } else { "offline" }
        );
        wait_for(timeout, &what, async || {
            let device = self.device(id).await?;
            Ok((device.online == want).then_some(device))
        })
        .await
    }
}

/// A JSON body as the API type `T`, or an error naming the type and the body.
pub fn decode_body<T: DeserializeOwned>(body: &Value) -> Result<T> {
    T::deserialize(body).with_context(|| format!("not a {}: {body}", std::any::type_name::<T>()))
}

/// JSON text (a `bulwark ... --json` output, say) as the API type `T`.
pub fn decode_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .with_context(|| format!("not a {}: {text}", std::any::type_name::<T>()))
}

impl Api {
    /// Like [`Api::new`], for a server whose certificate chains to the PEM
    /// CA certificate `ca_pem` (a `bulwark server`'s `DATA_DIR/tls/ca.pem`).
    pub fn with_ca(base_url: &str, ca_pem: &str) -> Result<Self> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("the CA file is not PEM")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            token: None,
            clock_offset_secs: 0,
        })
    }
}
