//! Just enough ISO-BMFF (MP4) for three readers: a video's duration and size (`info`: xAI's edits take
//! at most 8.7 s, extensions 2-15 s, so a video is judged before it is sent), and its video track's
//! samples (`video_track`: the quality guard fingerprints what a clip shows, not its container, which
//! grok.com renews for each canned answer: chenyme/grok2api #1014 saw a different file SHA-256 per task
//! and an identical H.264 stream; the simulator marks each clip it makes inside that stream). No
//! panics: a file these boxes cannot be read from is `None`.

use std::ops::Range;

/// One box: its type, where its payload is, and where the whole box is, in the buffer searched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mp4Box {
    pub kind: [u8; 4],
    pub payload: Range<usize>,
    pub whole: Range<usize>,
}

/// The boxes directly inside `range` of `buf` (the whole file, or a container box's payload). `None`
/// when a size does not fit: not an MP4 we can read.
pub fn boxes(buf: &[u8], range: Range<usize>) -> Option<Vec<Mp4Box>> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at + 8 <= range.end {
        let size32 = u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind: [u8; 4] = buf.get(at + 4..at + 8)?.try_into().ok()?;
        let (size, header) = match size32 {
            0 => (range.end - at, 8),
            1 => (usize::try_from(u64::from_be_bytes(buf.get(at + 8..at + 16)?.try_into().ok()?)).ok()?, 16),
            n => (n, 8),
        };
        if size < header || at.checked_add(size)? > range.end {
            return None;
        }
        out.push(Mp4Box { kind, payload: at + header..at + size, whole: at..at + size });
        at += size;
    }
    Some(out)
}

