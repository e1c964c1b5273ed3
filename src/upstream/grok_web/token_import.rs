//! Token files operators bring from other tools: plain text (one `TOKEN` or `TOKEN|PROXY` per line),
//! JSON (an array of tokens or token objects, or an object holding them, e.g. per-pool maps keyed by
//! token), or JSON lines. The format is detected; every entry is reported, so a bad line is rejected
//! with its reason instead of failing the file.

use serde_json::Value;

use crate::upstream::grok_web::browser::check_proxy_url;
use crate::upstream::grok_web::token_pool::normalize_token;
use crate::upstream::tokens::Format;

/// One token as found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub token: String,
    pub proxy: Option<String>,
    pub note: Option<String>,
}

/// An entry of the file: its line (txt, jsonl) or position (json), and the token or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub found: Result<Candidate, String>,
}

const TOKEN_FIELDS: [&str; 5] = ["token", "sso", "sso_token", "value", "cookie"];
const LIST_FIELDS: [&str; 5] = ["tokens", "data", "items", "accounts", "list"];

pub fn parse(content: &str, filename: Option<&str>) -> (Format, Vec<Entry>) {
    let content = content.trim_start_matches('\u{feff}');
    let ext = filename.and_then(|f| f.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    let trimmed = content.trim_start();
    if ext.as_deref() != Some("txt") && ext.as_deref() != Some("jsonl") && trimmed.starts_with(['[', '{']) {
        match serde_json::from_str::<Value>(content) {
            Ok(v) => {
                let mut out = Vec::new();
                walk(&v, &mut out);
                let entries = out.into_iter().enumerate().map(|(i, found)| Entry { line: i + 1, found }).collect();
                return (Format::Json, entries);
            }
            Err(e) if ext.as_deref() == Some("json") || trimmed.starts_with('[') => {
                return (Format::Json, vec![Entry { line: e.line(), found: Err(format!("not valid JSON: {e}")) }]);
            }
            Err(_) => {}
        }
    }
    let jsonl = ext.as_deref() == Some("jsonl")
        || (ext.as_deref() != Some("txt")
            && content.lines().map(str::trim).find(|l| !l.is_empty()).is_some_and(|l| l.starts_with(['{', '"'])));
    let mut entries = Vec::new();
    for (i, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || (!jsonl && line.starts_with('#')) {
            continue;
        }
        let found = if jsonl {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => one(&v),
                Err(e) => Err(format!("not JSON: {e}")),
            }
        } else {
            from_entry(line, None)
        };
        entries.push(Entry { line: i + 1, found });
    }
    (if jsonl { Format::Jsonl } else { Format::Txt }, entries)
}

/// Collects every token a JSON document holds, in document order.
fn walk(v: &Value, out: &mut Vec<Result<Candidate, String>>) {
    match v {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) => walk(item, out),
                    Value::Object(m) if !has_token_field(m) && LIST_FIELDS.iter().any(|f| m.contains_key(*f)) => {
                        walk(item, out)
                    }
                    _ => out.push(one(item)),
                }
            }
        }
        Value::Object(map) if has_token_field(map) => out.push(one(v)),
        Value::Object(map) => {
            for (k, item) in map {
                match item {
                    Value::Array(_) => walk(item, out),
                    Value::Object(inner)
                        if has_token_field(inner) || LIST_FIELDS.iter().any(|f| inner.contains_key(*f)) =>
                    {
                        walk(item, out)
                    }
                    // `{"<token>": {..metadata..}}`: pools keyed by the token itself.
                    Value::Object(inner) if looks_like_token(k) => out.push(from_entry(k, Some(inner))),
                    Value::Object(_) => walk(item, out),
                    Value::String(s) if LIST_FIELDS.contains(&k.as_str()) || TOKEN_FIELDS.contains(&k.as_str()) => {
                        out.push(from_entry(s, None))
                    }
                    _ => {}
                }
            }
        }
        other => out.push(one(other)),
    }
}

fn has_token_field(map: &serde_json::Map<String, Value>) -> bool {
    TOKEN_FIELDS.iter().any(|f| map.get(*f).is_some_and(Value::is_string))
}

fn looks_like_token(s: &str) -> bool {
    s.len() >= 20 && !s.contains(char::is_whitespace)
}

/// One JSON value that should be a token: a string, or an object with a token field.
fn one(v: &Value) -> Result<Candidate, String> {
    match v {
        Value::String(s) => from_entry(s, None),
        Value::Object(map) => {
            let token = TOKEN_FIELDS
                .iter()
                .find_map(|f| map.get(*f).and_then(Value::as_str))
                .ok_or_else(|| format!("no token field ({})", TOKEN_FIELDS.join(", ")))?;
            from_entry(token, Some(map))
        }
        other => Err(format!("not a token: {other}")),
    }
}

/// An sso cookie is a JWT of a few hundred bytes; anything far longer is not one.
const MAX_TOKEN_BYTES: usize = 8192;

