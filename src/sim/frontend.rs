//! The simulated grok.com frontend build: what a client needs for a valid `x-statsig-id` and where the
//! real web app keeps it. The page carries the seed (meta tag) and the build's `curves` table (inside
//! the React Server Components payload, as a JSON-escaped string); the five seed positions the
//! fingerprint reads sit only in a generator chunk that the page does not link: one of the page's
//! scripts loads it (module 1645e3), the others are decoys with look-alike code. A new build
//! (`SimHandle::rotate_statsig_seed`) changes seed, table, positions and chunk names.
//!
//! The expected fingerprint is computed here with code of its own, never the client's: exact integer
//! arithmetic for JS's `toFixed(2)` and `toString(16)`, plain bisection for the easing. The browser's
//! easing solver stops within 1e-7, so an exact solution and a faithful copy of the browser's can round
//! differently when a value lands right on a rounding edge; a build is therefore only issued with a seed
//! whose values all sit clear of those edges, and there both must agree.

use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::json;

use crate::sim::state::{Build, Positions, Sim};

/// How far (in units of the rounded digit) every rounded value must sit from a rounding edge.
const EDGE_MARGIN: f64 = 0.02;

impl Build {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let curves: Vec<Vec<[u8; 11]>> =
            (0..4).map(|_| (0..16).map(|_| std::array::from_fn(|_| rng.random::<u8>())).collect()).collect();
        let picked = rand::seq::index::sample(&mut rng, 48, 5).into_vec();
        let positions = Positions { group: picked[0], segment: picked[1], ct: [picked[2], picked[3], picked[4]] };
        // A handful of seeds at most: about one in six lands near a rounding edge.
        let (seed, fingerprint) = loop {
            let seed: [u8; 48] = std::array::from_fn(|_| rng.random::<u8>());
            let (fingerprint, margin) = expected_fingerprint(&seed, &curves, &positions);
            if margin >= EDGE_MARGIN {
                break (seed, fingerprint);
            }
        };
        let mut name = || {
            (0..13)
                .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.random_range(0..36)]))
                .collect::<String>()
        };
        let (runtime, ui, loader, generator) = (name(), name(), name(), name());
        let class = format!("r-{}", &name()[..6]);
        let chunks = vec![
            (format!("{runtime}.js"), runtime_chunk()),
            (format!("{ui}.js"), ui_chunk()),
            (format!("{loader}.js"), loader_chunk(&generator)),
            (format!("{generator}.js"), generator_chunk(&positions, &class)),
        ];
        Self { seed, curves, positions, fingerprint, class, chunks, linked: 3 }
    }

    /// The page: meta tag, scripts, and the RSC payload line with the curves table.
    pub fn page(&self) -> String {
        use base64::Engine;
        let seed = base64::engine::general_purpose::STANDARD.encode(self.seed);
        let table: Vec<Vec<serde_json::Value>> = self
            .curves
            .iter()
            .map(|group| group.iter().map(|c| json!({"color": &c[..6], "deg": c[6], "bezier": &c[7..]})).collect())
            .collect();
        let node = json!(["$", "div", null, {"className": &self.class, "aria-hidden": true,
            "children": ["$", "$L1b", null, {"curves": table, "css_class": &self.class}]}]);
        // The payload line is JSON; the page writes it as a JS string, so every quote comes escaped.
        let line = serde_json::to_string(&format!("1a:{node}\n")).unwrap_or_default();
        let mut scripts = String::new();
        for (file, _) in &self.chunks[..self.linked] {
            let _ = write!(scripts, "<script src=\"/_next/static/chunks/{file}\" async=\"\"></script>");
        }
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charSet=\"utf-8\"/><title>Grok</title>\
             <meta name=\"grok-site-verification\" content=\"{seed}\"/>\
             <link rel=\"preload\" as=\"script\" fetchPriority=\"low\" href=\"/_next/static/chunks/{first}\"/>\
             {scripts}</head><body><div id=\"root\"></div>\
             <script>(self.__next_f=self.__next_f||[]).push([0])</script>\
             <script>self.__next_f.push([1,{line}])</script></body></html>",
            first = self.chunks[0].0,
        )
    }

    pub fn chunk(&self, file: &str) -> Option<&str> {
        self.chunks.iter().find(|(f, _)| f == file).map(|(_, body)| body.as_str())
    }
}

/// `GET /_next/static/chunks/{file}`: this build's scripts; an unknown (or past build's) name is a 404.
pub(crate) async fn chunk(State(sim): State<Sim>, Path(file): Path<String>) -> Response {
    sim.stats.chunk_loads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let build = sim.build();
    let Some(body) = build.chunk(&file) else { return (StatusCode::NOT_FOUND, "not found").into_response() };
    let mut r = body.to_owned().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=UTF-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    r
}

