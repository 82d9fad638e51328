//! `bulwark login` (password and TOTP code, or `--device`: a code approved in
//! the console with a passkey) and `bulwark logout`. MFA is always required:
//! interactive login prompts for the password (without echo) and the code;
//! automation passes `--password-stdin` and `--otp CODE`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bulwark_api::account::{LoginRequest, LoginResponse};
use bulwark_api::cli_sign_in::{
    DeviceAuthorization, DeviceAuthorizationRequest, DeviceToken, DeviceTokenError,
    DeviceTokenRequest,
};

use crate::client::{Credentials, Session, http_client, is_unauthorized, send, spinner};
use crate::output::prompt_line;

/// RFC 8628 §3.4: the grant type the CLI's token requests name.
const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub(crate) async fn login(
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
    let body = LoginRequest {
        username,
        password,
        otp,
    };
    let reply = send::<LoginResponse>(
        client
            .post(format!("{server}/api/v1/auth/login"))
            .json(&body),
        "login",
    )
    .await;
    spinner.finish_and_clear();
    let reply = reply?;
    let username = body.username;

    let credentials = Credentials {
        server: server.clone(),
        token: reply.token,
        ca_cert_pem,
    };
    let path = credentials.save()?;
    println!(
        "Logged in to {server} as {username} (session expires {}).",
        reply.expires_at
    );
    eprintln!("Credentials saved to {}.", path.display());
    Ok(())
}

/// `bulwark login --device`: RFC 8628. Asks for a code, prints it with the
/// console URL, and polls (at the interval the server names, longer after
/// `slow_down`) until an operator approves it with a passkey, denies it, or
/// it expires.
pub(crate) async fn login_device(server: String, ca_cert: Option<PathBuf>) -> Result<()> {
    let server = normalize_server(&server)?;
    let ca_cert_pem = match &ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?,
        ),
        None => None,
    };
    let client = http_client(ca_cert_pem.as_deref())?;
    let started: DeviceAuthorization = send(
        client
            .post(format!("{server}/api/v1/auth/device"))
            .json(&DeviceAuthorizationRequest::default()),
        "device sign-in",
    )
    .await?;
    let user_code = &started.user_code;
    let path = &started.verification_uri;
    let expires_in = started.expires_in;
    let mut interval = started.interval.clamp(1, 60);
    let poll = DeviceTokenRequest {
        device_code: started.device_code,
        grant_type: Some(DEVICE_GRANT_TYPE.to_owned()),
    };
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
            .json(&poll)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // A network blip: keep polling until the code expires.
            Err(_) => continue,
        };
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            spinner.finish_and_clear();
            break serde_json::from_slice::<DeviceToken>(&body)
                .context("the server's reply (device sign-in) is not what this CLI expects")?;
        }
        let refusal = serde_json::from_slice::<DeviceTokenError>(&body).ok();
        match refusal.as_ref().map(|refusal| refusal.error.as_str()) {
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
                bail!(
                    "the server refused the sign-in (HTTP {status}): {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    };
    let credentials = Credentials {
        server: server.clone(),
        token: reply.access_token,
        ca_cert_pem,
    };
    let saved = credentials.save()?;
    println!(
        "Logged in to {server} (session expires {}).",
        reply.expires_at
    );
    eprintln!("Credentials saved to {}.", saved.display());
    Ok(())
}

pub(crate) async fn logout() -> Result<()> {
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

pub(crate) fn read_password_from_stdin() -> Result<String> {
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

/// Accepts `https://host[:port][/]`, and `http://` only to a loopback host
/// (the quickstart console): a password must not cross a network in clear.
pub(crate) fn normalize_server(url: &str) -> Result<String> {
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
}
