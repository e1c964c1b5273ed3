//! Local forward proxies for the egress tests: an HTTP CONNECT proxy and a SOCKS5 proxy, both with
//! username/password auth, on ephemeral loopback ports. They count the tunnels they open, so a test
//! can see that traffic really went through them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub struct TestProxy {
    pub addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// Tunnels opened after a successful authentication.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// Requests turned away for bad or missing credentials.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn url(&self, scheme: &str, user: &str, pass: &str) -> String {
        format!("{scheme}://{user}:{pass}@{}", self.addr)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Http,
    Socks5,
}

async fn start(kind: Kind, user: &'static str, pass: &'static str) -> TestProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tunnels = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (t, r) = (tunnels.clone(), refused.clone());
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (t, r) = (t.clone(), r.clone());
            tokio::spawn(async move {
                let result = match kind {
                    Kind::Http => http_connect(client, user, pass).await,
                    Kind::Socks5 => socks5_handshake(client, user, pass).await,
                };
                match result {
                    Ok(Some((mut client, mut upstream))) => {
                        t.fetch_add(1, Ordering::SeqCst);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Ok(None) => {
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => {}
                }
            });
        }
    });
    TestProxy { addr, tunnels, refused, task }
}

pub async fn http(user: &'static str, pass: &'static str) -> TestProxy {
    start(Kind::Http, user, pass).await
}

pub async fn socks5(user: &'static str, pass: &'static str) -> TestProxy {
    start(Kind::Socks5, user, pass).await
}

type Tunnel = Option<(TcpStream, TcpStream)>;

async fn http_connect(client: TcpStream, user: &str, pass: &str) -> std::io::Result<Tunnel> {
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let mut authorized = false;
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")));
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("proxy-authorization")
            && v.trim() == want
        {
            authorized = true;
        }
    }
    let mut client = reader.into_inner();
    if !line.starts_with("CONNECT ") {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n").await?;
        return Ok(None);
    }
    if !authorized {
        client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(None);
    }
    match TcpStream::connect(&target).await {
        Ok(upstream) => {
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await?;
            Ok(Some((client, upstream)))
        }
        Err(_) => {
            client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await?;
            Ok(None)
        }
    }
}

/// RFC 1928 with RFC 1929 username/password auth; CONNECT only.
async fn socks5_handshake(mut client: TcpStream, user: &str, pass: &str) -> std::io::Result<Tunnel> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; head[1] as usize];
    client.read_exact(&mut methods).await?;
    if head[0] != 5 || !methods.contains(&2) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(None);
    }
    client.write_all(&[5, 2]).await?;
    let mut ver_ulen = [0u8; 2];
    client.read_exact(&mut ver_ulen).await?;
    let mut u = vec![0u8; ver_ulen[1] as usize];
    client.read_exact(&mut u).await?;
    let mut plen = [0u8; 1];
    client.read_exact(&mut plen).await?;
    let mut p = vec![0u8; plen[0] as usize];
    client.read_exact(&mut p).await?;
    if u != user.as_bytes() || p != pass.as_bytes() {
        client.write_all(&[1, 1]).await?;
        return Ok(None);
    }
    client.write_all(&[1, 0]).await?;
    let mut req = [0u8; 4];
    client.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        _ => return Ok(None),
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    match TcpStream::connect(&target).await {
        Ok(upstream) => {
            client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            Ok(Some((client, upstream)))
        }
        Err(_) => {
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            Ok(None)
        }
    }
}
