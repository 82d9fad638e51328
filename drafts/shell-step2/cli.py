p='crates/cli/src/client.rs'; s=open(p).read()
old="""/// reqwest over rustls with the ring provider (never aws-lc), trusting the
/// webpki roots and, if given, the PEM CA certificates of a private CA.
pub(crate) fn http_client(ca_cert_pem: Option<&str>) -> Result<reqwest::Client> {"""
new="""/// The rustls client configuration every connection of the CLI uses: the
/// ring provider (never aws-lc), the webpki roots and, if given, the PEM CA
/// certificates of a private CA.
pub(crate) fn tls_config(ca_cert_pem: Option<&str>) -> Result<rustls::ClientConfig> {"""
assert old in s; s=s.replace(old,new,1)
old="""    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()"""
new="""    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// reqwest over [`tls_config`].
pub(crate) fn http_client(ca_cert_pem: Option<&str>) -> Result<reqwest::Client> {
    let tls = tls_config(ca_cert_pem)?;
    reqwest::Client::builder()"""
assert old in s; s=s.replace(old,new,1)
old="""    /// The server's URL, as given at login.
    pub(crate) fn server(&self) -> &str {
        &self.credentials.server
    }
"""
new="""    /// The server's URL, as given at login.
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
"""
assert old in s; s=s.replace(old,new,1)
open(p,'w').write(s)
p='crates/cli/src/commands/mod.rs'; s=open(p).read()
s=s.replace("pub mod scripts;\npub mod sla;","pub mod scripts;\npub mod shells;\npub mod sla;")
old="""    /// The MSP's script library: add, version, review, allow-list (run with `job run --library`)."""
new="""    /// Remote shells: `bulwark shell DEVICE` opens one under an approved
    /// grant; `request`, `approve`, `revoke`, `grants`, `sessions`, `recording`.
    Shell(shells::ShellArgs),
    /// The MSP's script library: add, version, review, allow-list (run with `job run --library`)."""
assert old in s; s=s.replace(old,new,1)
s=s.replace("""        OperatorCommand::Script { command } => scripts::run(command).await,""","""        OperatorCommand::Script { command } => scripts::run(command).await,
        OperatorCommand::Shell(args) => shells::run(args).await,""")
s=s.replace("//! `jobs`, `keys`, `passkeys`, `trust` for roots, policies and freezes,","//! `jobs`, `shells`, `keys`, `passkeys`, `trust` for roots, policies and freezes,")
open(p,'w').write(s)
p='crates/cli/Cargo.toml'; s=open(p).read()
old="""rustls.workspace = true
rustls-pemfile.workspace = true"""
new="""rustls.workspace = true
rustls-pemfile.workspace = true
# `bulwark shell`: the operator's terminal in raw mode and its size (already
# in the lock file through the agent).
rustix = { version = "1", default-features = false, features = ["std", "termios"] }"""
assert old in s; s=s.replace(old,new,1)
old="""tokio.workspace = true
toml.workspace = true"""
new="""tokio.workspace = true
# `bulwark shell`: the relay's WebSocket (the client half of the crate the
# server's gateway uses) and its TLS.
tokio-tungstenite.workspace = true
tokio-rustls.workspace = true
futures-util.workspace = true
toml.workspace = true"""
assert old in s; s=s.replace(old,new,1)
open(p,'w').write(s)
