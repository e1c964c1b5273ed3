//! The browser-grade transport for everything sent to grok.com: REST calls, the Imagine WebSocket and
//! asset downloads all leave through wreq (BoringSSL) with one emulation profile, through the token's
//! proxy, carrying the Cloudflare cookies that token earned. A plain rustls hello is challenged.
//!
//! One wreq client per (profile, proxy, kind) is built on first use and kept: connections pool per
//! egress, and a token that switches profile (after a clearance) gets its own.

pub mod clearance;
pub mod profile;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use http::{HeaderMap, HeaderValue, Method};
use wreq::header::OrigHeaderMap;

pub use clearance::{Clearance, FlareSolverr};
pub use profile::BrowserProfile;

use crate::upstream::error::UpstreamError;

/// Chrome's WebSocket upgrade, header by header, as Chromium 156 sends it (captured here over ws://,
/// see docs/upstream-grok-web.md). `Sec-WebSocket-Extensions` is left out on purpose: it offers
/// permessage-deflate, which our WebSocket stack cannot inflate.
pub const CHROME_WS_HEADER_ORDER: [&str; 13] = [
    "Host",
    "Connection",
    "Pragma",
    "Cache-Control",
    "User-Agent",
    "Upgrade",
    "Origin",
    "Sec-WebSocket-Version",
    "Accept-Encoding",
    "Accept-Language",
    "Cookie",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Extensions",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// HTTP/2 (or 1.1) fetches: ALPN h2 + http/1.1, ALPS.
    Rest,
    /// The WebSocket's own HTTP/1.1 connection: Chrome offers only http/1.1 there, and no ALPS.
    WebSocket,
}

pub enum WsOpen {
    Open(Box<wreq::ws::WebSocket>),
    Refused { status: u16, headers: HeaderMap },
}

/// Where one token's traffic leaves from and what it looks like.
#[derive(Clone, Debug)]
pub struct Egress {
    pub profile: Arc<BrowserProfile>,
    pub proxy: Option<String>,
}

pub struct BrowserTransport {
    profile: Arc<BrowserProfile>,
    default_proxy: Option<String>,
    cert_store: Option<wreq::tls::trust::CertStore>,
    connect_timeout: Duration,
    clients: DashMap<(String, Option<String>, Kind), wreq::Client>,
    pub clearance: Clearance,
}

#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub profile: BrowserProfile,
    pub proxy: Option<String>,
    /// Extra PEM roots (a TLS-inspecting proxy, or the simulator's own CA).
    pub ca_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
}

/// A plain client for the services beside grok.com (FlareSolverr, a statsig signer): not grok.com, so
/// no browser fingerprint, but trusting `grok.ca_file` too, for when they sit behind the same proxy.
pub fn side_client(timeout: Duration, ca_pem: Option<&[u8]>) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("grok.ca_file: {e}"))? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Checks a proxy URL's shape at startup, so a typo is an error there and not a 502 later.
pub fn check_proxy_url(raw: &str) -> Result<(), String> {
    // The URL parser drops tabs and newlines silently; a proxy is kept one per line in the token
    // export, so one with a line break would plant a line of its own there.
    if raw.trim().chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a proxy URL may not contain spaces or control characters (line breaks)".into());
    }
    if raw.len() > 2048 {
        return Err(format!("a proxy URL of {} bytes is too long (2048 at most)", raw.len()));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("proxy `{}`: {e}", redact_proxy(raw)))?;
    if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
        return Err(format!(
            "proxy `{}`: scheme `{}` is not supported; use http, https, socks5 or socks5h",
            redact_proxy(raw),
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("proxy `{}` has no host", redact_proxy(raw)));
    }
    Ok(())
}

/// The `user:pass@` of a proxy URL, percent-decoded (`None` without a user name). Userinfo is
/// percent-encoded, not form-encoded: a `+` stays a `+`.
pub fn proxy_credentials(proxy: &url::Url) -> Option<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    (!proxy.username().is_empty()).then(|| (decode(proxy.username()), decode(proxy.password().unwrap_or(""))))
}

/// A proxy URL without its password, for logs and the admin API.
pub fn redact_proxy(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => "<unparseable proxy URL>".into(),
    }
}

