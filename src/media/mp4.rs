//! Just enough of ISO BMFF (MP4) to judge a video before it is sent to an upstream that limits input
//! lengths (xAI's edits take at most 8.7 s, extensions 2–15 s): the movie's duration from
//! `moov/mvhd`, and the first video track's size from `moov/trak/tkhd`. No allocation, no panics:
//! a file these boxes cannot be read from is `None`, and the caller refuses it as not a readable MP4.

/// What a readable MP4 says about itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mp4Info {
    pub seconds: f64,
    /// Width × height of the first track with a non-zero size (the video track), if any.
    pub size: Option<(u32, u32)>,
}

/// The boxes directly inside `b`: (type, payload). Stops at the first malformed box.
fn boxes(mut b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size = u32::from_be_bytes(b.get(0..4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        // 64-bit sizes (`size == 1`) and to-the-end boxes (`size == 0`) only occur for `mdat` in the
        // files upstreams make; it is skipped whole either way.
        let (header, size) = match size {
            0 => (8, b.len()),
            1 => (16, usize::try_from(u64::from_be_bytes(b.get(8..16)?.try_into().ok()?)).ok()?),
            n => (8, n),
        };
        if size < header || size > b.len() {
            return None;
        }
        let payload = b.get(header..size)?;
        b = b.get(size..)?;
        Some((kind, payload))
    })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The duration and size of an MP4, or `None` when it is not one this reader understands.
pub fn info(bytes: &[u8]) -> Option<Mp4Info> {
    let (first, _) = boxes(bytes).next()?;
    if &first != b"ftyp" {
        return None;
    }
    let (_, moov) = boxes(bytes).find(|(k, _)| k == b"moov")?;
    let (_, mvhd) = boxes(moov).find(|(k, _)| k == b"mvhd")?;
    // Version 1 has 64-bit times (creation, modification, then timescale and duration).
    let (timescale, duration) = match mvhd.first()? {
        1 => (u32_at(mvhd, 20)?, u64_at(mvhd, 24)?),
        _ => (u32_at(mvhd, 12)?, u64::from(u32_at(mvhd, 16)?)),
    };
    if timescale == 0 {
        return None;
    }
    let size = boxes(moov).filter(|(k, _)| k == b"trak").find_map(|(_, trak)| {
        let (_, tkhd) = boxes(trak).find(|(k, _)| k == b"tkhd")?;
        // Width and height are the last 8 bytes, 16.16 fixed point.
        let end = tkhd.len().checked_sub(8)?;
        let (w, h) = (u32_at(tkhd, end)? >> 16, u32_at(tkhd, end + 4)? >> 16);
        (w > 0 && h > 0).then_some((w, h))
    });
    Some(Mp4Info { seconds: duration as f64 / f64::from(timescale), size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&timescale.to_be_bytes());
        p.extend_from_slice(&duration.to_be_bytes());
        p.extend_from_slice(&[0u8; 80]);
        n_box(b"mvhd", &p)
    }

    fn tkhd(w: u32, h: u32) -> Vec<u8> {
        let mut p = vec![0u8; 76];
        p.extend_from_slice(&(w << 16).to_be_bytes());
        p.extend_from_slice(&(h << 16).to_be_bytes());
        n_box(b"tkhd", &p)
    }

    #[test]
    fn reads_duration_and_size_and_refuses_what_is_not_an_mp4() {
        let trak = n_box(b"trak", &tkhd(1280, 720));
        let moov = n_box(b"moov", &[mvhd_v0(1000, 6500), trak].concat());
        let file = [n_box(b"ftyp", b"isom\0\0\0\0"), moov.clone(), n_box(b"mdat", &[0; 16])].concat();
        assert_eq!(info(&file), Some(Mp4Info { seconds: 6.5, size: Some((1280, 720)) }));
        assert_eq!(info(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(info(&moov), None, "no ftyp first");
        let mut truncated = file.clone();
        truncated.truncate(30);
        assert_eq!(info(&truncated), None);
        let zero = [n_box(b"ftyp", b"isom"), n_box(b"moov", &mvhd_v0(0, 5))].concat();
        assert_eq!(info(&zero), None, "a zero timescale says nothing");
    }
}