/// Bundler runtime: loads chunks by name, and parses hex colours (three `parseInt(t[i],16)`, the
/// shape a careless index scan would take for the generator's).
fn runtime_chunk() -> String {
    r#"(()=>{"use strict";var e={},t={};function r(n){var o=t[n];if(void 0!==o)return o.exports;var a=t[n]={exports:{}};return e[n](a,a.exports,r),a.exports}r.m=e,r.p="/_next/",r.u=e=>"static/chunks/"+e+".js",r.l=(e,t)=>{let n=document.createElement("script");n.src=r.p+e,n.onload=t,document.head.appendChild(n)};function n(e){let t=/^#?([a-f\d]{2})([a-f\d]{2})([a-f\d]{2})$/i.exec(e);return t?{r:parseInt(t[1],16),g:parseInt(t[2],16),b:parseInt(t[3],16)}:null}r.hex=n,self.__webpack_require__=r})();"#
        .to_owned()
}

/// UI code with a `[x[i]%4]` of its own.
fn ui_chunk() -> String {
    r#"(globalThis.TURBOPACK||(globalThis.TURBOPACK=[])).push(["object"==typeof document?document.currentScript:void 0,{48213:(e,t,r)=>{"use strict";r.s(["Tooltip",()=>i]);let n=["top","right","bottom","left"];function i(e){let{children:r}=e,o=e.order||[0,1,2,3];return{placement:n[o[0]%4],children:r}}}}]);"#
        .to_owned()
}

/// The chunk that loads the generator on demand (how public clients found it: `t(1645e3)` after a
/// `Promise.all` over its chunk).
fn loader_chunk(generator: &str) -> String {
    format!(
        r#"(globalThis.TURBOPACK||(globalThis.TURBOPACK=[])).push(["object"==typeof document?document.currentScript:void 0,{{77104:(e,t,r)=>{{"use strict";r.s(["sign",()=>o]);let n=null;async function o(e,t){{return n||(n=Promise.all(["static/chunks/{generator}.js"].map(e=>r.l(e))).then(()=>r(1645e3))),(await n).default(e,t)}}}}}}]);"#
    )
}

/// The generator: reads the seed from the meta tag, the curve group `[n[G]%4]`, the curve
/// `a(n[S],16)` and the moment from three more `a(n[i],16)`, plays the animation and hashes.
fn generator_chunk(p: &Positions, class: &str) -> String {
    let (g, s, [c0, c1, c2]) = (p.group, p.segment, p.ct);
    format!(
        r##"(globalThis.TURBOPACK||(globalThis.TURBOPACK=[])).push(["object"==typeof document?document.currentScript:void 0,{{1645e3:(e,t,r)=>{{"use strict";r.s(["default",()=>f]);let n=[111,98,102,105,111,119,101,114,101,104,105,114,105,110,103];function a(e,t){{return e%t}}function o(e){{return e.replace(/[^\d]+/g," ").trim().split(" ").map(Number)}}function l(e,t,r,n){{let a=e*(r-t)/255+t;return n?Math.floor(a):Number(a.toFixed(2))}}async function f(e,t){{let r=document.querySelector("[name^=grok-site]"),i=Uint8Array.from(atob(r.getAttribute("content")),e=>e.charCodeAt(0)),u=[...document.querySelectorAll(".{class}")],c=u[i[{g}]%4].childNodes[0].childNodes[1].getAttribute("d").substring(9).split("C"),d=o(c[a(i[{s}],16)]),h=Math.round(a(i[{c0}],16)*a(i[{c1}],16)*a(i[{c2}],16)/10)*10,p=document.createElement("div");document.body.append(p);let m=p.animate({{color:["#"+d.slice(0,3).map(e=>e.toString(16).padStart(2,"0")).join(""),"#"+d.slice(3,6).map(e=>e.toString(16).padStart(2,"0")).join("")],transform:["rotate(0deg)","rotate("+l(d[6],60,360,!0)+"deg)"]}},{{duration:4096,easing:"cubic-bezier("+d.slice(7).map((e,t)=>l(e,t%2?-1:0,1,!1)).join(",")+")"}});m.pause(),m.currentTime=h;let y=getComputedStyle(p),g=[...y.color.matchAll(/[\d.-]+/g),...y.transform.matchAll(/[\d.-]+/g)].map(e=>Number(Number(e[0]).toFixed(2)).toString(16)).join("").replace(/[.-]/g,""),b=Math.floor((Date.now()-1682924400000)/1e3),w=new TextEncoder().encode(t+"!"+e+"!"+b+String.fromCharCode(...n)+g),x=new Uint8Array(await crypto.subtle.digest("SHA-256",w)),k=255*Math.random()|0,v=[k,...i,b&255,b>>8&255,b>>16&255,b>>>24,...x.slice(0,16),3].map((e,t)=>t?e^k:e);return p.remove(),btoa(String.fromCharCode(...v)).replace(/=+$/,"")}}}}}}]);"##
    )
}

