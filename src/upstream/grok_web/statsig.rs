//! `x-statsig-id`, the anti-bot signature the web app puts on its REST calls (not on the WebSocket,
//! uploads or downloads). grok.com checks it: a random value gets 403 `{"code":7,"message":"Request
//! rejected by anti-bot rules."}`.
//!
//! The web app's token is 70 bytes, base64 without padding: a random key byte, then, each XORed with
//! it, the 48-byte seed from the `grok-site-verification` meta tag of grok.com's page, the seconds since
//! 2023-05-01T07:00:00Z as a little-endian u32, the first 16 bytes of SHA-256 over
//! `METHOD!path!seconds` + "obfiowerehiring" + the build's animation fingerprint, and 0x03 (public
//! clients: chenyme/grok2api `statsig.go`, SentDz/grok2api `statsig_local.go`, 2026-08/09).
//!
//! The animation fingerprint is what the page's generator script reads back from an animation it
//! plays: one curve of the page's per-build `curves` table (4 groups of 16: colour pair, angle, cubic
//! Bézier), chosen and timed by five seed bytes whose positions rotate with each frontend build and sit
//! only in a lazily loaded script chunk. It is reproduced here (`fingerprint`): the colour and rotation
//! matrix the browser would report, each number as JS's `Number(x.toFixed(2)).toString(16)`, joined,
//! without '.' and '-' (reversed by public clients: a Rust statsig module and SentDz/grok2api
//! `statsig_hex.go`; its published vector is a unit test below).
//!
//! Modes (`grok.statsig`): `local` mints it from the page's seed and curves plus the chunk's indices
//! (fetched through the browser transport, cached, refreshed once on a code-7 answer); when the page
//! or its chunks do not yield the fingerprint it signs without one and warns, since grok.com may then
//! refuse it. Otherwise: `signer:<url>` (an external signing service, the contract some peers use:
//! `POST {"method","path","environment":{"metaContent"}}` → `{"x-statsig-id"}`), or `fixed:<value>`
//! captured from a browser, or `off`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::upstream::error::UpstreamError;

/// 2023-05-01T07:00:00Z, the epoch of the token's timestamp.
const EPOCH: u64 = 1_682_924_400;
const SALT: &str = "obfiowerehiring";
/// Signing inputs are good for a while; grok.com rotates them with its frontend builds.
const INPUTS_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Local,
    Signer(String),
    Fixed(String),
    Off,
}

impl Mode {
    /// `grok.statsig`, with the older `grok.statsig_id` (a fixed value) taking precedence when set.
    pub fn parse(statsig: &str, legacy_fixed: Option<&str>) -> Result<Self, String> {
        if let Some(v) = legacy_fixed.map(str::trim).filter(|v| !v.is_empty()) {
            return Ok(Mode::Fixed(v.to_owned()));
        }
        let s = statsig.trim();
        match s {
            "" | "local" => Ok(Mode::Local),
            "off" => Ok(Mode::Off),
            _ => match s.split_once(':') {
                Some(("fixed", v)) if !v.trim().is_empty() => Ok(Mode::Fixed(v.trim().to_owned())),
                Some(("signer", url)) if url.starts_with("http://") || url.starts_with("https://") => {
                    Ok(Mode::Signer(url.to_owned()))
                }
                _ => Err(format!("grok.statsig `{s}`: use local, off, fixed:<value> or signer:<http(s) URL>")),
            },
        }
    }
}

/// Mints one token from `seed` (the meta tag's bytes).
pub fn mint(seed: &[u8], method: &str, path: &str, unix_now: u64, key: u8, fingerprint: &str) -> String {
    let t = unix_now.saturating_sub(EPOCH) as u32;
    let digest = Sha256::digest(format!("{}!{path}!{t}{SALT}{fingerprint}", method.to_ascii_uppercase()).as_bytes());
    let mut plain = Vec::with_capacity(70);
    plain.push(key);
    plain.extend_from_slice(seed);
    plain.extend_from_slice(&t.to_le_bytes());
    plain.extend_from_slice(&digest[..16]);
    plain.push(3);
    for b in plain.iter_mut().skip(1) {
        *b ^= key;
    }
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(plain)
}

/// The seed in grok.com's page: `<meta name="grok-site-verification" content="...">` (the name is
/// sometimes written with Unicode dashes).
pub fn seed_from_page(html: &str) -> Option<Vec<u8>> {
    let normalized: String =
        html.chars().map(|c| if ('\u{2010}'..='\u{2015}').contains(&c) { '-' } else { c }).collect();
    let at = normalized.find("grok-site-verification")?;
    let tag_start = normalized[..at].rfind('<')?;
    let tag_end = at + normalized[at..].find('>')?;
    let tag = &normalized[tag_start..tag_end];
    let content = tag.split("content=").nth(1)?;
    let quote = content.chars().next()?;
    let value = content[1..].split(quote).next()?;
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let seed = engine.decode(value.trim_end_matches('=')).ok()?;
    (seed.len() == 48).then_some(seed)
}

/// One curve of the page's table: start colour (r, g, b), end colour, angle, Bézier (x1, y1, x2, y2),
/// each a byte-sized number the generator scales.
pub type Curve = [f64; 11];

/// The build's `curves` table: 4 groups of 16 curves.
pub type Curves = Vec<Vec<Curve>>;

