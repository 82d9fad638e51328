//! The network probes (RFD 0009): an HTTP(S) GET's status and latency, and
//! the expiry of the certificate a TLS server presents.
//!
//! Their targets come only from the root-signed policy: the server cannot
//! point them anywhere, so they make the agent neither a port scanner nor
//! an HTTP client for whoever owns the server. Nothing is sent but a bare
//! `GET`, and nothing is kept of the answer but its status: the body is
//! never read.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bulwark_policy::checks::HttpTarget;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::probes::Measurement;
use super::x509;

/// Most bytes of a response head read; the body is never read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The CAs a check trusts: the file's alone when the policy names one (an
/// internal service), else the web's (webpki-roots, as the server and the
/// CLI use).
fn roots(ca_file: Option<&str>) -> Result<RootCertStore, String> {
    let Some(path) = ca_file else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_CA_FILE + 1), &mut pem)
        })
        .map_err(|e| format!("cannot read the CA file {path}: {e}"))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(format!("the CA file {path} is over 1 MiB"));
    }
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("the CA file {path}: {e}"))?;
        store
            .add(cert)
            .map_err(|e| format!("the CA file {path}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("the CA file {path} holds no certificate"));
    }
    Ok(store)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The web PKI's verdict on the server's chain, and the leaf it presented
/// (kept even when the verdict is no: an expired certificate is a finding).
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<(Vec<u8>, Option<String>)>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let why = verdict.as_ref().err().map(|e| reason(e, server_name));
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((end_entity.to_vec(), why));
        verdict
    }

    // The handshake signatures are the web PKI verifier's business too.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a certificate failed, in words.
fn reason(error: &Error, name: &ServerName<'_>) -> String {
    match error {
        Error::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the certificate is not valid yet".to_owned()
            }
            CertificateError::UnknownIssuer => {
                "unknown issuer: not signed by a trusted CA".to_owned()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the certificate is not valid for {}", name.to_str())
            }
            CertificateError::Revoked => "the certificate is revoked".to_owned(),
            other => format!("invalid certificate: {other:?}"),
        },
        other => other.to_string(),
    }
}

fn client_config(
    ca_file: Option<&str>,
    alpn: Option<&[u8]>,
) -> Result<(rustls::ClientConfig, Arc<Recording>), String> {
    let provider = provider();
    let inner =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(ca_file)?), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
    let recording = Arc::new(Recording {
        inner,
        seen: Mutex::new(None),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous() // not dangerous: it returns the web PKI verifier's own verdict.
        .with_custom_certificate_verifier(recording.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
    config.resumption = rustls::client::Resumption::disabled();
    Ok((config, recording))
}

fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_owned()).map_err(|_| format!("{name} is not a server name"))
}

/// An HTTP(S) GET: the time to the response head, or why it failed.
pub async fn http(url: &str, expect_status: Option<u16>, ca_file: Option<&str>) -> Measurement {
    let target = HttpTarget::parse(url)?;
    let started = Instant::now();
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("{}:{}: {e}", target.host, target.port))?;
    let status = if target.tls {
        let (config, recording) = client_config(ca_file, Some(b"http/1.1"))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = match connector.connect(server_name(&target.host)?, tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                let seen = recording
                    .seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                return Err(match seen.as_ref().and_then(|(_, why)| why.clone()) {
                    Some(why) => format!("TLS: {why}"),
                    None => format!("TLS: {e}"),
                });
            }
        };
        exchange(tls, &target).await?
    } else {
        exchange(tcp, &target).await?
    };
    let ms = started.elapsed().as_millis() as u64;
    let expected = match expect_status {
        Some(want) => status == want,
        None => (200..400).contains(&status),
    };
    if !expected {
        let want = expect_status.map_or("2xx or 3xx".to_owned(), |s| s.to_string());
        return Err(format!("status {status} (expected {want}) in {ms} ms"));
    }
    Ok((ms, format!("status {status} in {ms} ms")))
}

/// Sends the GET and reads the response head (at most [`MAX_HEAD`]).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &HttpTarget,
) -> Result<u16, String> {
    let default_port = if target.tls { 443 } else { 80 };
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let host = if target.port == default_port {
        host
    } else {
        format!("{host}:{}", target.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bulwark-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read the response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before a response".to_owned());
        }
        head.extend_from_slice(&chunk[..n]);
        match response_status(&head) {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if head.len() < MAX_HEAD => {}
            Ok(None) => return Err(format!("the response head is over {MAX_HEAD} bytes")),
            Err(why) => return Err(why),
        }
    }
}

/// The status of a complete response head at the start of `bytes`;
/// `None` while it is incomplete. A 1xx interim answer is an answer too
/// (rare for a GET; the check then sees 100, not the final status).
pub fn response_status(bytes: &[u8]) -> Result<Option<u16>, String> {
    let bytes = &bytes[..bytes.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(format!("not an HTTP response: {e}")),
    }
}

/// Days until the presented certificate's notAfter, or why there are none
/// (the certificate failed verification: the reason, and the days too when
/// the leaf could be read).
pub async fn tls_expiry(
    host: &str,
    port: u16,
    name: Option<&str>,
    ca_file: Option<&str>,
) -> Measurement {
    let name = name.unwrap_or(host);
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("{host}:{port}: {e}"))?;
    let (config, recording) = client_config(ca_file, None)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = connector.connect(server_name(name)?, tcp).await;
    let seen = recording
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (leaf, why) = match (seen, handshake) {
        (Some((leaf, None)), Ok(_)) => (leaf, None),
        (Some((leaf, why)), Err(e)) => (leaf, Some(why.unwrap_or_else(|| e.to_string()))),
        (None, Err(e)) => return Err(format!("TLS handshake with {host}:{port}: {e}")),
        (_, Ok(_)) => return Err("the handshake did without a certificate".to_owned()),
    };
    let expiry = x509::not_after(&leaf).map(|at| x509::days_left(at, now));
    match (why, expiry) {
        (None, Ok(days)) => Ok((
            days,
            format!("certificate for {name} expires in {days} days"),
        )),
        (None, Err(e)) => Err(format!("cannot read the certificate's expiry: {e}")),
        (Some(why), Ok(days)) => Err(format!("{why} ({days} days left)")),
        (Some(why), Err(_)) => Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_read_for_their_status() {
        let check = |bytes: &[u8], expect: Result<Option<u16>, ()>| {
            assert_eq!(response_status(bytes).map_err(|_| ()), expect, "{bytes:?}");
        };
        check(b"HTTP/1.1 200 OK\r\n\r\n", Ok(Some(200)));
        check(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbye",
            Ok(Some(503)),
        );
        check(b"HTTP/1.0 301 Moved\r\nLocation: /x\r\n", Ok(None));
        check(b"HTTP/1.1 20", Ok(None));
        check(b"SSH-2.0-OpenSSH_9.2\r\n", Err(()));
        check(b"HTTP/1.1 2000 OK\r\n\r\n", Err(()));
    }

    #[test]
    fn a_ca_file_is_read_strictly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"no certificates here\n").expect("write");
        assert!(roots(Some(empty.to_str().expect("utf-8"))).is_err());
        assert!(roots(Some("/nonexistent/ca.pem")).is_err());
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .self_signed(&rcgen::KeyPair::generate().expect("key"))
            .expect("ca");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.pem()).expect("write");
        assert_eq!(
            roots(Some(file.to_str().expect("utf-8"))).map(|r| r.len()),
            Ok(1)
        );
        assert!(roots(None).expect("web roots").len() > 50);
    }
}
