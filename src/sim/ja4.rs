//! TLS ClientHello parsing and JA4 fingerprints (FoxIO's JA4, TLS-over-TCP only).
//!
//! The fingerprint must agree byte for byte with `shared/tools/tls_fingerprint.py`, which is what
//! the expected browser fingerprints were measured with; where that tool departs from the FoxIO
//! spec (an empty cipher or extension list hashes "" instead of giving "000000000000", an unknown
//! version gives "00", ALPN characters are taken as they are) this module follows the tool.

use sha2::{Digest, Sha256};

/// A peeked ClientHello larger than this is treated as not TLS, so a client cannot make the server
/// buffer without bound. Real hellos with post-quantum key shares are about 2 KiB.
const MAX_HELLO: usize = 64 * 1024;
/// RFC 8446 §5.1: a plaintext record fragment is at most 2^14 bytes.
const MAX_RECORD: usize = 1 << 14;
const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloRead {
    /// Peek more bytes and ask again.
    Incomplete,
    /// The whole ClientHello message, with the headers of every record it spans, is this many bytes.
    Complete(usize),
    NotTls,
}

/// The ClientHello as sent: GREASE values kept, every list in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub supported_versions: Vec<u16>,
    pub signature_algorithms: Vec<u16>,
    pub groups: Vec<u16>,
}

/// How much of `buf` (bytes peeked from a fresh connection) holds the whole ClientHello.
pub fn hello_len(buf: &[u8]) -> HelloRead {
    walk(buf, |_| {})
}

/// Walks the handshake records at the start of `buf`, handing each complete fragment to `sink`,
/// until the first handshake message is complete. A ClientHello may be split over several records
/// (and its 4-byte header over two of them), so the message length is only known once four
/// handshake bytes have arrived.
fn walk(buf: &[u8], mut sink: impl FnMut(&[u8])) -> HelloRead {
    // Reject plaintext protocols (HTTP, SSLv2, ...) on the first bytes, without waiting for more.
    match (buf.first(), buf.get(1), buf.get(5)) {
        (Some(&t), _, _) if t != HANDSHAKE => return HelloRead::NotTls,
        (_, Some(&major), _) if major != 3 => return HelloRead::NotTls,
        (_, _, Some(&msg)) if msg != CLIENT_HELLO => return HelloRead::NotTls,
        _ => {}
    }
    let (mut pos, mut got, mut header) = (0usize, 0usize, [0u8; 4]);
    loop {
        let rec = buf.get(pos..).unwrap_or_default();
        let (Some(&kind), Some(&major), Some(&hi), Some(&lo)) = (rec.first(), rec.get(1), rec.get(3), rec.get(4))
        else {
            return HelloRead::Incomplete;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        // Zero-length handshake fragments are forbidden (RFC 8446 §5.1), which also rules out a
        // client that keeps us walking empty records.
        if kind != HANDSHAKE || major != 3 || len == 0 || len > MAX_RECORD {
            return HelloRead::NotTls;
        }
        let Some(frag) = rec.get(5..5 + len) else {
            return HelloRead::Incomplete;
        };
        for (slot, &b) in header.iter_mut().skip(got).zip(frag) {
            *slot = b;
        }
        got += len;
        pos += 5 + len;
        sink(frag);
        if got >= 4 {
            let [msg, a, b, c] = header;
            let need = 4 + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
            if msg != CLIENT_HELLO || need > MAX_HELLO || pos > MAX_HELLO {
                return HelloRead::NotTls;
            }
            if got >= need {
                return HelloRead::Complete(pos);
            }
        }
    }
}

/// Bounds-checked big-endian reader; every read either succeeds or fails the parse.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!("ClientHello truncated: wanted {n} bytes, {} left", self.0.len()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(u8::from_be_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?.try_into().map_err(|_| "unreachable: take returned a short slice".to_string())
    }
    fn vec8(&mut self) -> Result<Reader<'a>, String> {
        let n = self.u8()?;
        Ok(Reader(self.take(usize::from(n))?))
    }
    fn vec16(&mut self) -> Result<Reader<'a>, String> {
        let n = self.u16()?;
        Ok(Reader(self.take(usize::from(n))?))
    }
    fn u16s(mut self) -> Result<Vec<u16>, String> {
        let mut out = Vec::with_capacity(self.0.len() / 2);
        while !self.0.is_empty() {
            out.push(self.u16()?);
        }
        Ok(out)
    }
}

