//! The image file format a caller asks for (OpenAI's `output_format` / `output_compression`): the
//! upstream's image is re-encoded when it is in another format, before it is stored, so links and
//! `b64_json` agree.

use bytes::Bytes;
use image::ImageEncoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
    Webp,
}

impl ImageFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "png" => Some(Self::Png),
            "jpeg" | "jpg" => Some(Self::Jpeg),
            "webp" => Some(Self::Webp),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }
}

/// What the stored images should be; the default keeps the upstream's file as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageOutput {
    pub format: Option<ImageFormat>,
    /// JPEG quality 0–100 (WebP is written lossless, so it has no quality).
    pub compression: Option<u8>,
}

impl ImageOutput {
    /// `bytes` in the wanted format: unchanged when it already is (or nothing is asked).
    pub fn apply(&self, bytes: Bytes, content_type: &'static str) -> Result<(Bytes, &'static str), String> {
        let Some(format) = self.format.filter(|f| f.content_type() != content_type) else {
            return Ok((bytes, content_type));
        };
        let img = image::load_from_memory(&bytes).map_err(|e| format!("cannot decode the upstream image: {e}"))?;
        let mut out = Vec::with_capacity(bytes.len());
        let written = match format {
            ImageFormat::Png => image::codecs::png::PngEncoder::new(&mut out).write_image(
                img.as_bytes(),
                img.width(),
                img.height(),
                img.color().into(),
            ),
            ImageFormat::Jpeg => {
                // JPEG has no alpha: flatten to RGB first.
                let rgb = img.to_rgb8();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, self.compression.unwrap_or(90).min(100))
                    .write_image(rgb.as_raw(), rgb.width(), rgb.height(), image::ExtendedColorType::Rgb8)
            }
            ImageFormat::Webp => {
                let rgba = img.to_rgba8();
                image::codecs::webp::WebPEncoder::new_lossless(&mut out).write_image(
                    rgba.as_raw(),
                    rgba.width(),
                    rgba.height(),
                    image::ExtendedColorType::Rgba8,
                )
            }
        };
        written.map_err(|e| format!("cannot encode {}: {e}", format.content_type()))?;
        Ok((Bytes::from(out), format.content_type()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png() -> Bytes {
        let img = image::RgbaImage::from_fn(8, 6, |x, y| image::Rgba([x as u8 * 30, y as u8 * 40, 90, 255]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), 8, 6, image::ExtendedColorType::Rgba8)
            .unwrap();
        Bytes::from(out)
    }

    #[test]
    fn converts_only_when_another_format_is_asked() {
        let src = png();
        let same = ImageOutput { format: Some(ImageFormat::Png), compression: None }.apply(src.clone(), "image/png");
        assert_eq!(same.unwrap().0, src, "already PNG: untouched");
        assert_eq!(ImageOutput::default().apply(src.clone(), "image/png").unwrap().0, src);
        for (format, magic) in [(ImageFormat::Jpeg, &b"\xFF\xD8\xFF"[..]), (ImageFormat::Webp, &b"RIFF"[..])] {
            let (bytes, ct) =
                ImageOutput { format: Some(format), compression: Some(50) }.apply(src.clone(), "image/png").unwrap();
            assert_eq!(ct, format.content_type());
            assert!(bytes.starts_with(magic), "{ct}");
            let back = image::load_from_memory(&bytes).unwrap();
            assert_eq!((back.width(), back.height()), (8, 6));
        }
        assert!(
            ImageOutput { format: Some(ImageFormat::Jpeg), compression: None }
                .apply(Bytes::from_static(b"nope"), "image/png")
                .is_err()
        );
    }
}
