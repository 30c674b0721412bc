//! The byte stream under a backend connection: TCP, or TLS over TCP when the data source
//! asks for it (`tls` in the rule file), with TCP keepalive, and a watch on how long the
//! server stays silent while dbmesh waits on it.
//!
//! Silence alone does not prove a server dead (a long statement sends nothing until it
//! ends), so after `read_timeout` of it the watch tries a new connection to the same server:
//! a server that answers that (even with an error) is alive and the wait goes on; one that
//! does not (stopped, hung, or cut off) fails the read with `TimedOut`, which the connection's
//! user treats as a lost backend.
//!
//! The watch costs next to nothing per read: its timer is not re-armed on every wait (that
//! took a clock read and a timer-wheel update under the driver's lock each time, about 2,000
//! instructions per prepared statement, see docs/benchmarks.md). It ticks every
//! `read_timeout` instead, and a tick finds the server silent only if no byte arrived since
//! the tick before, so silence is noticed after between one and two `read_timeout`s.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::conn::{BackendConn, ConnectOptions};
use crate::BackendError;

/// How dbmesh's connections to a data source use TLS (the rule file's `tls`, with the
/// configuration it needs).
#[derive(Debug, Clone, Default)]
pub enum Tls {
    /// Plaintext.
    #[default]
    Disabled,
    /// TLS where the server offers it, plaintext where it does not.
    Preferred(Arc<ClientConfig>),
    /// TLS or no connection, checked as the configuration says.
    Required(Arc<ClientConfig>),
    /// TLS was asked for but cannot be set up (e.g. an unreadable CA file): every connect
    /// fails with this reason rather than fall back to plaintext.
    Unusable(String),
}

impl Tls {
    /// `preferred`: encrypts where the server offers TLS; the certificate is not checked.
    pub fn preferred() -> Tls {
        Tls::Preferred(unverified_config())
    }

    /// `required`: encrypts or fails; the certificate is not checked.
    pub fn required() -> Tls {
        Tls::Required(unverified_config())
    }

    /// `verify_identity`: encrypts or fails, with a certificate that chains to one of the
    /// certificates in `ca_pem` and names the host the connection is made to.
    /// `ca_origin` names the CA file in errors.
    pub fn verify_identity(ca_pem: &[u8], ca_origin: &str) -> Tls {
        match verifying_config(ca_pem) {
            Ok(config) => Tls::Required(config),
            Err(reason) => Tls::Unusable(format!("{ca_origin}: {reason}")),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn unverified_config() -> Arc<ClientConfig> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

fn verifying_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| e.to_string())?;
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate found".into());
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate (modes `preferred` and `required`, MySQL's meaning of them) while
/// still checking that the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The host of a `host:port` address (`[v6]:port` included), as TLS names the server.
fn server_name(address: &str) -> Result<ServerName<'static>, String> {
    let host = match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(host, _)| host),
        None => address.rsplit_once(':').map_or(address, |(host, _)| host),
    };
    ServerName::try_from(host.to_string()).map_err(|e| format!("bad server name '{host}': {e}"))
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A backend connection's byte stream.
pub struct BackendStream {
    io: Io,
    /// Absent until the connection has logged in (the login has its own timeout).
    silence: Option<SilenceWatch>,
}

struct SilenceWatch {
    after: Duration,
    /// How to reach the server again for the probe.
    options: ConnectOptions,
    /// Ticks every `after` while reads wait (re-armed, not reallocated).
    timer: Pin<Box<Sleep>>,
    /// Whether a byte arrived since the last tick.
    heard: bool,
    /// The new connection trying whether the server answers, run as a task of its own (its
    /// handle, unlike the future, may be shared between threads, as a session's state is).
    probe: Option<JoinHandle<Result<(), String>>>,
}

impl BackendStream {
    /// Opens the TCP connection (with TCP keepalive when configured).
    pub(crate) async fn connect(options: &ConnectOptions) -> Result<BackendStream, String> {
        let tcp = tokio::time::timeout(
            options.connect_timeout,
            TcpStream::connect(&options.address),
        )
        .await
        .map_err(|_| format!("connect timed out after {:?}", options.connect_timeout))?
        .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        if let Some(idle) = options.keepalive {
            // Three unanswered probes, `idle` apart, after `idle` without traffic.
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle)
                .with_retries(3);
            socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&keepalive)
                .map_err(|e| e.to_string())?;
        }
        Ok(BackendStream {
            io: Io::Plain(tcp),
            silence: None,
        })
    }

    /// Runs the TLS handshake on a plain connection.
    pub(crate) async fn upgrade(
        self,
        config: Arc<ClientConfig>,
        address: &str,
    ) -> Result<BackendStream, String> {
        let Io::Plain(tcp) = self.io else {
            return Err("the connection is already encrypted".into());
        };
        let tls = TlsConnector::from(config)
            .connect(server_name(address)?, tcp)
            .await
            .map_err(|e| e.to_string())?;
        Ok(BackendStream {
            io: Io::Tls(Box::new(tls)),
            silence: self.silence,
        })
    }

    /// Starts watching for silence: from now on, a read that waits `after` without a byte
    /// probes the server with a new connection made with `options`.
    pub(crate) fn watch_silence(&mut self, after: Duration, options: ConnectOptions) {
        self.silence = Some(SilenceWatch {
            after,
            options,
            timer: Box::pin(tokio::time::sleep(after)),
            heard: true,
            probe: None,
        });
    }

    pub fn is_encrypted(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// Whether an idle connection's server closed it or sent something unasked. Costs no
    /// system call unless the socket has signalled readability.
    pub(crate) fn peer_closed(&self) -> bool {
        let tcp = match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        };
        // A peek, so a TLS record stays where the TLS layer will read it.
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match tcp.poll_peek(&mut cx, &mut buf) {
            Poll::Pending => false,
            Poll::Ready(Err(e)) => e.kind() != io::ErrorKind::WouldBlock,
            Poll::Ready(Ok(_)) => true,
        }
    }
}

