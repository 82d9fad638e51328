//! Test TLS material, and a real SMTP server for alert e-mail: aiosmtpd
//! (installed by `cargo xtask test` in the tests' Python environment) on a
//! loopback port, STARTTLS required before any mail, writing what it
//! accepts into a Maildir the test reads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use std::process::Command;
use tempfile::TempDir;

use crate::{Proc, free_port, python_tools, wait_for};

/// A CA named `ca_name` and a server certificate for `localhost` and
/// 127.0.0.1 signed by it, written as PEM files into `dir`: (ca, cert, key).
pub fn test_certificates(dir: &Path, ca_name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse()?));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

/// A running aiosmtpd.
pub struct MailServer {
    dir: TempDir,
    /// `127.0.0.1:PORT`, for `--smtp-relay`.
    pub relay: String,
    /// The CA its certificate chains to, for `--smtp-ca-file`.
    pub ca_file: PathBuf,
    _process: Proc,
}

impl MailServer {
    /// Starts it and waits until it accepts connections.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let (ca_file, cert, key) = test_certificates(dir.path(), "bulwark e2e mail CA")?;
        let maildir = dir.path().join("maildir");
        let port = free_port()?;
        let relay = format!("127.0.0.1:{port}");
        let python = python_tools::venv_python();
        ensure!(
            python.is_file(),
            "{} is missing: run `cargo xtask test` (it installs aiosmtpd {})",
            python.display(),
            python_tools::AIOSMTPD_VERSION
        );
        let mut command = Command::new(&python);
        command
            .args(["-m", "aiosmtpd", "-n", "-l", &relay])
            .arg("--tlscert")
            .arg(&cert)
            .arg("--tlskey")
            .arg(&key)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir);
        let process = Proc::spawn("aiosmtpd", &mut command)?;
        wait_for(Duration::from_secs(20), "aiosmtpd to listen", async || {
            Ok(tokio::net::TcpStream::connect(&relay)
                .await
                .ok()
                .map(|_| ()))
        })
        .await?;
        Ok(Self {
            dir,
            relay,
            ca_file,
            _process: process,
        })
    }

    /// Every message it accepted so far (headers and body), with
    /// quoted-printable undone so that tests can look for text in it.
    pub fn messages(&self) -> Result<Vec<String>> {
        let new = self.dir.path().join("maildir").join("new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Ok(Vec::new());
        };
        let mut messages = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let raw =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            messages.push(unquote(&raw));
        }
        Ok(messages)
    }

    /// Waits for a message containing every one of `parts`.
    pub async fn wait_message(&self, timeout: Duration, parts: &[&str]) -> Result<String> {
        wait_for(timeout, &format!("an e-mail with {parts:?}"), async || {
            Ok(self
                .messages()?
                .into_iter()
                .find(|m| parts.iter().all(|p| m.contains(p))))
        })
        .await
    }
}

/// Quoted-printable undone (RFC 2045 6.7): soft line breaks removed and
/// `=XX` turned back into the byte; anything else kept as it is.
pub fn unquote(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'=' {
            let rest = &raw[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let Some(byte) = rest
                .get(..2)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}
