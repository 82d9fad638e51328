//! Headless Chromium through ChromeDriver, with a virtual authenticator (the
//! WebDriver WebAuthn extension) or without one, shared by the browser tests.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them a test
//! fails, it does not skip.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use bulwark_e2e::{Owner, Proc, TempDir, http_client, wait_for};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// ChromeDriver on a free loopback port, a WebDriver session in a headless
/// Chromium with a fresh profile, and (unless started `plain`) a virtual
/// authenticator in it.
pub struct Browser {
    client: Option<Client>,
    driver_url: String,
    session: String,
    authenticator: Option<String>,
    _driver: Proc,
    _profile: TempDir,
}

impl Browser {
    /// A 1280x900 window with a virtual authenticator.
    pub async fn start() -> Result<Self> {
        Self::launch(900, true).await
    }

    /// A 1280x`height` window without an authenticator.
    pub async fn plain(height: u32) -> Result<Self> {
        Self::launch(height, false).await
    }

    async fn launch(height: u32, with_authenticator: bool) -> Result<Self> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            ensure!(
                Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver (`cargo xtask test` does it)"
            );
        }
        let (driver, driver_url) = bulwark_e2e::start_chromedriver(CHROMEDRIVER).await?;
        let http = http_client()?;

        let profile = tempfile::Builder::new()
            .prefix("bulwark-chromium-")
            .tempdir()?;
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size=1280,{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        // The page's console (errors, CSP violations) for `console_errors`.
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .map_err(|e| anyhow!("starting a Chromium session through chromedriver: {e}"))?;
        client.set_window_size(1280, height).await?;
        let session = client
            .session_id()
            .await?
            .context("chromedriver gave the session no id")?;

        // A platform authenticator with a PIN or biometric that always
        // verifies the user and consents (WebDriver WebAuthn extension,
        // https://www.w3.org/TR/webauthn-2/#sctn-automation-add-virtual-authenticator).
        if !with_authenticator {
            return Ok(Self {
                client: Some(client),
                driver_url,
                session,
                authenticator: None,
                _driver: driver,
                _profile: profile,
            });
        }
        let added: Value = http
            .post(format!(
                "{driver_url}/session/{session}/webauthn/authenticator"
            ))
            .json(&json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserConsenting": true,
                "isUserVerified": true,
            }))
            .send()
            .await?
            .json()
            .await?;
        let authenticator = added["value"]
            .as_str()
            .with_context(|| format!("adding a virtual authenticator: {added}"))?
            .to_owned();
        Ok(Self {
            client: Some(client),
            driver_url,
            session,
            authenticator: Some(authenticator),
            _driver: driver,
            _profile: profile,
        })
    }

    pub fn client(&self) -> &Client {
        // `client` is only taken in `close`, which consumes the browser.
        #[allow(clippy::unwrap_used)]
        self.client.as_ref().unwrap()
    }

    /// The credentials the virtual authenticator holds.
    pub async fn credentials(&self) -> Result<Vec<Value>> {
        let authenticator = self
            .authenticator
            .as_deref()
            .context("this browser has no virtual authenticator")?;
        let listed: Value = http_client()?
            .get(format!(
                "{}/session/{}/webauthn/authenticator/{}/credentials",
                self.driver_url, self.session, authenticator
            ))
            .send()
            .await?
            .json()
            .await?;
        listed["value"]
            .as_array()
            .cloned()
            .with_context(|| format!("listing the authenticator's credentials: {listed}"))
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.client()
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    pub async fn path(&self) -> Result<String> {
        Ok(self.client().current_url().await?.path().to_owned())
    }

    pub async fn wait_path(&self, want: &str) -> Result<()> {
        wait_for(
            PAGE_TIMEOUT,
            &format!("the browser to reach {want}"),
            async || {
                let path = self.path().await?;
                Ok((path == want).then_some(()))
            },
        )
        .await
    }

    pub async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        wait_for(PAGE_TIMEOUT, &format!("an element `{css}`"), async || {
            Ok(self.client().find(Locator::Css(css)).await.ok())
        })
        .await
    }

    pub async fn fill(&self, field: &str, value: &str) -> Result<()> {
        let input = self.find(&format!("[name=\"{field}\"]")).await?;
        input.clear().await?;
        input
            .send_keys(value)
            .await
            .with_context(|| format!("typing into `{field}`"))
    }

    pub async fn click(&self, css: &str) -> Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("clicking `{css}`"))
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.find(css).await?.text().await?.trim().to_owned())
    }

    /// Waits until the text of `css` contains `want`.
    pub async fn wait_text(&self, css: &str, want: &str) -> Result<String> {
        wait_for(
            PAGE_TIMEOUT,
            &format!("`{css}` to contain {want:?}"),
            async || {
                let Ok(el) = self.client().find(Locator::Css(css)).await else {
                    return Ok(None);
                };
                let text = el.text().await?;
                Ok(text.contains(want).then_some(text))
            },
        )
        .await
    }

    /// The errors the pages' consoles logged since the last call (script
    /// errors, refused resources, Content-Security-Policy violations),
    /// through ChromeDriver's log endpoint.
    pub async fn console_errors(&self) -> Result<Vec<String>> {
        let reply: Value = http_client()?
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session
            ))
            .json(&json!({ "type": "browser" }))
            .send()
            .await?
            .json()
            .await?;
        let entries = reply["value"]
            .as_array()
            .with_context(|| format!("reading the browser's log: {reply}"))?;
        Ok(entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect())
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub async fn run_js(&self, script: &str) -> Result<Value> {
        Ok(self.client().execute(script, Vec::new()).await?)
    }

    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.client().screenshot().await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Makes the first owner as a person does (setup `code`, TOTP enrolment,
    /// recovery codes), then signs in with password and TOTP; ends on
    /// `/tenants`.
    /// Signs `who` in with password and TOTP, on to the tenant list.
    pub async fn sign_in(&self, base: &str, who: &Owner) -> Result<()> {
        self.goto(&format!("{base}/login")).await?;
        self.fill("username", &who.username).await?;
        self.fill("password", &who.password).await?;
        self.fill("otp", &who.next_otp().await?).await?;
        self.click("#login-submit").await?;
        self.wait_path("/tenants").await
    }

    pub async fn set_up_owner(&self, base: &str, code: &str) -> Result<Owner> {
        let username = bulwark_e2e::OWNER_USERNAME;
        let password = bulwark_e2e::OWNER_PASSWORD;
        self.goto(&format!("{base}/setup")).await?;
        self.fill("code", code).await?;
        self.fill("username", username).await?;
        self.fill("password", password).await?;
        self.fill("password_confirm", password).await?;
        self.click("#setup-submit").await?;
        let secret = self.text("#totp-secret").await?;
        let owner = Owner::new(username, password, &secret);
        self.fill("otp", &owner.next_otp().await?).await?;
        self.click("#totp-submit").await?;
        self.click("#recovery-continue").await?;
        self.wait_path("/login").await?;
        self.fill("username", username).await?;
        self.fill("password", password).await?;
        self.fill("otp", &owner.next_otp().await?).await?;
        self.click("#login-submit").await?;
        self.wait_path("/tenants").await?;
        Ok(owner)
    }

    pub async fn sign_out(&self) -> Result<()> {
        self.click("form[action=\"/logout\"] button").await?;
        self.wait_path("/login").await
    }

    pub async fn close(mut self) -> Result<()> {
        if let Some(client) = self.client.take() {
            client.close().await?;
        }
        Ok(())
    }
}