/// `TOKEN` or `TOKEN|PROXY` (as pasted: `sso=` and cookie attributes are stripped), with the
/// object's `proxy` / `note` when it came from one.
fn from_entry(raw: &str, meta: Option<&serde_json::Map<String, Value>>) -> Result<Candidate, String> {
    let (token_part, proxy) = match raw.split_once('|') {
        Some((t, p)) => (t, Some(p.trim().to_owned()).filter(|p| !p.is_empty())),
        None => (raw, None),
    };
    let bare = token_part.trim();
    let bare = bare.strip_prefix("sso=").unwrap_or(bare);
    let bare = bare.split(';').next().unwrap_or("").trim();
    if bare.is_empty() {
        return Err("empty token".into());
    }
    if bare.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
        return Err("the token contains spaces, control or non-ASCII characters".into());
    }
    let token = normalize_token(bare);
    if token.len() < 8 {
        return Err("too short to be an sso token".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("{} bytes is too long for an sso token ({MAX_TOKEN_BYTES} at most)", token.len()));
    }
    let field = |name: &str| meta.and_then(|m| m.get(name)).and_then(Value::as_str).map(str::trim);
    let proxy = proxy.or_else(|| field("proxy").filter(|p| !p.is_empty()).map(str::to_owned));
    if let Some(p) = &proxy {
        check_proxy_url(p).map_err(|e| format!("bad proxy: {e}"))?;
    }
    let note =
        field("note").or_else(|| field("remark")).filter(|n| !n.is_empty()).map(|n| n.chars().take(200).collect());
    Ok(Candidate { token, proxy, note })
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::token_import::*;

    fn tokens(entries: &[Entry]) -> Vec<Result<String, String>> {
        entries.iter().map(|e| e.found.clone().map(|c| c.token)).collect()
    }

    #[test]
    fn plain_text_with_proxies_comments_and_bad_lines() {
        let text = "# exported\ntok-aaaa-0001\n\nsso=tok-bbbb-0002; Path=/\ntok cccc 0003\ntok-dddd-0004|http://127.0.0.1:3128\nshort\n";
        let (format, entries) = parse(text, None);
        assert_eq!(format, Format::Txt);
        assert_eq!(entries.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 4, 5, 6, 7]);
        let t = tokens(&entries);
        assert_eq!(t[0].as_deref(), Ok("tok-aaaa-0001"));
        assert_eq!(t[1].as_deref(), Ok("tok-bbbb-0002"));
        assert!(t[2].as_ref().unwrap_err().contains("spaces"));
        assert_eq!(entries[3].found.as_ref().unwrap().proxy.as_deref(), Some("http://127.0.0.1:3128"));
        assert!(t[4].as_ref().unwrap_err().contains("too short"));
    }

    #[test]
    fn json_lines_mixing_strings_objects_and_garbage() {
        let text = "{\"token\": \"tok-aaaa-0001\", \"note\": \"first\"}\n\"tok-bbbb-0002\"\n{\"sso\": \"tok-cccc-0003\", \"proxy\": \"socks5://127.0.0.1:1080\"}\nnot json\n{\"name\": \"x\"}\n{\"token\": \"tok-dd 0004\"}\n{\"token\": \"tok-eeee-0005\", \"proxy\": \"ftp://x\"}\n";
        let (format, entries) = parse(text, Some("export.jsonl"));
        assert_eq!(format, Format::Jsonl);
        let t = tokens(&entries);
        assert_eq!(entries[0].found.as_ref().unwrap().note.as_deref(), Some("first"));
        assert_eq!(t[1].as_deref(), Ok("tok-bbbb-0002"));
        assert_eq!(entries[2].found.as_ref().unwrap().proxy.as_deref(), Some("socks5://127.0.0.1:1080"));
        assert!(t[3].as_ref().unwrap_err().starts_with("not JSON"));
        assert!(t[4].as_ref().unwrap_err().starts_with("no token field"));
        assert!(t[5].as_ref().unwrap_err().contains("spaces"));
        assert!(t[6].as_ref().unwrap_err().starts_with("bad proxy"));
        assert_eq!(entries[6].line, 7);
    }

    #[test]
    fn json_documents_of_other_tools() {
        // An array of strings and objects.
        let (f, e) = parse(r#"["tok-aaaa-0001", {"token": "tok-bbbb-0002", "note": "n"}, 42]"#, None);
        assert_eq!(f, Format::Json);
        let t = tokens(&e);
        assert_eq!((t[0].as_deref(), t[1].as_deref()), (Ok("tok-aaaa-0001"), Ok("tok-bbbb-0002")));
        assert!(t[2].is_err());
        // An object holding a list.
        let (_, e) = parse(r#"{"version": 2, "tokens": [{"sso": "tok-cccc-0003"}]}"#, Some("x.json"));
        assert_eq!(tokens(&e), vec![Ok("tok-cccc-0003".to_string())]);
        // Pools keyed by the token itself, with metadata objects.
        let doc = r#"{"ssoNormal": {"eyJhbGciOiJIUzI1NiJ9.aaaa.bbbb": {"note": "a"}}, "ssoSuper": {"eyJhbGciOiJIUzI1NiJ9.cccc.dddd": {}}}"#;
        let (_, e) = parse(doc, None);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].found.as_ref().unwrap().note.as_deref(), Some("a"));
        // Broken JSON is one rejected entry, not a txt import of its lines.
        let (f, e) = parse("[\"tok-aaaa-0001\",", None);
        assert_eq!((f, e.len()), (Format::Json, 1));
        assert!(e[0].found.as_ref().unwrap_err().starts_with("not valid JSON"));
    }
}
