//! The HTTP and TLS-expiry probes against real servers on loopback: a
//! plain HTTP server answering what the test says, and TLS servers whose
//! certificates rcgen makes (one expiring in three days, one for another
//! name, one from a CA the probe does not trust).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_agent::checks::network::{http, tls_expiry};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Answers every connection with `status` (and a body nobody reads).
async fn http_server(status: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let body = "x".repeat(100_000);
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (port, task)
}

struct Tls {
    port: u16,
    ca_file: tempfile::NamedTempFile,
    _task: tokio::task::JoinHandle<()>,
}

/// A TLS server for `names`, its certificate valid `days` more, issued by
/// a CA written to a PEM file.
async fn tls_server(names: &[&str], days: u64) -> Tls {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + (now - Duration::from_secs(86_400));
    params.not_after =
        rcgen::date_time_ymd(1970, 1, 1) + (now + Duration::from_secs(days * 86_400 + 600));
    let leaf = params.signed_by(&key, &ca, &ca_key).expect("leaf");
    let ca_file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(ca_file.path(), ca.pem()).expect("write");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der"),
    )
    .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    Tls {
        port,
        ca_file,
        _task: task,
    }
}

#[tokio::test]
async fn http_status_and_latency() {
    let (port, ok) = http_server(200).await;
    let (value, summary) = http(&format!("http://127.0.0.1:{port}/health"), None, None)
        .await
        .expect("200 is ok");
    assert!(summary.starts_with("status 200 in"), "{summary}");
    assert!(value < 5_000, "{value}");
    // An expected status other than the one served is a failure.
    let err = http(&format!("http://127.0.0.1:{port}/"), Some(204), None)
        .await
        .expect_err("200 is not 204");
    assert!(err.contains("status 200 (expected 204)"), "{err}");
    ok.abort();

    let (port, failing) = http_server(500).await;
    let err = http(&format!("http://127.0.0.1:{port}/"), None, None)
        .await
        .expect_err("500 fails");
    assert!(err.contains("status 500 (expected 2xx or 3xx)"), "{err}");
    failing.abort();
    let _ = failing.await;
    let err = http(&format!("http://127.0.0.1:{port}/"), None, None)
        .await
        .expect_err("a stopped server fails");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn https_is_verified_against_the_checks_ca() {
    let server = tls_server(&["localhost"], 90).await;
    let ca = server.ca_file.path().to_str().expect("utf-8");
    let url = format!("https://localhost:{}/", server.port);
    let (_, summary) = http(&url, Some(204), Some(ca)).await.expect("trusted");
    assert!(summary.starts_with("status 204"), "{summary}");
    // The web's roots do not know this CA.
    let err = http(&url, None, None).await.expect_err("unknown issuer");
    assert!(err.contains("unknown issuer"), "{err}");
    // Dialled by another name than the certificate's.
    let url = format!("https://127.0.0.1:{}/", server.port);
    let err = http(&url, None, Some(ca)).await.expect_err("name mismatch");
    assert!(err.contains("not valid for 127.0.0.1"), "{err}");
}

#[tokio::test]
async fn tls_expiry_counts_days_and_names_what_fails() {
    let server = tls_server(&["service.internal"], 3).await;
    let ca = server.ca_file.path().to_str().expect("utf-8");
    let (days, summary) = tls_expiry("127.0.0.1", server.port, Some("service.internal"), Some(ca))
        .await
        .expect("verified");
    assert_eq!(days, 3, "{summary}");
    assert!(summary.contains("expires in 3 days"), "{summary}");
    let err = tls_expiry("127.0.0.1", server.port, Some("other.internal"), Some(ca))
        .await
        .expect_err("another name");
    assert!(
        err.contains("not valid for other.internal") && err.contains("3 days left"),
        "{err}"
    );
    let err = tls_expiry("127.0.0.1", server.port, Some("service.internal"), None)
        .await
        .expect_err("unknown issuer");
    assert!(err.contains("unknown issuer"), "{err}");
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    assert!(
        tls_expiry("127.0.0.1", closed, None, Some(ca))
            .await
            .is_err()
    );
}