fn child(buf: &[u8], parent: &Range<usize>, kind: &[u8; 4]) -> Option<Mp4Box> {
    boxes(buf, parent.clone())?.into_iter().find(|b| &b.kind == kind)
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn be64(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// The sample table of the first video track (`hdlr` = `vide`).
pub struct VideoTrack {
    /// Where each sample's bytes are in the file, in decoding order.
    pub samples: Vec<Range<usize>>,
    /// Where the `stsz` and chunk-offset (`stco`/`co64`) payloads are, for an editor.
    pub stsz: Range<usize>,
    pub chunk_offsets: Mp4Box,
}

/// The first video track's samples, read from `moov`'s sample tables. `None` for a file that is not an
/// MP4 with such a track (fragmented MP4 keeps its samples in `moof`s, which this does not read).
pub fn video_track(buf: &[u8]) -> Option<VideoTrack> {
    let moov = child(buf, &(0..buf.len()), b"moov")?;
    for trak in boxes(buf, moov.payload)?.into_iter().filter(|b| &b.kind == b"trak") {
        let Some(mdia) = child(buf, &trak.payload, b"mdia") else { continue };
        let Some(hdlr) = child(buf, &mdia.payload, b"hdlr") else { continue };
        if buf.get(hdlr.payload.start + 8..hdlr.payload.start + 12) != Some(b"vide") {
            continue;
        }
        let stbl = child(buf, &child(buf, &mdia.payload, b"minf")?.payload, b"stbl")?;
        return sample_table(buf, &stbl.payload);
    }
    None
}

fn sample_table(buf: &[u8], stbl: &Range<usize>) -> Option<VideoTrack> {
    let all = boxes(buf, stbl.clone())?;
    let find = |k: &[u8; 4]| all.iter().find(|b| &b.kind == k).cloned();
    let stsz = find(b"stsz")?;
    let (fixed, count) = (be32(buf, stsz.payload.start + 4)?, be32(buf, stsz.payload.start + 8)? as usize);
    // Every sample takes at least a byte of the file: a larger count is a lie, and believing it would
    // allocate gigabytes before any bound is checked.
    if count > buf.len() {
        return None;
    }
    let sizes: Vec<usize> = if fixed != 0 {
        vec![fixed as usize; count]
    } else {
        (0..count).map(|i| be32(buf, stsz.payload.start + 12 + 4 * i).map(|s| s as usize)).collect::<Option<_>>()?
    };
    let (offsets_box, wide) = match find(b"stco") {
        Some(b) => (b, false),
        None => (find(b"co64")?, true),
    };
    let chunks = be32(buf, offsets_box.payload.start + 4)? as usize;
    let offsets: Vec<usize> = (0..chunks)
        .map(|i| {
            let at = offsets_box.payload.start + 8 + i * if wide { 8 } else { 4 };
            if wide { be64(buf, at).and_then(|o| usize::try_from(o).ok()) } else { be32(buf, at).map(|o| o as usize) }
        })
        .collect::<Option<_>>()?;
    // stsc: runs of (first chunk, samples per chunk), 1-based chunk numbers.
    let stsc = find(b"stsc")?;
    let runs = be32(buf, stsc.payload.start + 4)? as usize;
    let runs: Vec<(usize, usize)> = (0..runs)
        .map(|i| {
            let at = stsc.payload.start + 8 + 12 * i;
            Some((be32(buf, at)? as usize, be32(buf, at + 4)? as usize))
        })
        .collect::<Option<_>>()?;
    let mut samples = Vec::with_capacity(count);
    let mut next = sizes.iter();
    for (chunk, offset) in offsets.iter().enumerate() {
        let per_chunk = runs.iter().rev().find(|(first, _)| *first <= chunk + 1).map_or(0, |r| r.1);
        let mut at = *offset;
        for _ in 0..per_chunk {
            let Some(size) = next.next() else { break };
            let end = at.checked_add(*size)?;
            if end > buf.len() {
                return None;
            }
            samples.push(at..end);
            at = end;
        }
    }
    (samples.len() == count).then_some(VideoTrack { samples, stsz: stsz.payload, chunk_offsets: offsets_box })
}

/// What a readable MP4 says about itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mp4Info {
    pub seconds: f64,
    /// Width × height of the first track with a non-zero size (the video track), if any.
    pub size: Option<(u32, u32)>,
}

/// The duration (`moov/mvhd`) and size (the first `moov/trak/tkhd` with one) of an MP4 that starts
/// with `ftyp`.
pub fn info(buf: &[u8]) -> Option<Mp4Info> {
    let top = boxes(buf, 0..buf.len())?;
    if &top.first()?.kind != b"ftyp" {
        return None;
    }
    let moov = top.iter().find(|b| &b.kind == b"moov")?;
    let mvhd = buf.get(child(buf, &moov.payload, b"mvhd")?.payload)?;
    // Version 1 has 64-bit times (creation, modification, then timescale and duration).
    let (timescale, duration) = match mvhd.first()? {
        1 => (be32(mvhd, 20)?, be64(mvhd, 24)?),
        _ => (be32(mvhd, 12)?, u64::from(be32(mvhd, 16)?)),
    };
    if timescale == 0 {
        return None;
    }
    let size = boxes(buf, moov.payload.clone())?.into_iter().filter(|b| &b.kind == b"trak").find_map(|trak| {
        let tkhd = buf.get(child(buf, &trak.payload, b"tkhd")?.payload)?;
        // Width and height are the last 8 bytes, 16.16 fixed point.
        let end = tkhd.len().checked_sub(8)?;
        let (w, h) = (be32(tkhd, end)? >> 16, be32(tkhd, end + 4)? >> 16);
        (w > 0 && h > 0).then_some((w, h))
    });
    Some(Mp4Info { seconds: duration as f64 / f64::from(timescale), size })
}

/// The payloads of the top-level `mdat` boxes: the media, for an MP4 whose tracks cannot be read.
pub fn media_data(buf: &[u8]) -> Option<Vec<Range<usize>>> {
    let top = boxes(buf, 0..buf.len())?;
    let mdat: Vec<Range<usize>> = top.into_iter().filter(|b| &b.kind == b"mdat").map(|b| b.payload).collect();
    (!mdat.is_empty()).then_some(mdat)
}

#[cfg(test)]
mod tests {
    use crate::media::mp4::*;

    /// A box of `kind` around `payload`.
    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(payload);
        b
    }

    fn full(kind: &[u8; 4], fields: &[u32]) -> Vec<u8> {
        let mut p = vec![0u8; 4];
        for f in fields {
            p.extend_from_slice(&f.to_be_bytes());
        }
        bx(kind, &p)
    }

    /// ftyp, moov (one video track: 3 samples in 2 chunks), mdat.
    fn tiny(mdat_at_front: bool) -> Vec<u8> {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let media = b"AAAABBCCCCCC".to_vec(); // samples of 4, 2 and 6 bytes
        let build = |mdat_start: u32| {
            let hdlr = bx(b"hdlr", &[0, 0, 0, 0, 0, 0, 0, 0, b'v', b'i', b'd', b'e', 0, 0, 0, 0]);
            let stsz = full(b"stsz", &[0, 3, 4, 2, 6]);
            let stco = full(b"stco", &[2, mdat_start, mdat_start + 6]);
            let stsc = full(b"stsc", &[2, 1, 2, 1, 2, 1, 1]);
            let stbl = bx(b"stbl", &[stsz, stco, stsc].concat());
            let mdia = bx(b"mdia", &[hdlr, bx(b"minf", &stbl)].concat());
            bx(b"moov", &bx(b"trak", &mdia))
        };
        let moov_len = build(0).len() as u32;
        let mdat = bx(b"mdat", &media);
        if mdat_at_front {
            let start = ftyp.len() as u32 + 8;
            [ftyp, mdat, build(start)].concat()
        } else {
            let start = ftyp.len() as u32 + moov_len + 8;
            [ftyp.clone(), build(start), mdat].concat()
        }
    }

    #[test]
    fn finds_the_video_samples_wherever_mdat_is() {
        for front in [false, true] {
            let f = tiny(front);
            let t = video_track(&f).unwrap();
            let got: Vec<&[u8]> = t.samples.iter().map(|r| &f[r.clone()]).collect();
            assert_eq!(got, [&b"AAAA"[..], b"BB", b"CCCCCC"], "mdat first: {front}");
            assert_eq!(media_data(&f).unwrap().len(), 1);
        }
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p.extend_from_slice(&timescale.to_be_bytes());
        p.extend_from_slice(&duration.to_be_bytes());
        p.extend_from_slice(&[0u8; 80]);
        bx(b"mvhd", &p)
    }

    fn tkhd(w: u32, h: u32) -> Vec<u8> {
        let mut p = vec![0u8; 76];
        p.extend_from_slice(&(w << 16).to_be_bytes());
        p.extend_from_slice(&(h << 16).to_be_bytes());
        bx(b"tkhd", &p)
    }

    #[test]
    fn reads_duration_and_size_and_refuses_what_is_not_an_mp4() {
        let trak = bx(b"trak", &tkhd(1280, 720));
        let moov = bx(b"moov", &[mvhd_v0(1000, 6500), trak].concat());
        let file = [bx(b"ftyp", b"isom\0\0\0\0"), moov.clone(), bx(b"mdat", &[0; 16])].concat();
        assert_eq!(info(&file), Some(Mp4Info { seconds: 6.5, size: Some((1280, 720)) }));
        assert_eq!(info(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(info(&moov), None, "no ftyp first");
        let mut truncated = file.clone();
        truncated.truncate(30);
        assert_eq!(info(&truncated), None);
        let zero = [bx(b"ftyp", b"isom"), bx(b"moov", &mvhd_v0(0, 5))].concat();
        assert_eq!(info(&zero), None, "a zero timescale says nothing");
    }

    #[test]
    fn garbage_and_truncation_are_not_a_track() {
        let f = tiny(false);
        for cut in [0, 7, 20, f.len() - 3] {
            assert!(video_track(&f[..cut]).is_none(), "cut at {cut}");
        }
        assert!(video_track(b"\x89PNG\r\n\x1a\n0000").is_none());
        assert!(boxes(&[0, 0, 0, 4, b'f', b'r', b'e', b'e'], 0..8).is_none(), "a size under the header");
        // A sample count no file could hold is refused before anything is allocated for it.
        let mut lying = tiny(false);
        let at = lying.windows(4).position(|w| w == b"stsz").unwrap() + 4;
        lying[at + 4..at + 12].copy_from_slice(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(video_track(&lying).is_none());
    }
}
