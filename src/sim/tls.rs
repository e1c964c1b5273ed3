//! `sim --tls`: HTTPS/WSS with a certificate made at start (its CA handed to the gateway through
//! `grok.ca_file`), and every connection's ClientHello read before the handshake so the Cloudflare
//! gate (`cloudflare.rs`) can compare its JA4 with the browser the User-Agent claims. The plaintext
//! request head of each connection is kept too, for the WebSocket upgrade's header order and case.

use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, Chain, Join};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::io::InspectReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ja4::{self, HelloRead};

/// Bytes of each connection's plaintext kept for the header checks: a request head fits.
const HEAD_CAPTURE: usize = 16 * 1024;
const PRE_SHARED_KEY: u16 = 0x0029;
const EARLY_DATA: u16 = 0x002a;

/// The simulator's certificate authority and the acceptor serving a leaf it signed.
pub struct SimTls {
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

impl SimTls {
    /// A fresh CA and a leaf for localhost / 127.0.0.1 / ::1, valid for this process only.
    pub fn generate() -> Result<Self, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let err = |e: rcgen::Error| format!("simulator certificate: {e}");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "grok2api simulator CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])
                .map_err(err)?;
        leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().map_err(err)?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;

        crate::install_crypto_provider();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| format!("simulator key: {e}"))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca_cert.der().clone()], key)
            .map_err(|e| format!("simulator TLS config: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { ca_pem: ca_cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
    }
}

/// What the simulator knows of a connection: the peer, its hello's JA4, and its first plaintext bytes.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub ja4: Arc<str>,
    pub head: Arc<Mutex<Vec<u8>>>,
}

impl ConnInfo {
    /// The first request head on this connection (HTTP/1.1 only), header names as sent.
    pub fn header_names(&self) -> Vec<String> {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let text = String::from_utf8_lossy(&head);
        let Some((head, _)) = text.split_once("\r\n\r\n") else { return Vec::new() };
        head.split("\r\n").skip(1).filter_map(|l| l.split_once(':').map(|(k, _)| k.to_owned())).collect()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The TCP stream with the ClientHello we already read put back in front of it.
type Replayed = Join<Chain<Cursor<Bytes>, OwnedReadHalf>, OwnedWriteHalf>;
/// The TLS stream, copying the first plaintext bytes it reads into `ConnInfo::head`.
pub type TlsIo = InspectReader<TlsStream<Replayed>, Tap>;
type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// Hands out connections whose TLS handshake is done; handshakes run in their own tasks so a slow
/// client cannot hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsIo, ConnInfo)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = TlsIo;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended (shutdown): no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnInfo { remote: self.local, ja4: Arc::from(""), head: Arc::default() })
    }
}

/// Starts accepting on `listener`; connections come out of the returned listener until `stop`.
pub fn listen(tls: &SimTls, listener: TcpListener, stop: CancellationToken) -> io::Result<TlsListener> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tls.acceptor.clone();
    let tracker = TaskTracker::new();
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("simulator accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tracker.spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), handshake(acceptor, tcp, remote)).await {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(conn).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "simulator TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%remote, "simulator TLS handshake timed out"),
                }
            });
        }
        tracker.close();
        tracker.wait().await;
    });
    Ok(TlsListener { rx, local })
}

async fn handshake(acceptor: TlsAcceptor, mut tcp: TcpStream, remote: SocketAddr) -> io::Result<(TlsIo, ConnInfo)> {
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let len = loop {
        match ja4::hello_len(&buf) {
            HelloRead::Complete(n) => break n,
            HelloRead::NotTls => return Err(io::Error::new(io::ErrorKind::InvalidData, "not a TLS ClientHello")),
            HelloRead::Incomplete => {
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    let mut hello = ja4::parse(&buf[..len]).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    // A resumed session adds pre_shared_key (and early_data) to the same browser's hello; judge the
    // browser, not whether it has been here before.
    hello.extensions.retain(|&e| e != PRE_SHARED_KEY && e != EARLY_DATA);
    let ja4: Arc<str> = Arc::from(hello.ja4());
    let (read, write) = tcp.into_split();
    let replayed = tokio::io::join(Cursor::new(Bytes::from(buf)).chain(read), write);
    let stream = acceptor.accept(replayed).await?;
    let head = Arc::new(Mutex::new(Vec::new()));
    let record = head.clone();
    let tap: Tap = Box::new(move |bytes: &[u8]| {
        let mut head = record.lock().unwrap_or_else(|p| p.into_inner());
        let take = bytes.len().min(HEAD_CAPTURE.saturating_sub(head.len()));
        head.extend_from_slice(&bytes[..take]);
    });
    Ok((InspectReader::new(stream, tap), ConnInfo { remote, ja4, head }))
}
