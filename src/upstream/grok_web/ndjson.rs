//! Lenient framing for grok.com's conversation stream: JSON objects normally one per line, but also
//! `data: `-prefixed, `[DONE]` markers, blank lines, or objects glued together with no separator.
//! Objects are cut by brace matching (string-aware), so chunk boundaries can fall anywhere.

/// Incremental splitter: push bytes as they arrive, pull complete frames.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Scan state of the object that starts at `buf[0]`, resumed on the next push.
    scanned: usize,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

#[derive(Debug, PartialEq)]
pub enum Frame {
    Json(serde_json::Value),
    /// A line that is not JSON: the upstream is not speaking the protocol we expect.
    Garbage(String),
}

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.scanned == 0 {
                self.skip_separators();
                if self.buf.is_empty() {
                    return None;
                }
                if self.buf[0] != b'{' {
                    if self.buf.len() < 5 && b"data:".starts_with(&self.buf) {
                        return None; // a `data:` prefix cut by the chunk boundary
                    }
                    let end = self.buf.iter().position(|&b| b == b'\n')?;
                    let line: Vec<u8> = self.buf.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_owned();
                    if line.is_empty() || line == "[DONE]" || line == "data: [DONE]" {
                        continue;
                    }
                    return Some(Frame::Garbage(line.chars().take(200).collect()));
                }
            }
            let end = self.scan()?;
            let object: Vec<u8> = self.buf.drain(..end).collect();
            self.scanned = 0;
            return Some(match serde_json::from_slice(&object) {
                Ok(v) => Frame::Json(v),
                Err(_) => Frame::Garbage(String::from_utf8_lossy(&object).chars().take(200).collect()),
            });
        }
    }

    /// Bytes left over at end of stream (a truncated object), if any.
    pub fn remainder(&self) -> Option<String> {
        let rest = String::from_utf8_lossy(&self.buf);
        let rest = rest.trim();
        (!rest.is_empty() && rest != "[DONE]").then(|| rest.chars().take(200).collect())
    }

    fn skip_separators(&mut self) {
        let mut i = 0;
        loop {
            while i < self.buf.len() && self.buf[i].is_ascii_whitespace() {
                i += 1;
            }
            if self.buf[i..].starts_with(b"data:") {
                i += 5;
                continue;
            }
            break;
        }
        self.buf.drain(..i);
    }

    /// Continues brace matching from where the last call stopped; returns the object's end offset.
    fn scan(&mut self) -> Option<usize> {
        let mut i = self.scanned;
        while i < self.buf.len() {
            let b = self.buf[i];
            i += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' => self.depth += 1,
                b'}' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        self.scanned = i;
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::ndjson::*;
    use serde_json::json;

    fn all(decoder: &mut FrameDecoder) -> Vec<Frame> {
        std::iter::from_fn(|| decoder.next_frame()).collect()
    }

    #[test]
    fn splits_lines_prefixes_and_glued_objects() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"a\":1}\n\ndata: {\"b\":\"}{\\\"\"}{\"c\":{\"d\":[1]}}\n[DONE]\n");
        assert_eq!(
            all(&mut d),
            vec![Frame::Json(json!({"a":1})), Frame::Json(json!({"b":"}{\""})), Frame::Json(json!({"c":{"d":[1]}}))]
        );
        assert_eq!(d.remainder(), None);
    }

    #[test]
    fn frames_survive_any_chunk_boundary() {
        let text = b"{\"x\":\"a{b}\\\\\"}\n{\"y\":2}{\"z\":[{}]}\n";
        for cut in 0..text.len() {
            let mut d = FrameDecoder::default();
            d.push(&text[..cut]);
            let mut frames = all(&mut d);
            d.push(&text[cut..]);
            frames.extend(all(&mut d));
            assert_eq!(frames.len(), 3, "cut at {cut}");
            assert_eq!(frames[0], Frame::Json(json!({"x":"a{b}\\"})));
        }
    }

    #[test]
    fn garbage_and_truncation_are_reported() {
        let mut d = FrameDecoder::default();
        d.push(b"<html>oops</html>\n{\"half\":");
        assert_eq!(all(&mut d), vec![Frame::Garbage("<html>oops</html>".into())]);
        assert_eq!(d.remainder().as_deref(), Some("{\"half\":"));
    }
}
