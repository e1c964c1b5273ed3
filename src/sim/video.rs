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

/// The clip for one video: the fixture with `seed` written into its H.264 stream as an SEI message
/// (user data, unregistered) at the head of the first sample, so every video the simulator makes shows
/// its own stream, as grok.com's do. The quality guard fingerprints that stream.
pub(crate) fn clip(ratio: &str, seconds: u64, seed: &[u8; 32]) -> bytes::Bytes {
    let fixture = fixture(ratio, seconds);
    bytes::Bytes::from(mark(fixture, seed).unwrap_or_else(|| fixture.to_vec()))
}

/// What a flagged account answers every video request with: one demo clip (the same stream), in a
/// container that differs each time, as grok.com's canned lighthouse clip did (chenyme/grok2api #1014:
/// a new file SHA-256 per task, an identical H.264 stream).
pub fn canned_clip() -> bytes::Bytes {
    let mut out = clip("16:9", 6, &crate::sim::render::seed_of(&[b"grok imagine demo clip"])).to_vec();
    out.extend_from_slice(&24u32.to_be_bytes());
    out.extend_from_slice(b"free");
    out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes::Bytes::from(out)
}

/// The clip with its movie header saying `seconds`: the fixtures come in 6 s and 10 s, and an
/// extension's result must last exactly the input plus the added part (both simulators).
pub(crate) fn with_duration(mut clip: Vec<u8>, seconds: u64) -> Vec<u8> {
    let Some(at) = clip.windows(4).position(|w| w == b"mvhd") else { return clip };
    // Version 0 only (the fixtures'): version/flags, two times, then timescale and duration.
    let (ts, dur) = (at + 4 + 12, at + 4 + 16);
    if clip.get(at + 4) != Some(&0) || clip.len() < dur + 4 {
        return clip;
    }
    let timescale = u32::from_be_bytes([clip[ts], clip[ts + 1], clip[ts + 2], clip[ts + 3]]);
    let duration = u32::try_from(u64::from(timescale) * seconds).unwrap_or(u32::MAX);
    clip[dur..dur + 4].copy_from_slice(&duration.to_be_bytes());
    clip
}

/// A random UUID of no zero bytes, naming the simulator's SEI payloads.
const SEI_UUID: [u8; 16] = *b"grok2api-sim-sei";

/// `mp4` with an SEI NAL unit carrying `seed` (hex, so no start-code emulation) put in front of the
/// first video sample: its size grows, later chunk offsets and the enclosing `mdat` move with it.
fn mark(mp4: &[u8], seed: &[u8; 32]) -> Option<Vec<u8>> {
    use crate::media::mp4::{boxes, video_track};
    let track = video_track(mp4)?;
    let first = track.samples.first()?.clone();
    let mut nal = vec![0x06, 0x05, (SEI_UUID.len() + 64) as u8];
    nal.extend_from_slice(&SEI_UUID);
    nal.extend_from_slice(hex::encode(seed).as_bytes());
    nal.push(0x80);
    let mut sei = (nal.len() as u32).to_be_bytes().to_vec();
    sei.extend_from_slice(&nal);
    let grow = sei.len();
    let at = first.start;
    let mdat = boxes(mp4, 0..mp4.len())?.into_iter().find(|b| &b.kind == b"mdat" && b.payload.contains(&at))?;
    if track.chunk_offsets.kind != *b"stco" || mdat.payload.start - mdat.whole.start != 8 || track.stsz.start > at {
        return None; // Not how the fixtures are laid out (moov first, 32-bit sizes and offsets).
    }
    let mut out = mp4.to_vec();
    let add = |out: &mut Vec<u8>, pos: usize| {
        let v = u32::from_be_bytes(out[pos..pos + 4].try_into().ok()?).checked_add(grow as u32)?;
        out[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
        Some(())
    };
    add(&mut out, track.stsz.start + 12)?;
    let offsets = track.chunk_offsets.payload.start + 8;
    let chunks = u32::from_be_bytes(out.get(offsets - 4..offsets)?.try_into().ok()?) as usize;
    for i in 0..chunks {
        let pos = offsets + 4 * i;
        if u32::from_be_bytes(out.get(pos..pos + 4)?.try_into().ok()?) as usize > at {
            add(&mut out, pos)?;
        }
    }
    add(&mut out, mdat.whole.start)?;
    out.splice(at..at, sei);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mp4::video_track;

    /// The marked clip has the fixture's samples, the first led by one SEI NAL, every sample still a
    /// run of 4-byte-length NAL units, and the same duration.
    fn check_marked(fixture: &[u8], marked: &[u8]) {
        let (a, b) = (video_track(fixture).unwrap(), video_track(marked).unwrap());
        assert_eq!(a.samples.len(), b.samples.len());
        for (i, (x, y)) in a.samples.iter().zip(&b.samples).enumerate() {
            let (x, y) = (&fixture[x.clone()], &marked[y.clone()]);
            let y = if i == 0 {
                assert_eq!(y[4], 0x06, "an SEI NAL first");
                &y[4 + u32::from_be_bytes(y[..4].try_into().unwrap()) as usize..]
            } else {
                y
            };
            assert_eq!(x, y, "sample {i}");
            let mut rest = y;
            while !rest.is_empty() {
                let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                rest = &rest[4 + n..];
            }
        }
    }

    #[test]
    fn a_flagged_accounts_clip_is_one_stream_in_a_new_container_each_time() {
        let (a, b) = (canned_clip(), canned_clip());
        assert_ne!(a, b);
        let fp = |c: &[u8]| crate::media::fingerprint::fingerprint(c, "video/mp4");
        assert_eq!(fp(&a), fp(&b));
    }

    #[test]
    fn fixtures_are_mp4() {
        for ratio in ["16:9", "9:16", "3:2", "2:3", "1:1"] {
            for s in [6, 10] {
                let f = fixture(ratio, s);
                assert_eq!(&f[4..8], b"ftyp", "{ratio} {s}s");
                check_marked(f, &clip(ratio, s, &[7; 32]));
                assert_ne!(
                    crate::media::fingerprint::fingerprint(&clip(ratio, s, &[7; 32]), "video/mp4"),
                    crate::media::fingerprint::fingerprint(&clip(ratio, s, &[8; 32]), "video/mp4"),
                );
            }
        }
    }
}
