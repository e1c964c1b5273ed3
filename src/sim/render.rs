//! Real pictures for the simulator: a smooth two-colour gradient with a few discs, all derived from a
//! seed (the prompt and the image's id), so every picture differs, as grok.com's do: the quality guard
//! takes the same picture for two prompts, or twice in one answer, for a flagged account's.

use sha2::{Digest, Sha256};

pub fn seed_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Pixel dimensions for an aspect ratio with the longer side `long`.
pub fn dims_for_ratio(ratio: &str, long: u32) -> (u32, u32) {
    let (w, h) = ratio
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .filter(|(a, b)| *a > 0.0 && *b > 0.0)
        .unwrap_or((1.0, 1.0));
    let long = long.max(8) as f64;
    let (pw, ph) = if w >= h { (long, long * h / w) } else { (long * w / h, long) };
    // Even sides keep every ratio exact enough and make video encoders happy later.
    let even = |x: f64| ((x.round() as u32).max(8) + 1) & !1;
    (even(pw), even(ph))
}

/// Encodes an RGB picture for `seed` as PNG. `detail` < 1.0 renders a coarser, blockier picture (previews).
pub fn render_png(seed: &[u8; 32], width: u32, height: u32, detail: f32) -> Vec<u8> {
    let c0 = [seed[0], seed[1], seed[2]];
    let c1 = [seed[3], seed[4], seed[5]];
    let discs: Vec<(f32, f32, f32, [u8; 3])> = (0..4)
        .map(|i| {
            let b = &seed[6 + i * 6..12 + i * 6];
            (
                b[0] as f32 / 255.0 * width as f32,
                b[1] as f32 / 255.0 * height as f32,
                (0.08 + b[2] as f32 / 255.0 * 0.22) * width.min(height) as f32,
                [b[3], b[4], b[5]],
            )
        })
        .collect();
    let block = if detail >= 1.0 { 1 } else { ((1.0 / detail.max(0.01)) as u32).max(1) };
    let mut data = vec![0u8; (width * height * 3) as usize];
    for y in 0..height {
        for x in 0..width {
            let (sx, sy) = ((x / block) * block, (y / block) * block);
            let t = (sx as f32 / width as f32 + sy as f32 / height as f32) / 2.0;
            let mut px = [0u8; 3];
            for k in 0..3 {
                px[k] = (c0[k] as f32 * (1.0 - t) + c1[k] as f32 * t) as u8;
            }
            for (cx, cy, r, col) in &discs {
                let (dx, dy) = (sx as f32 - cx, sy as f32 - cy);
                if dx * dx + dy * dy <= r * r {
                    for k in 0..3 {
                        px[k] = ((px[k] as u16 + col[k] as u16) / 2) as u8;
                    }
                }
            }
            let o = ((y * width + x) * 3) as usize;
            data[o..o + 3].copy_from_slice(&px);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        // Writing into a Vec cannot fail for dimensions we computed ourselves.
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&data);
        }
    }
    out
}

/// What a flagged account answers every image request with: one unrelated picture, whatever the
/// prompt, ratio or slot, in a file that differs each time (a text chunk naming the request), as
/// grok.com's canned media comes in a new container each time (chenyme/grok2api #1014).
pub fn canned_png() -> bytes::Bytes {
    let pixels = render_png(&seed_of(&[b"grok imagine canned picture"]), 256, 256, 1.0);
    let Ok(img) = image::load_from_memory(&pixels) else { return bytes::Bytes::from(pixels) };
    let rgb = img.to_rgb8();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, rgb.width(), rgb.height());
    enc.set_color(png::ColorType::Rgb);
    let _ = enc.add_text_chunk("Comment".into(), uuid::Uuid::new_v4().to_string());
    if let Ok(mut w) = enc.write_header() {
        let _ = w.write_image_data(rgb.as_raw());
    }
    bytes::Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_map_to_dims() {
        assert_eq!(dims_for_ratio("1:1", 512), (512, 512));
        assert_eq!(dims_for_ratio("16:9", 512), (512, 288));
        assert_eq!(dims_for_ratio("2:3", 300), (200, 300));
        assert_eq!(dims_for_ratio("bogus", 64), (64, 64));
    }

    #[test]
    fn renders_decodable_png_that_depends_on_seed() {
        let a = render_png(&seed_of(&[b"cat"]), 64, 48, 1.0);
        let b = render_png(&seed_of(&[b"dog"]), 64, 48, 1.0);
        assert_ne!(a, b);
        let decoder = png::Decoder::new(std::io::Cursor::new(a));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (64, 48));
    }
}