const GROUPS: usize = 4;
const CURVES_PER_GROUP: usize = 16;
/// The animation's length in milliseconds: the seed's time bytes pick a moment in it.
const ANIMATION_MS: f64 = 4096.0;

/// The seed positions the generator reads, as the build's chunk has them: `curves[seed[group] % 4]
/// [seed[segment] % 16]` is the curve, `seed[ct[0..3]] % 16` multiplied set the animation's moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildIndices {
    pub group: usize,
    pub segment: usize,
    pub ct: [usize; 3],
}

/// The `curves` table in grok.com's page. It sits in the React Server Components payload, so it is
/// usually JSON inside a JS string (`\"curves\":[[{\"color\":...`), sometimes plain JSON. `None` when
/// the page has no table of 4 × 16 well-formed curves.
pub fn curves_from_page(html: &str) -> Option<Curves> {
    let mut from = 0;
    while let Some(at) = html[from..].find("curves").map(|i| from + i) {
        from = at + "curves".len();
        // `curves` then the rest of its key: closing quote (escaped any number of times) and colon.
        let rest = html[from..].trim_start_matches(['\\', '"']).trim_start();
        let Some(rest) = rest.strip_prefix(':') else { continue };
        let rest = rest.trim_start();
        if !rest.starts_with('[') {
            continue;
        }
        if let Some(curves) = balanced_brackets(rest).and_then(parse_curves) {
            return Some(curves);
        }
    }
    None
}

/// `text` from its leading '[' to the matching ']'. The table holds no strings with brackets, so
/// counting is enough.
fn balanced_brackets(text: &str) -> Option<&str> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&text[..=i]);
                }
            }
            _ => {}
        }
        // A real table is a few KiB; a runaway scan means this was not one.
        if i > 256 * 1024 {
            return None;
        }
    }
    None
}

/// Parses the table, undoing up to three levels of JS-string escaping (the RSC payload is JSON in a
/// string, and pages have been seen to nest that once more).
fn parse_curves(raw: &str) -> Option<Curves> {
    let mut text = raw.to_owned();
    for _ in 0..4 {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            return curves_from_json(&v);
        }
        if !text.contains('\\') {
            return None;
        }
        text = serde_json::from_str::<String>(&format!("\"{text}\"")).ok()?;
    }
    None
}

fn curves_from_json(v: &serde_json::Value) -> Option<Curves> {
    let groups = v.as_array().filter(|g| g.len() == GROUPS)?;
    groups
        .iter()
        .map(|group| {
            let curves = group.as_array().filter(|c| c.len() == CURVES_PER_GROUP)?;
            curves.iter().map(curve_from_json).collect::<Option<Vec<Curve>>>()
        })
        .collect()
}

fn curve_from_json(c: &serde_json::Value) -> Option<Curve> {
    let numbers = |key: &str, n: usize| -> Option<Vec<f64>> {
        let a = c.get(key)?.as_array().filter(|a| a.len() == n)?;
        a.iter().map(serde_json::Value::as_f64).collect()
    };
    let color = numbers("color", 6)?;
    let bezier = numbers("bezier", 4)?;
    let deg = c.get("deg")?.as_f64()?;
    let mut curve = [0.0; 11];
    curve[..6].copy_from_slice(&color);
    curve[6] = deg;
    curve[7..].copy_from_slice(&bezier);
    Some(curve)
}

/// The build's seed positions, read from the generator chunk's code the way public clients do: the
/// first `f(x[N],16)` (a `% 16` helper) is the curve's position in its group, the next three the
/// animation-time bytes, and `[x[N]%4]` picks the group. `None` unless a chunk has all five and every
/// position fits the 48-byte seed.
pub fn indices_from_chunk(js: &str) -> Option<BuildIndices> {
    let mut mod16 = Vec::with_capacity(4);
    let mut group = None;
    let bytes = js.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'(' if mod16.len() < 4 => {
                if let Some(n) = Cursor::new(bytes, i + 1).indexed_then(&[b",", b"16", b")"]) {
                    mod16.push(n);
                }
            }
            b'[' if group.is_none() => group = Cursor::new(bytes, i + 1).indexed_then(&[b"%", b"4", b"]"]),
            _ => {}
        }
        if mod16.len() == 4 && group.is_some() {
            break;
        }
    }
    let group = group?;
    let [segment, c0, c1, c2] = <[usize; 4]>::try_from(mod16).ok()?;
    let idx = BuildIndices { group, segment, ct: [c0, c1, c2] };
    [idx.group, idx.segment, c0, c1, c2].iter().all(|&n| n < 48).then_some(idx)
}

/// A tiny scanner over minified JS for the two shapes `indices_from_chunk` looks for.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(b: &'a [u8], at: usize) -> Self {
        Self { b, at }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.b.get(self.at) == Some(&c)).then(|| self.at += 1)
    }

    fn spaces(&mut self) {
        while self.b.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn identifier(&mut self) -> Option<()> {
        let start = self.at;
        while self.b.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$') {
            self.at += 1;
        }
        (self.at > start && !self.b[start].is_ascii_digit()).then_some(())
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.at;
        while self.b.get(self.at).is_some_and(u8::is_ascii_digit) && self.at - start < 4 {
            self.at += 1;
        }
        std::str::from_utf8(&self.b[start..self.at]).ok()?.parse().ok()
    }

    /// `x[N]`
    fn indexed(&mut self) -> Option<usize> {
        self.identifier()?;
        self.eat(b'[')?;
        let n = self.number()?;
        self.eat(b']')?;
        Some(n)
    }

    /// `x[N]` then `tokens`, each after optional spaces: `x[N], 16)` after a '(', `x[N] % 4]` after a '['.
    fn indexed_then(mut self, tokens: &[&[u8]]) -> Option<usize> {
        let n = self.indexed()?;
        for token in tokens {
            self.spaces();
            for &c in *token {
                self.eat(c)?;
            }
        }
        Some(n)
    }
}