/// The fingerprint for `seed`, and how far the closest rounded value sat from a rounding edge.
pub(crate) fn expected_fingerprint(seed: &[u8], curves: &[Vec<[u8; 11]>], p: &Positions) -> (String, f64) {
    let curve = &curves[usize::from(seed[p.group]) % curves.len()][usize::from(seed[p.segment]) % 16];
    let product: u32 = p.ct.iter().map(|&i| u32::from(seed[i] & 15)).product();
    let moment = (product + 5) / 10 * 10;
    // Control points: byte × range / 255 + min, to hundredths (exact rationals never tie here).
    let hundredths = |b: u8, signed: bool| -> f64 {
        let num = if signed { 100 * (2 * i64::from(b) - 255) } else { 100 * i64::from(b) };
        let n = (2 * num.abs() + 255) / 510 * num.signum();
        n as f64 / 100.0
    };
    let progress = ease(
        hundredths(curve[7], false),
        hundredths(curve[8], true),
        hundredths(curve[9], false),
        hundredths(curve[10], true),
        f64::from(moment) / 4096.0,
    );
    let mut margin = f64::INFINITY;
    let mut edge = |x: f64| margin = margin.min((x - x.floor() - 0.5).abs());
    let channels: Vec<f64> = (0..3)
        .map(|i| {
            let (from, to) = (f64::from(curve[i]), f64::from(curve[i + 3]));
            let v = from + (to - from) * progress;
            edge(v);
            v.round().clamp(0.0, 255.0)
        })
        .collect();
    let degrees = f64::from(u32::from(curve[6]) * 300 / 255 + 60);
    let angle = degrees * progress * std::f64::consts::PI / 180.0;
    let (cos, sin) = (angle.cos(), angle.sin());
    edge(cos.abs() * 100.0);
    edge(sin.abs() * 100.0);
    let mut out = String::new();
    for x in [channels[0], channels[1], channels[2], cos, sin, -sin, cos, 0.0, 0.0] {
        hex_digits(fixed2(x), &mut out);
    }
    (out, margin)
}

/// The easing: y at the t where x(t) = `x`, by bisection down to the last bit.
fn ease(x1: f64, y1: f64, x2: f64, y2: f64, x: f64) -> f64 {
    let bernstein = |t: f64, p1: f64, p2: f64| {
        let u = 1.0 - t;
        3.0 * u * u * t * p1 + 3.0 * u * t * t * p2 + t * t * t
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        if bernstein(mid, x1, x2) < x { lo = mid } else { hi = mid }
    }
    bernstein((lo + hi) / 2.0, y1, y2)
}

/// `Number(x.toFixed(2))` on the double's exact value: |x| = m·2^e, hundredths rounded half up.
fn fixed2(x: f64) -> f64 {
    let (m, e) = parts(x.abs());
    let n: u128 = if m == 0 {
        0
    } else if e >= 0 {
        (u128::from(m) * 100) << e
    } else if -e >= 120 {
        0
    } else {
        let shift = (-e) as u32;
        (u128::from(m) * 100 + (1u128 << (shift - 1))) >> shift
    };
    let v = n as f64 / 100.0;
    if x < 0.0 { -v } else { v }
}

/// (m, e) with x = m·2^e exactly, for finite x ≥ 0.
fn parts(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    if exp == 0 { (frac, -1074) } else { (frac | (1 << 52), exp - 1075) }
}

