//! Real MP4s for the simulator: H.264 baseline test patterns, 12 fps, one per aspect ratio and length,
//! made once with `ffmpeg -f lavfi -i testsrc2=size=WxH:rate=12:duration=S -c:v libx264 -profile:v
//! baseline -pix_fmt yuv420p -crf 38 -movflags +faststart` and shipped in `fixtures/` (~35–58 KB each).

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("fixtures/video-", $name, ".mp4")) as &'static [u8]
    };
}

/// The clip for an aspect ratio (3:2 when unknown) and length (6 s up to 6, else 10 s).
pub(crate) fn fixture(ratio: &str, seconds: u64) -> &'static [u8] {
    let long = seconds > 6;
    match (ratio, long) {
        ("16:9", false) => fixture!("16x9-6s"),
        ("16:9", true) => fixture!("16x9-10s"),
        ("9:16", false) => fixture!("9x16-6s"),
        ("9:16", true) => fixture!("9x16-10s"),
        ("2:3", false) => fixture!("2x3-6s"),
        ("2:3", true) => fixture!("2x3-10s"),
        ("1:1", false) => fixture!("1x1-6s"),
        ("1:1", true) => fixture!("1x1-10s"),
        (_, false) => fixture!("3x2-6s"),
        (_, true) => fixture!("3x2-10s"),
    }
}

/// The clip for one video: the fixture with a top-level `free` box carrying `seed` appended (players
/// skip it), so every video the simulator makes has its own bytes, as grok.com's do. The quality guard
/// takes identical bytes for different prompts as canned output.
pub(crate) fn clip(ratio: &str, seconds: u64, seed: &[u8; 32]) -> bytes::Bytes {
    let fixture = fixture(ratio, seconds);
    let mut out = Vec::with_capacity(fixture.len() + 40);
    out.extend_from_slice(fixture);
    out.extend_from_slice(&40u32.to_be_bytes());
    out.extend_from_slice(b"free");
    out.extend_from_slice(seed);
    bytes::Bytes::from(out)
}

/// What a flagged account answers every video request with, whatever was asked: one demo clip.
pub(crate) fn canned_clip() -> bytes::Bytes {
    clip("16:9", 6, &crate::sim::render::seed_of(&[b"grok imagine demo clip"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_mp4() {
        for ratio in ["16:9", "9:16", "3:2", "2:3", "1:1"] {
            for s in [6, 10] {
                let f = fixture(ratio, s);
                assert_eq!(&f[4..8], b"ftyp", "{ratio} {s}s");
                let c = clip(ratio, s, &[7; 32]);
                assert_eq!((&c[..f.len()], &c[f.len() + 4..f.len() + 8]), (f, &b"free"[..]));
            }
        }
    }
}