/// Script chunks a page or chunk refers to, in order of appearance, as written: absolute
/// (`https://cdn.grok.com/_next/static/chunks/a.js`), rooted (`/_next/static/chunks/a.js`, the
/// page's `<script src>`) or relative to the asset prefix (`static/chunks/a.js`, how one chunk loads
/// another). `resolve_chunk` makes them URLs.
pub fn chunk_refs(text: &str) -> Vec<String> {
    let unescaped;
    let text = if text.contains("\\/") {
        unescaped = text.replace("\\/", "/");
        unescaped.as_str()
    } else {
        text
    };
    const MARK: &str = "static/chunks/";
    let url_char = |c: u8| c.is_ascii_alphanumeric() || b"-._~/:%".contains(&c);
    let bytes = text.as_bytes();
    let mut refs: Vec<String> = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(MARK).map(|i| from + i) {
        let mut end = at + MARK.len();
        while end < bytes.len() && (url_char(bytes[end]) && bytes[end] != b':') {
            end += 1;
        }
        from = end.max(at + 1);
        let mut start = at;
        while start > 0 && url_char(bytes[start - 1]) {
            start -= 1;
        }
        let found = &text[start..end];
        if !found.ends_with(".js") || found.contains("..") {
            continue;
        }
        let keep = if let Some(p) = found.find("http://").or_else(|| found.find("https://")) {
            &found[p..]
        } else if let Some(p) = found.find("/_next/") {
            &found[p..]
        } else {
            &text[at..end]
        };
        if !refs.iter().any(|r| r == keep) {
            refs.push(keep.to_owned());
        }
    }
    refs
}

/// A `chunk_refs` entry as a URL, given the URL of the page or chunk that mentioned it.
pub fn resolve_chunk(reference: &str, referrer: &str) -> Option<String> {
    let base = url::Url::parse(referrer).ok()?;
    let resolved = if reference.starts_with("static/") {
        // Relative to the asset prefix the referrer itself was served under (a CDN host, `/_next/`).
        let path = base.path();
        let prefix = path.find("/_next/").map_or("/_next/", |p| &path[..p + "/_next/".len()]);
        base.join(&format!("{prefix}{reference}")).ok()?
    } else {
        base.join(reference).ok()?
    };
    matches!(resolved.scheme(), "http" | "https").then(|| resolved.to_string())
}

/// Whether a chunk loads grok's fingerprint generator (webpack module 1645e3, whose id public clients
/// saw stay put across builds): the chunks it names are worth fetching first.
pub fn loads_generator(js: &str) -> bool {
    js.contains("(1645e3)") || js.contains("(1645000)")
}

/// The build's animation fingerprint for `seed`; `None` when an index falls outside the seed or table.
pub fn fingerprint(seed: &[u8], curves: &Curves, idx: &BuildIndices) -> Option<String> {
    let byte = |i: usize| seed.get(i).map(|&b| usize::from(b));
    let curve = curves.get(byte(idx.group)? % GROUPS)?.get(byte(idx.segment)? % CURVES_PER_GROUP)?;
    let product = idx.ct.iter().map(|&i| byte(i).map(|b| b % 16)).product::<Option<usize>>()?;
    // The moment, snapped to 10 ms, as the generator sets `currentTime`.
    let moment = (product as f64 / 10.0).round() * 10.0;
    // The easing's control points, as the generator writes them: scaled from bytes, 2 decimals.
    let scaled = |b: f64, min: f64, max: f64| js_round2(b * (max - min) / 255.0 + min);
    let easing = UnitBezier::new(
        scaled(curve[7], 0.0, 1.0),
        scaled(curve[8], -1.0, 1.0),
        scaled(curve[9], 0.0, 1.0),
        scaled(curve[10], -1.0, 1.0),
    );
    let progress = easing.solve(moment / ANIMATION_MS);
    // The browser blends the two colours and clamps the result to a byte per channel.
    let channel = |c: usize| (curve[c] + (curve[c + 3] - curve[c]) * progress).round().clamp(0.0, 255.0);
    let degrees = (curve[6] * 300.0 / 255.0 + 60.0).floor();
    let angle = degrees * progress * std::f64::consts::PI / 180.0;
    let (sin, cos) = angle.sin_cos();
    // `getComputedStyle`: `rgb(r, g, b)` and the rotation's `matrix(cos, sin, -sin, cos, 0, 0)`.
    let numbers = [channel(0), channel(1), channel(2), cos, sin, -sin, cos, 0.0, 0.0];
    let joined: String = numbers.iter().map(|&x| js_hex(js_round2(x))).collect();
    Some(joined.chars().filter(|c| *c != '.' && *c != '-').collect())
}

/// The fingerprint from what the page and its chunks gave, or why there is none (for the warning).
pub fn build_fingerprint(
    seed: &[u8],
    curves: Option<&Curves>,
    indices: Option<&BuildIndices>,
) -> Result<String, &'static str> {
    let curves = curves.ok_or("the page has no curves table")?;
    let indices = indices.ok_or("no script chunk gave the build's seed positions")?;
    fingerprint(seed, curves, indices).ok_or("the build's seed positions fall outside the seed")
}