/// Parses the ClientHello at the start of `buf` (from the first record header on). Bytes after the
/// record that completes the hello are ignored.
pub fn parse(buf: &[u8]) -> Result<ClientHello, String> {
    let mut msg = Vec::new();
    match walk(buf, |frag| msg.extend_from_slice(frag)) {
        HelloRead::Complete(_) => {}
        HelloRead::Incomplete => return Err("ClientHello incomplete".into()),
        HelloRead::NotTls => return Err("not a TLS ClientHello".into()),
    }
    let mut r = Reader(&msg);
    let [_, a, b, c] = r.array()?;
    let mut body = Reader(r.take(usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c))?);
    let mut hello = ClientHello { legacy_version: body.u16()?, ..ClientHello::default() };
    body.take(32)?; // random
    body.vec8()?; // legacy_session_id
    hello.ciphers = body.vec16()?.u16s()?;
    body.vec8()?; // legacy_compression_methods
    // A TLS 1.2 hello may end here, without an extensions block.
    let mut exts = if body.0.is_empty() { Reader(&[]) } else { body.vec16()? };
    while !exts.0.is_empty() {
        let id = exts.u16()?;
        let mut data = exts.vec16()?;
        hello.extensions.push(id);
        // Like the reference tool, a repeated extension overwrites (ALPN appends); a real TLS stack
        // would reject such a hello outright.
        match id {
            0x0000 => {
                let mut names = data.vec16()?;
                while !names.0.is_empty() {
                    let kind = names.u8()?;
                    let name = names.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        hello.sni = Some(String::from_utf8_lossy(name.0).into_owned());
                    }
                }
            }
            0x0010 => {
                let mut protos = data.vec16()?;
                while !protos.0.is_empty() {
                    hello.alpn.push(String::from_utf8_lossy(protos.vec8()?.0).into_owned());
                }
            }
            0x000a => hello.groups = data.vec16()?.u16s()?,
            0x000d => hello.signature_algorithms = data.vec16()?.u16s()?,
            0x002b => hello.supported_versions = data.vec8()?.u16s()?,
            _ => {}
        }
    }
    Ok(hello)
}

/// GREASE (RFC 8701): 0x0a0a, 0x1a1a, ..., 0xfafa. Clients sprinkle these at random positions, so
/// a fingerprint that kept them would change from one connection to the next.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn hash12(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

fn hex_list(ids: impl Iterator<Item = u16>) -> String {
    ids.map(|v| format!("{v:04x}")).collect::<Vec<_>>().join(",")
}

impl ClientHello {
    pub fn ja4(&self) -> String {
        let [a, b, c] = self.ja4_parts();
        format!("{a}_{b}_{c}")
    }