impl SilenceWatch {
    /// Called while a read waits: `Ready` with the error that ends the wait once the server
    /// was silent for a whole tick and did not answer a new connection either.
    fn poll_dead(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if let Some(probe) = &mut self.probe {
                let answer = std::task::ready!(Pin::new(probe).poll(cx));
                self.probe = None;
                if let Err(reason) = answer.unwrap_or_else(|e| Err(e.to_string())) {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the server sent nothing for {:?} (pool.read_timeout_ms) and \
                             a new connection to it failed too: {reason}",
                            self.after
                        ),
                    ));
                }
                // Alive, just busy: the wait goes on for another tick.
                self.rearm();
                continue;
            }
            std::task::ready!(self.timer.as_mut().poll(cx));
            if self.heard {
                // Bytes came since the last tick (or the timer ran out while no read
                // waited, e.g. in the pool): silence is counted from this tick.
                self.heard = false;
                self.rearm();
                continue;
            }
            self.probe = Some(tokio::spawn(answers(self.options.clone())));
        }
    }

    fn rearm(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.after);
    }

    /// Bytes arrived: the server is not silent.
    fn bytes_arrived(&mut self) {
        self.heard = true;
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}

impl Drop for SilenceWatch {
    fn drop(&mut self) {
        if let Some(probe) = self.probe.take() {
            probe.abort();
        }
    }
}

/// Whether the server at `options` answers a new connection: any answer, a refusal of the
/// login included, shows it is running.
async fn answers(options: ConnectOptions) -> Result<(), String> {
    match BackendConn::connect(&options).await {
        Ok(_) | Err(BackendError::AuthFailed { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

impl AsyncRead for BackendStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let read = match &mut this.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        };
        let Some(silence) = &mut this.silence else {
            return read;
        };
        if read.is_ready() {
            silence.bytes_arrived();
            return read;
        }
        silence.poll_dead(cx).map(Err)
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_of_the_address() {
        let name = |a| server_name(a).map(|n| n.to_str().into_owned());
        assert_eq!(name("db.example:3306").as_deref(), Ok("db.example"));
        assert_eq!(name("127.0.0.1:3306").as_deref(), Ok("127.0.0.1"));
        assert_eq!(name("[::1]:3306").as_deref(), Ok("::1"));
    }

    #[tokio::test]
    async fn backend_sockets_carry_the_configured_keepalive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let options = ConnectOptions {
            keepalive: Some(Duration::from_secs(7)),
            ..ConnectOptions::plaintext("ds", &address, "u", "", None)
        };
        let stream = BackendStream::connect(&options).await.unwrap();
        let Io::Plain(tcp) = &stream.io else {
            panic!("plain TCP")
        };
        let socket = socket2::SockRef::from(tcp);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(socket.keepalive_interval().unwrap(), Duration::from_secs(7));
        assert_eq!(socket.keepalive_retries().unwrap(), 3);
    }

    #[test]
    fn a_ca_file_without_certificates_makes_tls_unusable() {
        let tls = Tls::verify_identity(b"not a certificate", "ca.pem");
        assert!(
            matches!(&tls, Tls::Unusable(reason) if reason.starts_with("ca.pem: ")),
            "{tls:?}"
        );
    }
}