/// JS `Number(x.toFixed(2))`: rounded on the exact decimal value of the double, a tie going away
/// from zero (so 0.125 → 0.13 and 1.005, really 1.00499…, → 1).
fn js_round2(x: f64) -> f64 {
    if !x.is_finite() || x.abs() >= 1e21 {
        return x;
    }
    // 1100 places hold any double's exact decimal expansion, so nothing is rounded by the formatting.
    let exact = format!("{:.1100}", x.abs());
    let Some((whole, places)) = exact.split_once('.') else { return x };
    let digit = |i: usize| u128::from(places.as_bytes()[i] - b'0');
    let Ok(whole) = whole.parse::<u128>() else { return x };
    let hundredths = whole * 100 + digit(0) * 10 + digit(1) + u128::from(digit(2) >= 5);
    let rounded: f64 = format!("{}.{:02}", hundredths / 100, hundredths % 100).parse().unwrap_or(x);
    if x < 0.0 { -rounded } else { rounded }
}

/// JS `x.toString(16)`: V8's `DoubleToRadixCString`, which prints fraction digits until the rest is
/// below half the double's spacing (so 0.01 → "0.028f5c28f5c28f6"), rounding the last digit half to
/// even.
fn js_hex(x: f64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let negative = x < 0.0;
    let value = x.abs();
    let mut integer = value.floor();
    let mut fraction = value - integer;
    // Half the distance to the next double, never below the smallest one.
    let next_up = f64::from_bits(value.to_bits() + 1);
    let mut delta = (0.5 * (next_up - value)).max(f64::from_bits(1));
    let mut places: Vec<u8> = Vec::new();
    if fraction >= delta {
        loop {
            fraction *= 16.0;
            delta *= 16.0;
            let digit = fraction as u8;
            places.push(digit);
            fraction -= f64::from(digit);
            if (fraction > 0.5 || (fraction == 0.5 && digit & 1 == 1)) && fraction + delta > 1.0 {
                // Round up, carrying through trailing 'f's into the integer if need be.
                loop {
                    match places.pop() {
                        None => {
                            integer += 1.0;
                            break;
                        }
                        Some(d) if d + 1 < 16 => {
                            places.push(d + 1);
                            break;
                        }
                        Some(_) => {}
                    }
                }
                break;
            }
            if fraction < delta {
                break;
            }
        }
    }
    // Integer digits, least significant first; beyond 2^53 the low digits are not represented: zeros.
    let mut whole = Vec::new();
    while integer / 16.0 >= 9_007_199_254_740_992.0 {
        integer /= 16.0;
        whole.push(b'0');
    }
    loop {
        let rem = integer % 16.0;
        whole.push(DIGITS[rem as usize]);
        integer = (integer - rem) / 16.0;
        if integer <= 0.0 {
            break;
        }
    }
    let mut out = String::with_capacity(whole.len() + places.len() + 2);
    if negative {
        out.push('-');
    }
    out.extend(whole.iter().rev().map(|&d| char::from(d)));
    if !places.is_empty() {
        out.push('.');
        out.extend(places.iter().map(|&d| char::from(DIGITS[usize::from(d)])));
    }
    out
}

/// The cubic-bezier timing function as Chromium (`ui/gfx/geometry/cubic_bezier.cc`) and WebKit
/// (`UnitBezier.h`) evaluate it for animations: an initial guess from 11 samples of the curve, up to 4
/// Newton steps, then bisection, to within 1e-7 of x. The fingerprint is what the browser computes,
/// so this follows its steps rather than solving more exactly.
struct UnitBezier {
    ax: f64,
    bx: f64,
    cx: f64,
    ay: f64,
    by: f64,
    cy: f64,
    samples: [f64; 11],
}

impl UnitBezier {
    const EPSILON: f64 = 1e-7;

    fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        let cx = 3.0 * x1;
        let bx = 3.0 * (x2 - x1) - cx;
        let ax = 1.0 - cx - bx;
        let cy = 3.0 * y1;
        let by = 3.0 * (y2 - y1) - cy;
        let ay = 1.0 - cy - by;
        let mut b = Self { ax, bx, cx, ay, by, cy, samples: [0.0; 11] };
        let step = 1.0 / 10.0;
        b.samples = std::array::from_fn(|i| b.x_at(i as f64 * step));
        b
    }

    fn x_at(&self, t: f64) -> f64 {
        ((self.ax * t + self.bx) * t + self.cx) * t
    }

    fn y_at(&self, t: f64) -> f64 {
        ((self.ay * t + self.by) * t + self.cy) * t
    }

    fn dx_at(&self, t: f64) -> f64 {
        (3.0 * self.ax * t + 2.0 * self.bx) * t + self.cx
    }

    /// The eased progress at `x` (the fingerprint's moments all lie in [0, 1)).
    fn solve(&self, x: f64) -> f64 {
        self.y_at(self.t_for(x.clamp(0.0, 1.0)))
    }

    fn t_for(&self, x: f64) -> f64 {
        let step = 1.0 / 10.0;
        let (mut t0, mut t1, mut t2) = (0.0, 1.0, x);
        for i in 1..self.samples.len() {
            if x <= self.samples[i] {
                t1 = step * i as f64;
                t0 = t1 - step;
                t2 = t0 + (t1 - t0) * (x - self.samples[i - 1]) / (self.samples[i] - self.samples[i - 1]);
                break;
            }
        }
        let mut err = 0.0;
        for _ in 0..4 {
            err = self.x_at(t2) - x;
            if err.abs() < Self::EPSILON {
                return t2;
            }
            let slope = self.dx_at(t2);
            if slope.abs() < Self::EPSILON {
                break;
            }
            t2 -= err / slope;
        }
        if err.abs() < Self::EPSILON {
            return t2;
        }
        // Bounded, unlike the original, so a degenerate curve cannot spin forever.
        for _ in 0..1100 {
            if t0 >= t1 {
                break;
            }
            let at = self.x_at(t2);
            if (at - x).abs() < Self::EPSILON {
                return t2;
            }
            if x > at {
                t0 = t2;
            } else {
                t1 = t2;
            }
            t2 = (t1 + t0) * 0.5;
        }
        t2
    }
}

