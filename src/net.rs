//! Fetching URLs that users hand us (image_url inputs; later callback targets) without letting them
//! aim the gateway at its own network: resolve first, refuse loopback / private / link-local / CGNAT /
//! multicast / metadata addresses, pin the connection to the checked address, and follow redirects by
//! hand so every hop is checked again.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use url::Url;

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Allow private and loopback targets (a trusted internal network).
    pub allow_private: bool,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Host → base URL to use instead (e.g. `example.com` → the demo simulator). Operator-chosen
    /// targets are trusted: they skip the address check.
    pub host_overrides: HashMap<String, String>,
    /// An extra root (PEM) for override targets served over TLS by a private CA (the demo simulator).
    pub extra_root_pem: Option<String>,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            max_redirects: 3,
            host_overrides: HashMap::new(),
            extra_root_pem: None,
        }
    }
}

/// The address a request came from (the peer, or with trusted proxies the client they name), set on
/// every request by the server for limits keyed by client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn of(extensions: &http::Extensions) -> IpAddr {
        extensions.get::<Self>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0)
    }

    /// The bucket a limit keyed by client uses: the address, or for IPv6 its /64 (one host usually
    /// holds a whole /64, and could otherwise pick a fresh address per request).
    pub fn bucket(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
            v4 => v4,
        }
    }
}

/// `server.trusted_proxies`: networks whose `X-Forwarded-For` is believed. The client is the
/// right-most address in that header that is not itself a trusted proxy.
#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for raw in list {
            let bad = || format!("server.trusted_proxies: `{raw}` is not an address or a network (a.b.c.d/n)");
            let (addr, len) = match raw.trim().split_once('/') {
                Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
                None => (raw.trim(), None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return Err(bad());
            }
            nets.push((ip, len));
        }
        Ok(Self(nets))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }

    /// Who a request from `peer` is from.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                // A hop we cannot read: the last address we could is as far as the chain is known.
                Err(_) => break,
            }
        }
        client
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// The URL itself is unacceptable (scheme, userinfo, forbidden address): the caller's mistake.
    #[error("{0}")]
    Forbidden(String),
    /// The target could not be fetched (DNS, connection, status, size, time).
    #[error("{0}")]
    Failed(String),
}

/// Why an address may not be a target, or `None` when it is a public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "unspecified (0.0.0.0/8)",
        [127, ..] => "loopback",
        [10, ..] => "private (10.0.0.0/8)",
        [172, b, ..] if (16..=31).contains(&b) => "private (172.16.0.0/12)",
        [192, 168, ..] => "private (192.168.0.0/16)",
        [169, 254, ..] => "link-local / cloud metadata (169.254.0.0/16)",
        [100, b, ..] if (64..=127).contains(&b) => "carrier-grade NAT (100.64.0.0/10)",
        [192, 0, 0, _] => "IETF protocol assignments (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation range",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        [a, ..] if (224..=239).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved / broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    // Ranges that carry an IPv4 address inside, which a relay or translator may deliver to: any
    // IPv4 address could hide there, so none is allowed (RFC 6052, 8215, 3056, 4380, 2765).
    match s {
        [0, 0, 0, 0, 0xffff, 0, _, _] => return Some("IPv4-translated (::ffff:0:0/96)"),
        [0x64, 0xff9b, 1, ..] => return Some("local-use NAT64 (64:ff9b:1::/48)"),
        [0x2002, ..] => return Some("6to4 (2002::/16)"),
        [0x2001, 0, ..] => return Some("Teredo (2001::/32)"),
        _ => {}
    }
    // NAT64 (64:ff9b::/96) embeds an IPv4 address that is the real destination.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    Some(match s {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0x0db8, ..] => "documentation (2001:db8::/32)",
        // IPv4-compatible (deprecated) ::a.b.c.d
        [0, 0, 0, 0, 0, 0, ..] => "IPv4-compatible address",
        _ => return None,
    })
}

fn check_addrs(host: &str, addrs: &[SocketAddr], policy: &FetchPolicy) -> Result<(), FetchError> {
    if addrs.is_empty() {
        return Err(FetchError::Failed(format!("{host} does not resolve")));
    }
    if policy.allow_private {
        return Ok(());
    }
    // Every address must be acceptable, or a second DNS record could smuggle a private one in.
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok();
    for a in addrs {
        if let Some(reason) = forbidden_reason(a.ip()) {
            // Which internal address a name has is the gateway's secret: a refusal must not map the
            // internal network for whoever asks. A literal address can be told why.
            return Err(FetchError::Forbidden(if literal {
                format!("{host} is a {reason} address, which is not allowed")
            } else {
                format!("{host} does not resolve to a public address, which is required")
            }));
        }
    }
    Ok(())
}