    /// JA4_a, JA4_b and JA4_c. Lists are sorted before hashing because Chrome permutes its
    /// extension order per connection; only the signature algorithms keep their order.
    pub fn ja4_parts(&self) -> [String; 3] {
        let mut ciphers: Vec<u16> = self.ciphers.iter().copied().filter(|&v| !is_grease(v)).collect();
        let exts: Vec<u16> = self.extensions.iter().copied().filter(|&v| !is_grease(v)).collect();
        let version = self.supported_versions.iter().copied().filter(|&v| !is_grease(v)).max();
        let version = match version.unwrap_or(self.legacy_version) {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            _ => "00",
        };
        let sni = if exts.contains(&0x0000) { 'd' } else { 'i' };
        let first = self.alpn.first().map(String::as_str).unwrap_or_default();
        let alpn = match (first.chars().next(), first.chars().last()) {
            (Some(x), Some(y)) => format!("{x}{y}"),
            _ => "00".to_string(),
        };
        let a = format!("t{version}{sni}{:02}{:02}{alpn}", ciphers.len().min(99), exts.len().min(99));

        ciphers.sort_unstable();
        let b = hash12(&hex_list(ciphers.into_iter()));

        let mut sorted: Vec<u16> = exts.into_iter().filter(|&v| v != 0x0000 && v != 0x0010).collect();
        sorted.sort_unstable();
        let mut c = hex_list(sorted.into_iter());
        let sigs = hex_list(self.signature_algorithms.iter().copied().filter(|&v| !is_grease(v)));
        if !sigs.is_empty() {
            c = format!("{c}_{sigs}");
        }
        [a, b, hash12(&c)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOSNI: &[u8] = include_bytes!("../../tests/fixtures/tls/chromium-156-nosni.bin");
    const SNI: &[u8] = include_bytes!("../../tests/fixtures/tls/chromium-156-sni.bin");
    const CURL: &[u8] = include_bytes!("../../tests/fixtures/tls/curl-openssl.bin");
    const PYTHON: &[u8] = include_bytes!("../../tests/fixtures/tls/python-ssl-openssl.bin");

    #[test]
    fn fixtures_match_the_reference_tool() {
        let cases = [
            (NOSNI, "t13i1516h2_8daaf6152771_cb7bf5808d99", None),
            (SNI, "t13d1517h2_8daaf6152771_cb7bf5808d99", Some("localhost")),
            (CURL, "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", Some("localhost")),
            (PYTHON, "t13d181100_85036bcba153_d41ae481755e", Some("localhost")),
        ];
        for (buf, ja4, sni) in cases {
            assert_eq!(hello_len(buf), HelloRead::Complete(buf.len()));
            let hello = parse(buf).unwrap();
            assert_eq!(hello.ja4(), ja4);
            assert_eq!(hello.sni.as_deref(), sni);
        }
        let chrome = parse(SNI).unwrap();
        assert_eq!(chrome.alpn, ["h2", "http/1.1"]);
        assert!(is_grease(chrome.ciphers[0]) && is_grease(chrome.supported_versions[0]));
        assert!(chrome.extensions.contains(&0xfe0d) && chrome.extensions.contains(&0x44cd)); // ECH, ALPS
        assert_eq!(chrome.groups[1..], [0x11ec, 0x001d, 0x0017, 0x0018]); // X25519MLKEM768 first
    }

    /// Re-frames a one-record hello into records of `sizes` bytes (the last size repeats).
    fn reframe(one: &[u8], sizes: &[usize]) -> Vec<u8> {
        let (mut out, mut msg, mut i) = (Vec::new(), &one[5..], 0);
        while !msg.is_empty() {
            let n = sizes[i.min(sizes.len() - 1)].min(msg.len());
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
            out.extend_from_slice(&msg[..n]);
            msg = &msg[n..];
            i += 1;
        }
        out
    }

    #[test]
    fn hello_spanning_records() {
        let want = parse(SNI).unwrap();
        for sizes in [&[2usize, 1, 500][..], &[1], &[1000]] {
            let mut buf = reframe(SNI, sizes);
            let total = buf.len();
            for n in 0..total {
                assert_eq!(hello_len(&buf[..n]), HelloRead::Incomplete, "prefix {n} of {sizes:?}");
            }
            buf.extend_from_slice(b"\x17\x03\x03trailing");
            assert_eq!(hello_len(&buf), HelloRead::Complete(total));
            assert_eq!(parse(&buf).unwrap(), want);
        }
    }

    #[test]
    fn rejects_what_is_not_a_client_hello() {
        assert_eq!(hello_len(b""), HelloRead::Incomplete);
        assert_eq!(hello_len(b"\x16\x03"), HelloRead::Incomplete);
        assert_eq!(hello_len(b"GET / HTTP/1.1\r\n"), HelloRead::NotTls);
        assert_eq!(hello_len(b"\x80\x2e\x01\x03\x01"), HelloRead::NotTls); // SSLv2-style
        assert_eq!(hello_len(b"\x16\x03\x01\x00\x04\x02"), HelloRead::NotTls); // ServerHello
        assert_eq!(hello_len(b"\x16\x03\x01\x00\x00"), HelloRead::NotTls); // empty record
        assert_eq!(hello_len(b"\x16\x03\x01\x00\x04\x01\x01\x00\x00"), HelloRead::NotTls); // 64 KiB
        assert!(parse(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00").is_err()); // empty body
    }

    #[test]
    fn no_panic_on_truncated_or_corrupted_input() {
        for n in 0..SNI.len() {
            assert!(parse(&SNI[..n]).is_err());
        }
        // Corrupt one byte at a time inside the handshake body (each length field included), with
        // the record framing left intact so the parser, not the walker, meets the damage.
        for i in 5..SNI.len() {
            let mut buf = SNI.to_vec();
            buf[i] ^= [0xff, 0x80, 0x01, 0x10][i % 4];
            let _ = (parse(&buf), hello_len(&buf));
        }
    }

    #[test]
    fn hello_without_extensions_or_signature_algorithms() {
        // TLS 1.2 hello: GREASE + two ciphers, ec_point_formats and a GREASE extension only.
        let exts = b"\x00\x0b\x00\x02\x01\x00\x2a\x2a\x00\x00";
        let mut body = b"\x03\x03".to_vec();
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(b"\x00\x00\x06\x0a\x0a\xc0\x2f\x00\x9c\x01\x00");
        let bare = body.clone();
        body.extend_from_slice(&[0, exts.len() as u8]);
        body.extend_from_slice(exts);
        let wrap = |body: &[u8]| [&[0x16, 3, 1, 0, body.len() as u8 + 4, 1, 0, 0, body.len() as u8], body].concat();
        assert_eq!(parse(&wrap(&body)).unwrap().ja4(), "t12i020100_08dfa304a768_bcb145a8c2a7");
        assert_eq!(parse(&wrap(&bare)).unwrap().ja4(), "t12i020000_08dfa304a768_e3b0c44298fc");
    }
}