/// What `local` mode signs with: the page's seed and the build's animation fingerprint (empty when it
/// could not be worked out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningInputs {
    pub seed: Vec<u8>,
    pub fingerprint: String,
}

/// The mode plus the cached signing inputs (`local`).
pub struct Statsig {
    pub mode: Mode,
    inputs: Mutex<Option<(Arc<SigningInputs>, Instant)>>,
    /// Held while the inputs are fetched, so concurrent calls wait for one fetch (a page and up to
    /// `MAX_CHUNKS` scripts) instead of each making their own.
    fetching: tokio::sync::Mutex<()>,
    signer: Option<reqwest::Client>,
}

impl Statsig {
    /// `ca_pem`: `grok.ca_file`, trusted by the signer's client too.
    pub fn new(mode: Mode, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let signer = match mode {
            Mode::Signer(_) => Some(
                super::browser::side_client(Duration::from_secs(15), ca_pem)
                    .map_err(|e| format!("statsig signer client: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self { mode, inputs: Mutex::new(None), fetching: tokio::sync::Mutex::new(()), signer })
    }

    /// Whether a code-7 answer is worth one retry with fresh inputs.
    pub fn refreshable(&self) -> bool {
        matches!(self.mode, Mode::Local | Mode::Signer(_))
    }

    pub fn invalidate(&self) {
        *self.inputs.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub fn cached_inputs(&self) -> Option<Arc<SigningInputs>> {
        let guard = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|(_, at)| at.elapsed() < INPUTS_TTL).map(|(i, _)| i.clone())
    }

    pub fn cached_seed(&self) -> Option<Vec<u8>> {
        self.cached_inputs().map(|i| i.seed.clone())
    }

    pub fn store_inputs(&self, inputs: SigningInputs) -> Arc<SigningInputs> {
        let inputs = Arc::new(inputs);
        *self.inputs.lock().unwrap_or_else(|p| p.into_inner()) = Some((inputs.clone(), Instant::now()));
        inputs
    }

    /// The cached inputs, or the ones `fetch` brings (then cached). One fetch at a time: a caller that
    /// waited finds the inputs the previous one stored.
    pub async fn inputs_or_fetch<F, Fut>(&self, fetch: F) -> Result<Arc<SigningInputs>, UpstreamError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SigningInputs, UpstreamError>>,
    {
        if let Some(i) = self.cached_inputs() {
            return Ok(i);
        }
        let _one_fetch = self.fetching.lock().await;
        if let Some(i) = self.cached_inputs() {
            return Ok(i);
        }
        Ok(self.store_inputs(fetch().await?))
    }

    /// Mints for `method path` with the inputs already at hand.
    pub fn mint_now(inputs: &SigningInputs, method: &str, path: &str) -> String {
        let now = crate::clock::now_secs();
        mint(&inputs.seed, method, path, now, rand::random::<u8>(), &inputs.fingerprint)
    }

    /// Asks the external signer.
    pub async fn from_signer(
        &self,
        url: &str,
        method: &str,
        path: &str,
        meta: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let Some(http) = &self.signer else { return Err(UpstreamError::Failed("no statsig signer client".into())) };
        let body = serde_json::json!({"method": method, "path": path, "environment": {"metaContent": meta}});
        let fail = |m: String| UpstreamError::Failed(format!("statsig signer {url}: {m}"));
        let resp = http.post(url).json(&body).send().await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let v: serde_json::Value = resp.json().await.map_err(|e| fail(format!("HTTP {status}: {e}")))?;
        v.get("x-statsig-id")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| fail(format!("HTTP {status}, no x-statsig-id in the answer")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_the_web_apps_layout() {
        let seed: Vec<u8> = (0..48).collect();
        let token = mint(&seed, "post", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, "");
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&token).unwrap();
        assert_eq!(raw.len(), 70);
        let key = raw[0];
        assert_eq!(key, 37);
        let plain: Vec<u8> = raw.iter().skip(1).map(|b| b ^ key).collect();
        assert_eq!(&plain[..48], &seed[..]);
        assert_eq!(u32::from_le_bytes(plain[48..52].try_into().unwrap()), 123_456);
        assert_eq!(plain[68], 3);
        // The same inputs give the same signature; the path is part of it.
        assert_eq!(token, mint(&seed, "POST", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, ""));
        assert_ne!(token, mint(&seed, "POST", "/rest/rate-limits", EPOCH + 123_456, 37, ""));
    }

    #[test]
    fn the_seed_is_read_from_the_meta_tag() {
        let seed: Vec<u8> = (100..148).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&seed);
        let page =
            format!("<html><head><meta name=\"grok-site\u{2010}verification\" content=\"{b64}\"/></head></html>");
        assert_eq!(seed_from_page(&page), Some(seed));
        assert_eq!(seed_from_page("<html><meta name=\"other\" content=\"x\"></html>"), None);
    }

    /// The published vector of a public Rust client (its comment: cross-checked against grok's own
    /// generator): a one-curve table and a seed whose bytes pick it.
    fn published_vector() -> (Vec<u8>, Curves, BuildIndices) {
        let curves = vec![vec![[219.0, 4.0, 240.0, 196.0, 212.0, 140.0, 153.0, 210.0, 204.0, 247.0, 242.0]]];
        let mut seed = vec![0u8; 48];
        seed[2..5].copy_from_slice(&[3, 5, 7]);
        for (i, b) in seed.iter_mut().enumerate().skip(5) {
            *b = i as u8;
        }
        (seed, curves, BuildIndices { group: 0, segment: 1, ct: [2, 3, 4] })
    }

    #[test]
    fn the_published_fingerprint_and_token_are_reproduced() {
        let (seed, curves, idx) = published_vector();
        let l = fingerprint(&seed, &curves, &idx).unwrap();
        assert_eq!(l, "db8ee10147ae147ae147b0147ae147ae147b100");
        assert_eq!(
            mint(&seed, "POST", "/rest/x", EPOCH + 42_000_000, 99, &l),
            "Y2NjYGZkZmVka2ppaG9ubWxzcnFwd3Z1dHt6eXh/fn18Q0JBQEdGRURLSklIT05NTOO942FVpSTMZ29NGYcuCxeTOirDYA"
        );
        // An index past the seed gives no fingerprint rather than a wrong one.
        assert_eq!(fingerprint(&seed, &curves, &BuildIndices { group: 48, ..idx }), None);
    }

    #[test]
    fn a_second_published_vector_is_reproduced() {
        // A Java client's cross-language test: seed 0..47, a 4 × 16 table, that client's (older
        // build's) positions group 5, curve 2, time 1·20·19; t = 123456, key 37.
        let seed: Vec<u8> = (0..48).collect();
        let curves: Curves = (0..4)
            .map(|g| {
                (0..16)
                    .map(|c| {
                        [10.0 + g as f64, 20.0, 30.0, 210.0, 220.0, 230.0, 120.0 + c as f64, 80.0, 100.0, 160.0, 200.0]
                    })
                    .collect()
            })
            .collect();
        let l = fingerprint(&seed, &curves, &BuildIndices { group: 5, segment: 2, ct: [1, 20, 19] }).unwrap();
        assert_eq!(
            mint(&seed, "POST", "/rest/app-chat/conversations/new", EPOCH + 123_456, 37, &l),
            "JSUkJyYhICMiLSwvLikoKyo1NDc2MTAzMj08Pz45ODs6BQQHBgEAAwINDA8OCQgLCmXHJCV1hLcfDtt06UKgboUW0R8EJg",
            "fingerprint {l}"
        );
    }

    #[test]
    fn hex_formatting_matches_v8() {
        // `x.toString(16)` as printed by node 20 (V8) on this machine.
        for (x, js) in [
            (0.01, "0.028f5c28f5c28f6"),
            (-0.01, "-0.028f5c28f5c28f6"),
            (0.5, "0.8"),
            (0.87, "0.deb851eb851eb8"),
            (0.07, "0.11eb851eb851ec"),
            (0.99, "0.fd70a3d70a3d7"),
            (0.33, "0.547ae147ae147c"),
            (0.125, "0.2"),
            (1.0 / 3.0, "0.55555555555554"),
            (255.0, "ff"),
            (0.1, "0.1999999999999a"),
            (0.2, "0.33333333333334"),
            (0.3, "0.4ccccccccccccc"),
            (0.7, "0.b333333333333"),
            (0.9, "0.e6666666666668"),
            (0.96, "0.f5c28f5c28f5c"),
            (0.04, "0.0a3d70a3d70a3d8"),
            (0.05, "0.0ccccccccccccd"),
            (0.06, "0.0f5c28f5c28f5c"),
            (0.15, "0.26666666666666"),
            (0.35, "0.59999999999998"),
            (0.45, "0.73333333333334"),
            (0.55, "0.8cccccccccccd"),
            (0.65, "0.a6666666666668"),
            (0.75, "0.c"),
            (0.85, "0.d9999999999998"),
            (0.95, "0.f333333333333"),
            (0.29, "0.4a3d70a3d70a3c"),
            (0.58, "0.947ae147ae1478"),
            (1.5, "1.8"),
            (4.35, "4.5999999999998"),
            (123.456, "7b.74bc6a7ef9dc"),
            (2f64.powi(-30), "0.00000004"),
            (1e21, "3635c9adc5dea00000"),
            (2f64.powi(60) + 256.0, "1000000000000100"),
            (0.0, "0"),
            (-0.0, "0"),
        ] {
            assert_eq!(js_hex(x), js, "({x}).toString(16)");
        }
        // Tiny values: hundreds of leading zeros (lengths as node prints them).
        assert!(js_hex(1e-300).ends_with("ab70fe17c79ac8") && js_hex(1e-300).len() == 265);
        assert!(js_hex(5e-324).ends_with("00004") && js_hex(5e-324).len() == 271);
    }

    #[test]
    fn to_fixed_rounds_the_exact_decimal_value_like_js() {
        // `Number(x.toFixed(2))` per node: exact ties go away from zero, near-ties by their true value.
        for (x, js) in [
            (1.005, 1.0),
            (0.125, 0.13),
            (-0.125, -0.13),
            (0.375, 0.38),
            (2.675, 2.67),
            (1.045, 1.04),
            (-1.005, -1.0),
            (0.615, 0.61),
            (0.0049999, 0.0),
            (0.8235294117647058, 0.82),
            (219.0, 219.0),
        ] {
            assert_eq!(js_round2(x), js, "({x}).toFixed(2)");
        }
        assert_eq!(js_hex(js_round2(-0.001)), "0");
    }

    #[test]
    fn the_easing_follows_the_browsers_solver() {
        // Linear, and the CSS keywords at known points (ease at 0.5 ≈ 0.8024033877399112).
        let linear = UnitBezier::new(0.0, 0.0, 1.0, 1.0);
        assert!((linear.solve(0.3) - 0.3).abs() < 1e-6);
        let ease = UnitBezier::new(0.25, 0.1, 0.25, 1.0);
        assert!((ease.solve(0.5) - 0.802_403_387_7).abs() < 1e-6);
        assert_eq!(ease.solve(0.0), 0.0);
        // Control points with y outside [0, 1] overshoot, which the colour clamp has to absorb.
        let back = UnitBezier::new(0.6, -0.28, 0.73, 0.04);
        assert!(back.solve(0.2) < 0.0);
    }

    fn table_json(escaped: bool) -> String {
        let curve = |i: usize| {
            format!(r#"{{"color":[{},{},{},1,2,3],"deg":{},"bezier":[10,20,30,40]}}"#, i, i + 1, i + 2, i % 255)
        };
        let groups: Vec<String> =
            (0..4).map(|g| format!("[{}]", (0..16).map(|c| curve(g * 16 + c)).collect::<Vec<_>>().join(","))).collect();
        let json = format!("[{}]", groups.join(","));
        if escaped { json.replace('"', "\\\"") } else { json }
    }

    #[test]
    fn the_curves_table_is_read_from_the_page_escaped_or_not() {
        // As in the RSC payload: JSON inside a JS string.
        let rsc = format!(
            "<script>self.__next_f.push([1,\"7:[\\\"$\\\",\\\"div\\\",null,{{\\\"className\\\":\\\"r-aufz1o\\\",\\\"curves\\\":{}}}]\\n\"])</script>",
            table_json(true)
        );
        let curves = curves_from_page(&rsc).expect("escaped table");
        assert_eq!(curves.len(), 4);
        assert!(curves.iter().all(|g| g.len() == 16));
        assert_eq!(curves[1][2], [18.0, 19.0, 20.0, 1.0, 2.0, 3.0, 18.0, 10.0, 20.0, 30.0, 40.0]);
        let plain = format!("<script>var x = {{\"curves\": {}}};</script>", table_json(false));
        assert_eq!(curves_from_page(&plain), Some(curves.clone()));
        // Escaped twice (a payload string inside another string).
        let twice = format!("x = \"\\\\\\\"curves\\\\\\\":{}\"", table_json(true).replace('\\', "\\\\\\"));
        assert_eq!(curves_from_page(&twice), Some(curves.clone()));
        // A first mention that is not the table is skipped.
        let mentioned = format!("<p>curves: none</p>{rsc}");
        assert_eq!(curves_from_page(&mentioned), Some(curves));
    }

    #[test]
    fn a_page_without_a_usable_table_gives_no_curves_and_no_fingerprint() {
        assert_eq!(curves_from_page("<html><head><title>Grok</title></head></html>"), None);
        // Wrong shapes: 3 groups, a short colour.
        let three = table_json(false).replacen("],[", "]]", 1);
        assert_eq!(curves_from_page(&format!("{{\"curves\":{}}}", &three)), None);
        let short = table_json(false).replacen("1,2,3]", "1,2]", 1);
        assert_eq!(curves_from_page(&format!("{{\"curves\":{short}}}")), None);
        // No table: the client signs without a fingerprint and says why.
        let (seed, curves, idx) = published_vector();
        assert_eq!(build_fingerprint(&seed, None, Some(&idx)), Err("the page has no curves table"));
        assert!(build_fingerprint(&seed, Some(&curves), None).is_err());
        assert_eq!(
            build_fingerprint(&seed, Some(&curves), Some(&idx)).as_deref(),
            Ok("db8ee10147ae147ae147b0147ae147ae147b100")
        );
    }

    /// A generator chunk shaped like the ones public clients describe: a Turbopack module 1645e3 that
    /// reads the seed from the meta tag, picks a curve group `[n[G]%4]` and a curve `a(n[S],16)`, and
    /// sets the animation's time from three more `a(n[i],16)`.
    const GENERATOR_CHUNK: &str = r##"(globalThis.TURBOPACK||(globalThis.TURBOPACK=[])).push(["object"==typeof document?document.currentScript:void 0,{1645e3:(e,t,r)=>{"use strict";r.s(["default",()=>u]);function a(e,t){return e%t}function o(e){return e.replace(/[^\d]+/g," ").trim().split(" ").map(Number)}async function u(e,t){let r=document.querySelector("[name^=grok-site]"),n=Uint8Array.from(atob(r.content),e=>e.charCodeAt(0)),i=[...document.querySelectorAll(".r-aufz1o")],s=i[n[5]%4].childNodes[0].childNodes[1].getAttribute("d").substring(9).split("C"),l=o(s[a(n[47],16)]),c=Math.round(a(n[31],16)*a(n[8],16)*a(n[14],16)/10)*10,d=document.createElement("div");return d.animate({color:["#"+l.slice(0,3).map(e=>e.toString(16)).join(""),"#"+l.slice(3,6).map(e=>e.toString(16)).join("")],transform:["rotate(0deg)","rotate("+Math.floor(l[6]*300/255+60)+"deg)"]},{duration:4096,easing:"cubic-bezier("+l.slice(7).join(",")+")"}).currentTime=c,getComputedStyle(d)}}]);"##;

    #[test]
    fn the_build_indices_are_read_from_the_generator_chunk() {
        assert_eq!(indices_from_chunk(GENERATOR_CHUNK), Some(BuildIndices { group: 5, segment: 47, ct: [31, 8, 14] }));
        // The two builds public clients recorded, in their shorthand.
        let old = "f(n[24],16)*g(n[17],16)*h(n[8],16)*k(n[11],16);x=q[n[5]%4]";
        assert_eq!(indices_from_chunk(old), Some(BuildIndices { group: 5, segment: 24, ct: [17, 8, 11] }));
        let spaced = "f(n[47], 16)*g(n[31],  16)*h(n[8],16)*k(n[14],16);x=q[n[5] % 4]";
        assert_eq!(indices_from_chunk(spaced), Some(BuildIndices { group: 5, segment: 47, ct: [31, 8, 14] }));
        // Decoys: hex parsing (three `(x[i],16)`) alone, a `% 4` alone, a position past the seed.
        let hex = r#"function h(e){let t=/^#?(\w\w)(\w\w)(\w\w)$/.exec(e);return[parseInt(t[1],16),parseInt(t[2],16),parseInt(t[3],16)]}"#;
        assert_eq!(indices_from_chunk(hex), None);
        assert_eq!(indices_from_chunk("let s=[\"top\",\"left\"][n[0]%4]"), None);
        assert_eq!(indices_from_chunk(&old.replace("n[24]", "n[48]")), None);
        assert_eq!(indices_from_chunk("f(n[24],160)*g(n[17],16)*h(n[8],16)*k(n[11],16);x=q[n[5]%40]"), None);
    }

    #[test]
    fn chunk_references_are_found_and_resolved() {
        let page = r#"<script src="/_next/static/chunks/webpack-1a2b.js" async=""></script><script src="https://cdn.grok.com/_next/static/chunks/0dz7o7zc0otoq.js?dpl=x"></script><link rel="preload" href="/_next/static/chunks/webpack-1a2b.js"/><script>self.__next_f.push([1,"3:I[\"static/chunks/38asg_axwuaew.js\"]"])</script><script src="/_next/static/chunks/app.js.map"></script>"#;
        assert_eq!(
            chunk_refs(page),
            [
                "/_next/static/chunks/webpack-1a2b.js",
                "https://cdn.grok.com/_next/static/chunks/0dz7o7zc0otoq.js",
                "static/chunks/38asg_axwuaew.js"
            ]
        );
        let page_url = "https://grok.com/";
        let resolved: Vec<Option<String>> = chunk_refs(page).iter().map(|r| resolve_chunk(r, page_url)).collect();
        assert_eq!(
            resolved,
            [
                Some("https://grok.com/_next/static/chunks/webpack-1a2b.js".to_owned()),
                Some("https://cdn.grok.com/_next/static/chunks/0dz7o7zc0otoq.js".to_owned()),
                Some("https://grok.com/_next/static/chunks/38asg_axwuaew.js".to_owned()),
            ]
        );
        // One chunk loading another: relative to the asset prefix the loader came from.
        let consumer = r#"Promise.all(["static/chunks/1645gen.js"].map(e=>t.l(e))).then(()=>t(1645e3))"#;
        assert!(loads_generator(consumer));
        // The generator defines module 1645e3; it does not load it.
        assert!(!loads_generator(GENERATOR_CHUNK));
        assert_eq!(
            resolve_chunk(&chunk_refs(consumer)[0], "https://cdn.grok.com/_next/static/chunks/0dz7o7zc0otoq.js")
                .as_deref(),
            Some("https://cdn.grok.com/_next/static/chunks/1645gen.js")
        );
        // JSON-escaped slashes, and a path that tries to climb out.
        assert_eq!(chunk_refs(r#""\/_next\/static\/chunks\/a.js""#), ["/_next/static/chunks/a.js"]);
        assert!(chunk_refs("/_next/static/chunks/../../secret.js").is_empty());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("", None), Ok(Mode::Local));
        assert_eq!(Mode::parse("off", None), Ok(Mode::Off));
        assert_eq!(Mode::parse("fixed:abc", None), Ok(Mode::Fixed("abc".into())));
        assert_eq!(
            Mode::parse("signer:https://s.example/sign", None),
            Ok(Mode::Signer("https://s.example/sign".into()))
        );
        assert_eq!(Mode::parse("local", Some("legacy")), Ok(Mode::Fixed("legacy".into())));
        assert!(Mode::parse("signer:ftp://x", None).is_err());
        assert!(Mode::parse("magic", None).is_err());
    }
}
