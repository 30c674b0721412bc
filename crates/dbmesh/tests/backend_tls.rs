//! TLS from the proxy to its backends (`tls` and `tls_ca` of a data source), against a
//! fixture mariadbd started with a certificate from a CA the test makes, and one without TLS.
//! Whether a backend connection is encrypted is read on that connection itself:
//! `SHOW SESSION STATUS LIKE 'Ssl_cipher'` passes through to the data source.

mod common;

use std::path::{Path, PathBuf};

use common::{Proxy, PASSWORD, USER};
use mysql_async::prelude::*;
use testkit::{Backend, MariaDb};

/// A CA, and a server certificate it signed for the name `localhost` only (no IP address),
/// written as PEM files.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, ca_key) = certificate_authority("dbmesh test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .signed_by(&key, &ca, &ca_key)
            .expect("sign");
        let (other_ca, _) = certificate_authority("some other CA");
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file")
        };
        write("ca.pem", ca.pem());
        write("server-cert.pem", cert.pem());
        write("server-key.pem", key.serialize_pem());
        write("other-ca.pem", other_ca.pem());
        Certificates { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A mariadbd serving TLS with these files.
    fn server(&self) -> Backend {
        let server = MariaDb::builder()
            .tls(
                &self.path("ca.pem"),
                &self.path("server-cert.pem"),
                &self.path("server-key.pem"),
            )
            .start()
            .expect("start a MariaDB with TLS");
        Backend::managed(server)
    }
}

fn certificate_authority(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("self-sign");
    (cert, key)
}

/// Starts a proxy whose one data source is `address` with `tls` (and `tls_ca`), and returns
/// what the backend connection's `Ssl_cipher` is ("" for plaintext), or the error code the
/// first statement got with the proxy's log (which gives the reason: the health check at
/// start meets the failure first, and a client then hears the data source is down).
async fn cipher_through(
    backend: &Backend,
    address: &str,
    tls: &str,
    tls_ca: Option<&Path>,
) -> Result<String, (u16, String)> {
    let ca = tls_ca.map_or(String::new(), |p| {
        format!("tls_ca = {:?}\n", p.display().to_string())
    });
    let proxy = Proxy::start(&format!(
        r#"[proxy]

[[users]]
name = "{USER}"
password = "{PASSWORD}"

[schema]
name = "app"
default_data_source = "main"

[data_sources.main]
address = "{address}"
user = "{user}"
password = "{password}"
database = "mysql"
tls = "{tls}"
{ca}"#,
        user = backend.user(),
        password = backend.password(),
    ));
    // mysql_async runs statements as it connects: the first may fail there.
    let answer = match mysql_async::Conn::new(proxy.opts(None)).await {
        Ok(mut conn) => {
            conn.query_first::<(String, String), _>("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(row) => Ok(row.expect("one row").1),
        Err(mysql_async::Error::Server(e)) => Err((e.code, proxy.log())),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_mode_does_what_it_says_against_a_tls_server() {
    let certs = Certificates::new();
    let server = certs.server();
    let by_ip = format!("127.0.0.1:{}", server.port());
    let by_name = format!("localhost:{}", server.port());

    let cipher = cipher_through(&server, &by_ip, "required", None).await;
    assert!(
        cipher.as_ref().is_ok_and(|c| !c.is_empty()),
        "required: {cipher:?}"
    );

    let cipher = cipher_through(&server, &by_ip, "preferred", None).await;
    assert!(
        cipher.as_ref().is_ok_and(|c| !c.is_empty()),
        "preferred, server with TLS: {cipher:?}"
    );

    let cipher = cipher_through(&server, &by_ip, "disabled", None).await;
    assert_eq!(cipher, Ok(String::new()), "disabled stays plaintext");

    let ca = certs.path("ca.pem");
    let cipher = cipher_through(&server, &by_name, "verify_identity", Some(&ca)).await;
    assert!(
        cipher.as_ref().is_ok_and(|c| !c.is_empty()),
        "verify_identity with the right CA and name: {cipher:?}"
    );

    let other_ca = certs.path("other-ca.pem");
    let (code, log) = cipher_through(&server, &by_name, "verify_identity", Some(&other_ca))
        .await
        .expect_err("a certificate from another CA is refused");
    assert_eq!(code, 1105);
    assert!(
        log.contains("TLS failed: invalid peer certificate: UnknownIssuer"),
        "{log}"
    );

    // The certificate names `localhost`, not the address the data source gives.
    let (code, log) = cipher_through(&server, &by_ip, "verify_identity", Some(&ca))
        .await
        .expect_err("a certificate for another name is refused");
    assert_eq!(code, 1105);
    assert!(
        log.contains("TLS failed: invalid peer certificate: certificate not valid for name"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_falls_back_and_required_refuses_a_server_without_tls() {
    // A fixture server, never an external one: those may well have TLS on.
    let server = Backend::managed(MariaDb::start().expect("start a MariaDB"));
    let address = server.address();

    let cipher = cipher_through(&server, &address, "preferred", None).await;
    assert_eq!(
        cipher,
        Ok(String::new()),
        "preferred falls back to plaintext"
    );

    let (code, log) = cipher_through(&server, &address, "required", None)
        .await
        .expect_err("required needs a server with TLS");
    assert_eq!(code, 1105);
    assert!(
        log.contains("TLS failed: the server does not offer TLS"),
        "{log}"
    );
}
