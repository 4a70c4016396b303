//! `HLE_SYSLOG_TLS_CONFIG_FILE` in process: the daemon on port 0 with TLS on its syslog
//! TCP listener (certificates made by the `openssl` CLI), a rustls client sending
//! octet-counted lines, a plain client refused, a bad change of the file refused with the
//! last good configuration kept, and the shutdown with a TLS connection open:
//! close_notify, then the lines still sent read.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use haproxy_log_exporter::{Config, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{parse_exposition, wait_until_async, Samples, TempDir};

const WAIT: Duration = Duration::from_secs(10);
const LINES: &[u8] = include_bytes!("fixtures/haproxy/f_ring_octet.tcp");
const LINES_IN_FIXTURE: f64 = 15.0;

fn metrics(registry: &prometheus::Registry) -> Samples {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    parse_exposition(&text).unwrap()
}

/// The fixture's first octet-counted frame: its length, a space, the line.
fn first_frame() -> &'static [u8] {
    let space = LINES.iter().position(|&b| b == b' ').unwrap();
    let len: usize = std::str::from_utf8(&LINES[..space])
        .unwrap()
        .parse()
        .unwrap();
    &LINES[..space + 1 + len]
}

fn client_config(dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_over_tls_are_counted_and_plain_text_is_refused() {
    let dir = TempDir::new("hle-syslog-tls").unwrap();
    support::pki::ca(dir.path(), "ca");
    support::pki::leaf(dir.path(), "server", "ca", "serverAuth");
    let file = dir.path().join("syslog-tls.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    )
    .unwrap();
    let env: HashMap<String, String> = [
        ("HLE_SYSLOG_UDP_ADDR", ""),
        ("HLE_SYSLOG_TCP_ADDR", "127.0.0.1:0"),
        ("HLE_WEB_LISTEN_ADDR", "127.0.0.1:0"),
        ("HLE_SYSLOG_TLS_CONFIG_FILE", file.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let server = Server::bind(Config::from_env(&env).unwrap()).await.unwrap();
    let addr: SocketAddr = server.tcp_addr().unwrap();
    let registry = server.registry();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    // Plain text: the handshake fails, the connection closes, the line is not read.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"<134>plain text line\n").await.unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(WAIT, plain.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the plain connection stayed open");
    let failures = "haproxy_log_exporter_syslog_tls_handshake_failures_total";
    let refused = wait_until_async(WAIT, || async {
        (metrics(&registry).sum(failures, &[]) == 1.0).then_some(())
    })
    .await;
    assert!(refused.is_ok(), "the failed handshake was not counted");
    let m = metrics(&registry);
    assert_eq!(m.sum("haproxy_log_exporter_lines_received_total", &[]), 0.0);

    // TLS: every line counted.
    let connector = tokio_rustls::TlsConnector::from(client_config(dir.path()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.write_all(LINES).await.unwrap();
    tls.flush().await.unwrap();
    let counted = wait_until_async(WAIT, || async {
        let m = metrics(&registry);
        (m.sum("haproxy_log_exporter_lines_counted_total", &[]) == LINES_IN_FIXTURE).then_some(())
    })
    .await;
    assert!(counted.is_ok(), "{:?}", metrics(&registry));

    // A change that is not usable for syslog is refused at the next connection after a
    // second; the configuration in force stays, and so does every handshake.
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  http2: false\n",
    )
    .unwrap();
    let reloads = "haproxy_log_exporter_syslog_tls_config_reloads_total";
    let refused = wait_until_async(WAIT, || async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let handshake = tokio::time::timeout(WAIT, connector.connect(name, tcp)).await;
        assert!(
            matches!(handshake, Ok(Ok(_))),
            "a handshake failed while a bad change waited: {handshake:?}"
        );
        let m = metrics(&registry);
        (m.sum(reloads, &[("result", "failure")]) == 1.0).then_some(m)
    })
    .await;
    let m = refused.expect("the bad change was not refused");
    assert_eq!(m.sum(reloads, &[("result", "success")]), 0.0);
    assert_eq!(m.sum(failures, &[]), 1.0);

    // Shutdown with the connection open: the exporter ends its side with close_notify
    // (a clean end of stream, not an UnexpectedEof), and a line sent after it is still
    // read before the socket closes.
    stop.send(()).unwrap();
    let mut buf = [0u8; 64];
    let end = tokio::time::timeout(WAIT, tls.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(end, Ok(0)), "{end:?}");
    tls.write_all(first_frame()).await.unwrap();
    tls.shutdown().await.unwrap();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let m = metrics(&registry);
    assert_eq!(
        m.sum("haproxy_log_exporter_lines_counted_total", &[]),
        LINES_IN_FIXTURE + 1.0
    );
    assert_eq!(m.sum(failures, &[]), 1.0);
    let received = m.sum("haproxy_log_exporter_lines_received_total", &[]);
    let rejected = m.sum("haproxy_log_exporter_lines_rejected_total", &[]);
    let ignored = m.sum("haproxy_log_exporter_lines_ignored_total", &[]);
    assert_eq!((rejected, ignored), (0.0, 0.0));
    assert_eq!(received, LINES_IN_FIXTURE + 1.0);
}