/// Checks a URL's shape: http(s), no userinfo, a host.
pub fn parse_target(raw: &str) -> Result<Url, FetchError> {
    let url = Url::parse(raw.trim()).map_err(|e| FetchError::Forbidden(format!("not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Forbidden(format!("scheme `{}` is not allowed; use https", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::Forbidden("URLs with credentials (user:pass@) are not allowed".into()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::Forbidden("URL has no host".into()));
    }
    Ok(url)
}

/// Resolves `url`'s host and checks every address; returns the URL to request and the address to pin.
pub async fn resolve_checked(url: &Url, policy: &FetchPolicy) -> Result<(Url, SocketAddr), FetchError> {
    let host = url.host_str().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    if let Some(base) = policy.host_overrides.get(&host) {
        let mut target = parse_target(&format!("{}{}", base.trim_end_matches('/'), url.path()))
            .map_err(|e| FetchError::Failed(format!("bad host override for {host}: {e}")))?;
        target.set_query(url.query());
        let addr = lookup(&target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| FetchError::Failed(format!("{host}: no address")))?;
        return Ok((target, addr));
    }
    let addrs = lookup(url).await?;
    check_addrs(&host, &addrs, policy)?;
    Ok((url.clone(), addrs[0]))
}

async fn lookup(url: &Url) -> Result<Vec<SocketAddr>, FetchError> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    // IPv6 literals come bracketed in URLs.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| FetchError::Failed(format!("cannot resolve {host}: {e}")))?;
    Ok(addrs.collect())
}

/// GETs `raw` under `policy`; returns the body and the response's Content-Type.
pub async fn fetch(raw: &str, policy: &FetchPolicy) -> Result<(Bytes, Option<String>), FetchError> {
    tokio::time::timeout(policy.timeout, fetch_inner(raw, policy))
        .await
        .map_err(|_| FetchError::Failed(format!("fetching the URL took longer than {}s", policy.timeout.as_secs())))?
}

async fn fetch_inner(raw: &str, policy: &FetchPolicy) -> Result<(Bytes, Option<String>), FetchError> {
    let mut url = parse_target(raw)?;
    for _ in 0..=policy.max_redirects {
        let (target, addr) = resolve_checked(&url, policy).await?;
        let host = target.host_str().unwrap_or_default().to_owned();
        // No HTTP(S)_PROXY from the environment: a proxy would resolve the host itself, and the
        // address checked above would not be the one connected to.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .connect_timeout(policy.timeout);
        if let Some(pem) = &policy.extra_root_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| FetchError::Failed(format!("extra root certificate: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| FetchError::Failed(format!("HTTP client: {e}")))?;
        let resp = client
            .get(target.clone())
            .header("accept", "image/*")
            .send()
            .await
            .map_err(|e| FetchError::Failed(format!("cannot fetch {}: {e}", redact(&target))))?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::Failed("redirect without Location".into()))?;
            let next = target.join(location).map_err(|e| FetchError::Forbidden(format!("bad redirect target: {e}")))?;
            url = parse_target(next.as_str())?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Failed(format!("{} answered HTTP {}", redact(&target), status.as_u16())));
        }
        if resp.content_length().is_some_and(|n| n > policy.max_bytes as u64) {
            return Err(FetchError::Failed(format!("the file is larger than {} bytes", policy.max_bytes)));
        }
        let content_type =
            resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| FetchError::Failed(format!("download broke: {e}")))?;
            if body.len() + chunk.len() > policy.max_bytes {
                return Err(FetchError::Failed(format!("the file is larger than {} bytes", policy.max_bytes)));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok((Bytes::from(body), content_type));
    }
    Err(FetchError::Failed(format!("more than {} redirects", policy.max_redirects)))
}

/// The URL without query (signed URLs carry secrets there) for messages.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::7f00:1",
            "::ffff:0:7f00:1",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden_reason(ip(bad)).is_some(), "{bad} must be forbidden");
        }
        for good in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(forbidden_reason(ip(good)), None, "{good} must be allowed");
        }
    }

    #[test]
    fn trusted_proxies_name_the_client_and_nobody_else_can() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.1.1.1".parse().unwrap());
        // From a trusted proxy: the right-most hop that is not a proxy of ours.
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        assert_eq!(t.client(ip("::1"), &h), ip("198.51.100.7"));
        // From anyone else the header is theirs to forge: the peer it is.
        assert_eq!(t.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nonsense".into()]).is_err());
        assert_eq!(ClientAddr::bucket(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(ClientAddr::bucket(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }

    #[tokio::test]
    async fn a_refused_name_does_not_say_where_it_points() {
        let e = fetch("http://localhost:9/x.png", &FetchPolicy::default()).await.unwrap_err().to_string();
        assert!(e.contains("does not resolve to a public address") && !e.contains("127.0.0.1"), "{e}");
        let e = fetch("http://127.0.0.1:9/x.png", &FetchPolicy::default()).await.unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn url_shapes() {
        assert!(parse_target("https://example.com/a.png").is_ok());
        assert!(parse_target("ftp://example.com/a.png").is_err());
        assert!(parse_target("file:///etc/passwd").is_err());
        assert!(parse_target("https://user:pw@example.com/").is_err());
        assert!(parse_target("not a url").is_err());
    }

    #[tokio::test]
    async fn literal_and_named_loopback_are_refused() {
        let p = FetchPolicy::default();
        for raw in [
            "http://127.0.0.1:9/x.png",
            "http://[::1]:9/x.png",
            "http://localhost:9/x.png",
            "http://169.254.169.254/latest",
        ] {
            assert!(matches!(fetch(raw, &p).await, Err(FetchError::Forbidden(_))), "{raw}");
        }
    }
}
