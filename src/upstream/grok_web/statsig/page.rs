//! Reading grok.com's frontend: the seed in the page's meta tag, the build's `curves` table, the
//! seed positions in the generator's script chunk, and which chunks to fetch to find it.

use base64::Engine;

use crate::upstream::grok_web::statsig::fingerprint::{BuildIndices, CURVES_PER_GROUP, Curve, Curves, GROUPS};

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

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::statsig::fingerprint::{build_fingerprint, published_vector};
    use crate::upstream::grok_web::statsig::page::*;

    #[test]
    fn the_seed_is_read_from_the_meta_tag() {
        let seed: Vec<u8> = (100..148).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&seed);
        let page =
            format!("<html><head><meta name=\"grok-site\u{2010}verification\" content=\"{b64}\"/></head></html>");
        assert_eq!(seed_from_page(&page), Some(seed));
        assert_eq!(seed_from_page("<html><meta name=\"other\" content=\"x\"></html>"), None);
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
}
