//! The server's own certificate authority.
//!
//! On first start the server creates a CA (ECDSA P-256, rcgen) in
//! `data_dir/tls/`. Agents pin that CA by the SHA-256 fingerprint carried in
//! their enrolment token; browsers and the CLI can trust it explicitly. The
//! leaf certificate is re-issued at every start (with the current host
//! names), so only the CA is long-lived.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::datadir::{create_private_dir, write_private_file};

/// The CA and a freshly issued server certificate.
pub struct ServerTls {
    pub ca_der: Vec<u8>,
    pub ca_pem: String,
    /// SHA-256 of the CA certificate (DER): what agents pin.
    pub ca_fingerprint: [u8; 32],
    pub rustls_config: Arc<rustls::ServerConfig>,
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Bulwark");
    dn.push(DnType::CommonName, "Bulwark server CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl ServerTls {
    /// Loads the CA from `data_dir/tls` (creating it on first start) and issues
    /// a server certificate for loopback plus `hostnames`.
    pub fn load_or_create(data_dir: &Path, hostnames: &[String]) -> anyhow::Result<Self> {
        let dir = data_dir.join("tls");
        create_private_dir(&dir)?;
        let (ca_cert_path, ca_key_path) = (dir.join("ca.pem"), dir.join("ca.key"));

        if !ca_cert_path.exists() {
            let key = KeyPair::generate().context("cannot generate the CA key")?;
            let mut params = ca_params()?;
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(365 * 20);
            let cert = params.self_signed(&key)?;
            write_private_file(&ca_key_path, key.serialize_pem().as_bytes())?;
            write_private_file(&ca_cert_path, cert.pem().as_bytes())?;
        }

        let ca_pem =
            std::fs::read_to_string(&ca_cert_path).with_context(|| read_err(&ca_cert_path))?;
        let ca_key_pem =
            std::fs::read_to_string(&ca_key_path).with_context(|| read_err(&ca_key_path))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)
            .context("the CA key in the data directory is unreadable")?;
        let ca_der = pem_to_der(&ca_pem)?;
        // The issuer object only lends its name and key to the leaf; the CA that
        // agents pin stays the stored one.
        let issuer = ca_params()?.self_signed(&ca_key)?;

        let leaf_key = KeyPair::generate()?;
        let mut names = vec!["localhost".to_string()];
        names.extend(hostnames.iter().cloned());
        let mut leaf = CertificateParams::new(names)?;
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        leaf.subject_alt_names
            .push(SanType::IpAddress("::1".parse()?));
        for h in hostnames {
            if let Ok(ip) = h.parse() {
                leaf.subject_alt_names.push(SanType::IpAddress(ip));
            }
        }
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::CommonName, "Bulwark server");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = time::OffsetDateTime::now_utc();
        leaf.not_before = now - time::Duration::days(1);
        leaf.not_after = now + time::Duration::days(365);
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer, &ca_key)?;

        let chain = vec![
            CertificateDer::from(leaf_cert.der().to_vec()),
            CertificateDer::from(ca_der.clone()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // No resumption tickets: one less secret to keep, and agents connect rarely.
        config.send_tls13_tickets = 0;

        Ok(Self {
            ca_fingerprint: bulwark_protocol::token::certificate_fingerprint(&ca_der),
            ca_der,
            ca_pem,
            rustls_config: Arc::new(config),
        })
    }

    pub fn ca_cert_path(data_dir: &Path) -> PathBuf {
        data_dir.join("tls").join("ca.pem")
    }
}

fn read_err(path: &Path) -> String {
    format!("cannot read {}", path.display())
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .context("the CA file holds no certificate")?
        .context("the CA file is not valid PEM")?;
    Ok(cert.to_vec())
}

/// The HTTPS client the server uses to reach others (SIEM receivers,
/// witnesses): rustls with ring, the public roots plus `extra_roots`, no
/// redirects (a receiver that redirects is misconfigured or hostile), and
/// `timeout` for connecting and for the whole exchange.
pub fn https_client(
    extra_roots: Vec<CertificateDer<'static>>,
    user_agent: &'static str,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert).context("an unusable CA certificate")?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("configuring TLS")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(std::time::Duration::from_secs(10)))
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_survives_restarts_and_the_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ServerTls::load_or_create(dir.path(), &[]).expect("create");
        let second =
            ServerTls::load_or_create(dir.path(), &["rmm.example.com".into()]).expect("load");
        assert_eq!(first.ca_fingerprint, second.ca_fingerprint);
        let mode = std::fs::metadata(dir.path().join("tls/ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "CA key must not be readable by others: {mode:o}"
        );
    }
}
