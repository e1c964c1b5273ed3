//! The steps below the browser: DNS, a TCP connection to grok.com or to the proxy, and the proxy's
//! tunnel with its credentials.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::upstream::grok_web::browser::{proxy_credentials, redact_proxy};
use crate::upstream::grok_web::doctor::{Probe, Run, fail};

/// Where the probe connects: grok.com's host and port, the proxy when there is one, and the address
/// DNS gave (when this machine resolves names, not the proxy).
pub(super) struct Target {
    host: String,
    port: u16,
    proxy: Option<url::Url>,
    resolved: Option<SocketAddr>,
}

impl Probe {
    /// DNS: ours, unless the proxy resolves names for us.
    pub(super) async fn dns(&self, run: &mut Run) -> Option<Target> {
        let base_url = &self.base_url;
        let Ok(url) = url::Url::parse(base_url) else {
            run.record("dns", Instant::now(), fail(format!("`{base_url}` is not a URL"), "fix grok.base_url"));
            return None;
        };
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let proxy = self.proxy.as_deref().and_then(|p| url::Url::parse(p).ok());
        let connect_timeout = self.connect_timeout;

        let started = Instant::now();
        let remote_dns = proxy.as_ref().is_some_and(|p| p.scheme() != "socks5");
        let mut resolved: Option<SocketAddr> = None;
        if remote_dns {
            run.skip("dns", "names are resolved by the proxy");
        } else {
            let ok = match tokio::time::timeout(connect_timeout, tokio::net::lookup_host((host.as_str(), port))).await {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(a) => {
                        resolved = Some(a);
                        Ok(format!("{host} → {}", a.ip()))
                    }
                    None => fail(format!("{host} has no address"), "check the host name and this machine's DNS"),
                },
                Ok(Err(e)) => fail(
                    format!("{host}: {e}"),
                    "check the host name and this machine's DNS (/etc/resolv.conf), or use a socks5h:// proxy",
                ),
                Err(_) => fail(
                    format!("{host}: no answer in {}s", connect_timeout.as_secs()),
                    "this machine's DNS is not answering",
                ),
            };
            if !run.record("dns", started, ok) {
                return None;
            }
        }
        Some(Target { host, port, proxy, resolved })
    }

    /// TCP: to grok.com, or to the proxy when there is one.
    pub(super) async fn tcp(&self, run: &mut Run, target: &Target) -> Option<TcpStream> {
        let connect_timeout = self.connect_timeout;
        let started = Instant::now();
        let tcp_target = match &target.proxy {
            Some(p) => format!("{}:{}", p.host_str().unwrap_or_default(), p.port_or_known_default().unwrap_or(1080)),
            None => target.resolved.map(|a| a.to_string()).unwrap_or_default(),
        };
        let what = if target.proxy.is_some() { "the proxy" } else { "the upstream" };
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(&tcp_target)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("{tcp_target}: {e}")),
            Err(_) => Err(format!("{tcp_target}: no answer in {}s", connect_timeout.as_secs())),
        };
        match tcp {
            Ok(s) => {
                run.record("tcp", started, Ok(format!("connected to {what} at {tcp_target}")));
                Some(s)
            }
            Err(e) => {
                let advice = if target.proxy.is_some() {
                    "the proxy is not reachable: check its address and that it is running"
                } else {
                    "grok.com is not reachable from here: a firewall? try a proxy (grok.proxy)"
                };
                run.record("tcp", started, fail(e, advice));
                None
            }
        }
    }

    /// Proxy: a tunnel to grok.com through it, with its credentials.
    pub(super) async fn proxy(&self, run: &mut Run, tcp: TcpStream, target: &Target) -> Option<()> {
        let (host, port) = (&target.host, target.port);
        match &target.proxy {
            None => {
                // The probe connection has served its purpose; the TLS step opens its own.
                drop(tcp);
                run.skip("proxy", "no proxy configured");
            }
            Some(p) => {
                let started = Instant::now();
                let result = tunnel(tcp, p, host, port).await;
                let ok = match result {
                    Ok(()) => Ok(format!("tunnel to {host}:{port} through {}", redact_proxy(p.as_str()))),
                    Err(e) => fail(e, "check the proxy's credentials and that it allows CONNECT to :443"),
                };
                if !run.record("proxy", started, ok) {
                    return None;
                }
            }
        }
        Some(())
    }
}

/// Opens a tunnel to `host:port` through the proxy on `tcp` (HTTP CONNECT or SOCKS5, with auth).
async fn tunnel(tcp: TcpStream, proxy: &url::Url, host: &str, port: u16) -> Result<(), String> {
    let credentials = proxy_credentials(proxy);
    match proxy.scheme() {
        "socks5" | "socks5h" => {
            let target = (host, port);
            let result = match &credentials {
                None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, target).await,
                Some((user, pass)) => {
                    tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(tcp, target, user, pass).await
                }
            };
            result.map(|_| ()).map_err(|e| format!("SOCKS5: {e}"))
        }
        "http" => {
            let mut tcp = tcp;
            let mut req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n");
            if let Some((user, pass)) = &credentials {
                use base64::Engine;
                let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                req.push_str(&format!("Proxy-Authorization: Basic {cred}\r\n"));
            }
            req.push_str("\r\n");
            tcp.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut line = String::new();
            let mut reader = BufReader::new(tcp);
            tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
                .await
                .map_err(|_| "the proxy did not answer CONNECT".to_owned())?
                .map_err(|e| e.to_string())?;
            match line.split_whitespace().nth(1) {
                Some("200") => Ok(()),
                Some("407") => Err("HTTP 407: the proxy refused the credentials".into()),
                Some(code) => Err(format!("the proxy answered CONNECT with HTTP {code}")),
                None => Err("the proxy closed the connection".into()),
            }
        }
        // A TLS connection to the proxy itself: the TLS step goes through it.
        _ => Ok(()),
    }
}
