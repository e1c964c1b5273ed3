//! What a piece of media shows, hashed: the decoded pixels of an image, the encoded samples of an
//! MP4's video track. Two files that differ only in their container (metadata, box order, a new
//! wrapper per download) get the same fingerprint. The quality guard compares these, because a
//! flagged grok.com account wraps its one canned clip anew for every task (chenyme/grok2api #1014:
//! four tasks, four file SHA-256s, one H.264 stream).

use sha2::Digest;

/// A SHA-256 over what the media shows (or, for what cannot be read, over its bytes).
pub type Fingerprint = [u8; 32];

pub fn fingerprint(bytes: &[u8], content_type: &str) -> Fingerprint {
    let mut h = sha2::Sha256::new();
    if content_type.starts_with("video/") {
        if let Some(track) = crate::media::mp4::video_track(bytes) {
            h.update(b"video samples\0");
            for s in track.samples {
                h.update((s.len() as u64).to_be_bytes());
                h.update(&bytes[s]);
            }
            return h.finalize().into();
        }
        if let Some(mdat) = crate::media::mp4::media_data(bytes) {
            h.update(b"media data\0");
            for r in mdat {
                h.update(&bytes[r]);
            }
            return h.finalize().into();
        }
    }
    if content_type.starts_with("image/") {
        if let Some(img) = decode(bytes) {
            let rgba = img.to_rgba8();
            h.update(b"pixels\0");
            h.update(rgba.width().to_be_bytes());
            h.update(rgba.height().to_be_bytes());
            h.update(rgba.as_raw());
            return h.finalize().into();
        }
    }
    h.update(b"bytes\0");
    h.update(bytes);
    h.finalize().into()
}

/// An image decoded under limits: a client's input may be a decompression bomb (a tiny file claiming
/// 100,000 × 100,000 pixels); such a file is fingerprinted by its bytes instead.
fn decode(bytes: &[u8]) -> Option<image::DynamicImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(256 << 20);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().ok()?;
    reader.limits(limits);
    reader.decode().ok()
}

#[cfg(test)]
mod tests {
    use crate::media::fingerprint::*;

    fn png(pixels: &[u8], text: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 1);
        enc.set_color(png::ColorType::Rgb);
        if let Some(t) = text {
            enc.add_text_chunk("Comment".into(), t.into()).unwrap();
        }
        enc.write_header().unwrap().write_image_data(pixels).unwrap();
        out
    }

    #[test]
    fn an_image_is_known_by_its_pixels_not_its_file() {
        let plain = png(&[1, 2, 3, 4, 5, 6], None);
        let tagged = png(&[1, 2, 3, 4, 5, 6], Some("request 42"));
        assert_ne!(plain, tagged);
        assert_eq!(fingerprint(&plain, "image/png"), fingerprint(&tagged, "image/png"));
        assert_ne!(fingerprint(&plain, "image/png"), fingerprint(&png(&[1, 2, 3, 4, 5, 7], None), "image/png"));
        // Not decodable: its bytes are all there is.
        assert_ne!(fingerprint(b"not a png", "image/png"), fingerprint(b"not a png!", "image/png"));
    }
}
