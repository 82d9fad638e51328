//! How the console and API are served: HTTPS in `server` mode, plain HTTP
//! only on loopback in `up` mode, one server per data directory.

use std::sync::Arc;

use bulwark_server::{ServeMode, ServerConfig};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path, mode: ServeMode) -> ServerConfig {
    let mut config = ServerConfig::quickstart(
        dir.to_path_buf(),
        "127.0.0.1:0".parse().expect("addr"),
        "127.0.0.1:0".parse().expect("addr"),
    );
    config.mode = mode;
    config
}

#[tokio::test]
async fn plain_http_on_a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), ServeMode::LoopbackHttp);
    c.listen = "0.0.0.0:0".parse().expect("addr");
    let err = bulwark_server::start(c)
        .await
        .err()
        .expect("must be refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(
        !dir.path().join("bulwark.db").exists(),
        "nothing may be created before the refusal"
    );
}

#[tokio::test]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = bulwark_server::start(config(dir.path(), ServeMode::LoopbackHttp))
        .await
        .expect("first");
    let err = bulwark_server::start(config(dir.path(), ServeMode::LoopbackHttp))
        .await
        .err()
        .expect("second refused");
    assert!(err.to_string().contains("already in use"), "{err}");
    first.shutdown().await;
    let again = bulwark_server::start(config(dir.path(), ServeMode::LoopbackHttp))
        .await
        .expect("after the first stopped");
    again.shutdown().await;
}

#[tokio::test]
async fn server_mode_serves_https_with_its_own_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = bulwark_server::start(config(dir.path(), ServeMode::Https))
        .await
        .expect("server");
    assert!(
        server.console_url.starts_with("https://127.0.0.1:"),
        "{}",
        server.console_url
    );

    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pemfile::certs(&mut server.ca_pem.as_bytes())
        .next()
        .expect("pem")
        .expect("cert");
    roots.add(CertificateDer::from(der.to_vec())).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let port: u16 = server
        .console_url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .expect("TLS handshake with the server CA");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("{\"status\":\"ok\"}"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'"),
        "{response}"
    );

    // Plain HTTP to the HTTPS port gets nothing useful.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("\"ok\""));
    server.shutdown().await;
}