/// Appends JS's `x.toString(16)` without '-' and '.': whole digits, then fraction digits while the
/// rest is at least half a unit in the last place (in integers scaled by 2^(1-e)), the last one
/// rounded half to even when the rest reaches past the next digit.
fn hex_digits(x: f64, out: &mut String) {
    let (m, e) = parts(x.abs());
    if m == 0 {
        out.push('0');
        return;
    }
    if e >= 0 {
        let _ = write!(out, "{:x}", u128::from(m) << e);
        return;
    }
    let shift = (-e) as u32;
    let mut whole = u128::from(m) >> shift;
    let one = 1u128 << (shift + 1);
    let mut rest = (u128::from(m) & ((1u128 << shift) - 1)) << 1;
    let mut half_ulp = 1u128;
    let mut digits: Vec<u8> = Vec::new();
    if rest >= half_ulp {
        loop {
            rest *= 16;
            half_ulp *= 16;
            let d = (rest / one) as u8;
            rest %= one;
            digits.push(d);
            let above_half = 2 * rest > one || (2 * rest == one && d % 2 == 1);
            if above_half && rest + half_ulp > one {
                while let Some(last) = digits.pop() {
                    if last < 15 {
                        digits.push(last + 1);
                        break;
                    }
                }
                if digits.is_empty() {
                    whole += 1;
                }
                break;
            }
            if rest < half_ulp {
                break;
            }
        }
    }
    let _ = write!(out, "{whole:x}");
    for d in digits {
        out.push(char::from(b"0123456789abcdef"[usize::from(d)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_vector_is_reproduced_by_the_simulators_own_code() {
        // The public Rust client's vector (also the client's unit test): a one-curve table.
        let curves = vec![vec![[219, 4, 240, 196, 212, 140, 153, 210, 204, 247, 242]; 16]];
        let mut seed = [0u8; 48];
        seed[2..5].copy_from_slice(&[3, 5, 7]);
        for (i, b) in seed.iter_mut().enumerate().skip(5) {
            *b = i as u8;
        }
        let p = Positions { group: 0, segment: 1, ct: [2, 3, 4] };
        assert_eq!(expected_fingerprint(&seed, &curves, &p).0, "db8ee10147ae147ae147b0147ae147ae147b100");
    }

    #[test]
    fn hex_digits_match_node() {
        for (x, js) in [
            (0.01, "0.028f5c28f5c28f6"),
            (0.87, "0.deb851eb851eb8"),
            (0.99, "0.fd70a3d70a3d7"),
            (0.33, "0.547ae147ae147c"),
            (0.1, "0.1999999999999a"),
            (0.9, "0.e6666666666668"),
            (0.75, "0.c"),
            (255.0, "ff"),
            (4.35, "4.5999999999998"),
            (123.456, "7b.74bc6a7ef9dc"),
            (-0.5, "-0.8"),
        ] {
            let mut out = String::new();
            hex_digits(x, &mut out);
            assert_eq!(out, js.replace(['.', '-'], ""), "{x}");
        }
        assert_eq!(fixed2(0.125), 0.13);
        assert_eq!(fixed2(-0.125), -0.13);
        assert_eq!(fixed2(1.005), 1.0);
        assert_eq!(fixed2(2.675), 2.67);
        assert_eq!(fixed2(0.0049999), 0.0);
    }

    #[test]
    fn a_build_hides_its_positions_in_a_chunk_the_page_only_loads() {
        let b = Build::generate();
        let page = b.page();
        assert!(page.contains("\\\"curves\\\":[["), "the table is JSON-escaped in the payload");
        for (file, _) in &b.chunks[..3] {
            assert!(page.contains(&format!("/_next/static/chunks/{file}")));
        }
        let (generator, body) = &b.chunks[3];
        assert!(!page.contains(generator.as_str()));
        assert!(b.chunks[2].1.contains(&format!("static/chunks/{generator}")));
        assert!(body.contains(&format!("[i[{}]%4]", b.positions.group)));
        assert!(body.contains(&format!("a(i[{}],16)", b.positions.segment)));
        // Issued only clear of rounding edges.
        assert!(expected_fingerprint(&b.seed, &b.curves, &b.positions).1 >= EDGE_MARGIN);
        assert_ne!(Build::generate().chunks[3].0, b.chunks[3].0);
    }

    #[test]
    fn the_clients_reading_of_many_builds_agrees_with_the_simulators() {
        // Two implementations written apart (the client's follows the browser's steps, this one
        // computes exactly) must agree on every build the simulator issues.
        use crate::upstream::grok_web::statsig;
        for _ in 0..300 {
            let b = Build::generate();
            let page = b.page();
            let curves = statsig::curves_from_page(&page).expect("curves");
            let as_f64: Vec<Vec<[f64; 11]>> =
                b.curves.iter().map(|g| g.iter().map(|c| c.map(f64::from)).collect()).collect();
            assert_eq!(curves, as_f64);
            let linked: Vec<String> = b.chunks[..3].iter().map(|(f, _)| format!("/_next/static/chunks/{f}")).collect();
            assert_eq!(statsig::chunk_refs(&page), linked);
            for (_, decoy) in &b.chunks[..3] {
                assert_eq!(statsig::indices_from_chunk(decoy), None);
            }
            assert!(statsig::loads_generator(&b.chunks[2].1));
            let found = statsig::indices_from_chunk(&b.chunks[3].1).expect("indices");
            let p = b.positions;
            assert_eq!((found.group, found.segment, found.ct), (p.group, p.segment, p.ct));
            assert_eq!(statsig::fingerprint(&b.seed, &curves, &found).as_deref(), Some(b.fingerprint.as_str()));
        }
    }
}