impl BrowserTransport {
    pub fn new(settings: TransportSettings) -> Result<Self, String> {
        if let Some(p) = &settings.proxy {
            check_proxy_url(p)?;
        }
        let cert_store = match &settings.ca_pem {
            Some(pem) => Some(
                wreq::tls::trust::CertStore::builder()
                    .add_der_certs(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| c.as_ref()))
                    .add_stack_pem_certs(pem)
                    .build()
                    .map_err(|e| format!("grok.ca_file: {e}"))?,
            ),
            None => None,
        };
        Ok(Self {
            profile: Arc::new(settings.profile),
            default_proxy: settings.proxy,
            cert_store,
            connect_timeout: settings.connect_timeout,
            clients: DashMap::new(),
            clearance: Clearance::default(),
        })
    }

    pub fn profile(&self) -> &Arc<BrowserProfile> {
        &self.profile
    }

    /// The token's egress: its own proxy or the global one, and its profile (which a clearance
    /// service may have switched to match the User-Agent it solved with).
    pub fn egress(&self, token: &str, token_proxy: Option<&str>) -> Egress {
        Egress {
            profile: self.clearance.profile_for(token).unwrap_or_else(|| self.profile.clone()),
            proxy: token_proxy.map(str::to_owned).or_else(|| self.default_proxy.clone()),
        }
    }

    fn client(&self, egress: &Egress, kind: Kind) -> Result<wreq::Client, UpstreamError> {
        let key = (format!("{}/{:?}", egress.profile.name, egress.profile.platform), egress.proxy.clone(), kind);
        if let Some(c) = self.clients.get(&key) {
            return Ok(c.clone());
        }
        let mut emulation = wreq::IntoEmulation::into_emulation(egress.profile.emulation());
        if kind == Kind::WebSocket
            && let Some(tls) = emulation.tls_options.as_mut()
        {
            tls.alps_protocols = None;
        }
        let mut builder = wreq::Client::builder()
            .emulation(emulation)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .redirect(wreq::redirect::Policy::limited(5));
        if let Some(store) = &self.cert_store {
            builder = builder.tls_cert_store(store.clone());
        }
        builder = match &egress.proxy {
            Some(p) => builder.proxy(
                wreq::Proxy::all(p.as_str())
                    .map_err(|e| UpstreamError::ProxyFailed(format!("proxy {}: {e}", redact_proxy(p))))?,
            ),
            None => builder.no_proxy(),
        };
        let client = builder.build().map_err(|e| UpstreamError::Transport(format!("cannot build HTTP client: {e}")))?;
        self.clients.insert(key, client.clone());
        Ok(client)
    }

    /// A request with the profile's identity headers (User-Agent, client hints) on top of `headers`.
    pub fn request(
        &self,
        egress: &Egress,
        method: Method,
        url: &str,
        mut headers: HeaderMap,
    ) -> Result<wreq::RequestBuilder, UpstreamError> {
        for (k, v) in egress.profile.identity_headers() {
            headers.insert(k, v);
        }
        Ok(self.client(egress, Kind::Rest)?.request(method, url).headers(headers))
    }

    /// Opens the WebSocket with the header set, order and case of the browser's own upgrade.
    pub async fn websocket(
        &self,
        egress: &Egress,
        url: &str,
        origin: &str,
        cookie: &str,
    ) -> Result<WsOpen, UpstreamError> {
        let mut order = OrigHeaderMap::new();
        for name in CHROME_WS_HEADER_ORDER {
            order.insert(name);
        }
        let mut req = self
            .client(egress, Kind::WebSocket)?
            .websocket(url)
            .default_headers(false)
            .orig_headers(order)
            .header("pragma", "no-cache")
            .header("cache-control", "no-cache")
            .header("user-agent", egress.profile.user_agent.as_str())
            .header("origin", origin)
            .header("accept-encoding", "gzip, deflate, br, zstd")
            .header("accept-language", "en-US,en;q=0.9");
        if let Ok(v) = HeaderValue::from_str(cookie) {
            req = req.header("cookie", v);
        }
        let resp = req.send().await.map_err(|e| map_error(&e, egress))?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            // The refusal's body stays with wreq; status and headers are enough to classify it.
            return Ok(WsOpen::Refused { status: resp.status().as_u16(), headers: resp.headers().clone() });
        }
        resp.into_websocket().await.map(|ws| WsOpen::Open(Box::new(ws))).map_err(|e| map_error(&e, egress))
    }
}

/// Sorts a wreq failure into what the caller should do: a broken proxy is that token's problem.
pub fn map_error(e: &wreq::Error, egress: &Egress) -> UpstreamError {
    let detail = error_chain(e);
    if e.is_timeout() {
        return UpstreamError::Timeout(detail);
    }
    if let Some(proxy) = &egress.proxy
        && (e.is_proxy_connect() || e.is_connect())
    {
        return UpstreamError::ProxyFailed(format!("through proxy {}: {detail}", redact_proxy(proxy)));
    }
    UpstreamError::Transport(detail)
}

/// wreq's top-level message is generic ("error sending request"); the cause is further down.
fn error_chain(e: &wreq::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::browser::*;

    #[test]
    fn proxy_urls_are_checked_and_redacted() {
        for ok in ["http://p:8080", "https://u:pw@p:443", "socks5://u:pw@127.0.0.1:1080", "socks5h://p:1080"] {
            assert!(check_proxy_url(ok).is_ok(), "{ok}");
        }
        for bad in ["ftp://p:21", "p:8080", "socks4://p:1080", "http://"] {
            assert!(check_proxy_url(bad).is_err(), "{bad}");
        }
        assert_eq!(redact_proxy("socks5://user:secret@10.0.0.1:1080"), "socks5://user:***@10.0.0.1:1080");
        assert!(!check_proxy_url("ftp://u:secret@p").unwrap_err().contains("secret"));
        let creds = |u: &str| proxy_credentials(&url::Url::parse(u).unwrap());
        assert_eq!(creds("socks5://acct:p%40ss+1@h:1080"), Some(("acct".into(), "p@ss+1".into())));
        assert_eq!(creds("http://h:8080"), None);
    }
}
