//! A QR code in a `data:` URL, for an `<img>`: the enrolment's `otpauth://` URI, and the
//! tunnel profile when the broker had to make the device's key (`devices.rs`).
//!
//! A PNG rather than inline `<svg>`: the page CSP allows `img-src data:` and no inline style,
//! and an image cannot carry a `style` attribute or script into the page whatever renders it.
//! The pixels are drawn here (8-bit grey through the `png` crate) instead of with qrcode's own
//! image support, which would pull in the `image` crate and its codecs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use qrcode::{Color, EcLevel, QrCode};

use crate::error::{Error, Result};

/// Pixels per module: a code of about 50 modules is 400 pixels square, sharp on a phone held
/// to a laptop screen, and the stylesheet may scale it down without blurring modules together.
pub(super) const MODULE_PIXELS: usize = 8;
/// Light modules around the code, as the QR specification asks: a detector finds the corner
/// patterns by the contrast around them, and a dark page background must not touch them.
pub(super) const QUIET_ZONE: usize = 4;

/// `text` as a QR code in a `data:image/png;base64,` URL, and the image's side in pixels.
/// `what` names the text in the error.
pub(super) fn png_data_url(text: &str, what: &str) -> Result<(String, usize)> {
    // M: 15% of the code may be lost to glare off a screen. An otpauth URI (about 120 bytes)
    // is version 6; a tunnel profile (about 420 bytes) version 15, which the WireGuard apps
    // read off a laptop screen.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| Error::Internal(format!("QR code of {what}: {e}")))?;
    let (png, side) = render_png(&code)?;
    let url = format!("data:image/png;base64,{}", STANDARD.encode(png));
    Ok((url, side))
}

fn render_png(code: &QrCode) -> Result<(Vec<u8>, usize)> {
    let width = code.width();
    let colors = code.to_colors();
    let modules = width + 2 * QUIET_ZONE;
    let side = modules * MODULE_PIXELS;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..modules {
        let line: Vec<u8> = (0..modules)
            .flat_map(|x| {
                let dark = (QUIET_ZONE..QUIET_ZONE + width).contains(&x)
                    && (QUIET_ZONE..QUIET_ZONE + width).contains(&y)
                    && colors[(y - QUIET_ZONE) * width + (x - QUIET_ZONE)] == Color::Dark;
                [if dark { 0 } else { 255 }; MODULE_PIXELS]
            })
            .collect();
        for _ in 0..MODULE_PIXELS {
            pixels.extend_from_slice(&line);
        }
    }
    // At most 177 + 8 modules of 8 pixels: far inside u32.
    let side_u32 = u32::try_from(side).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    // Rows repeat eight times and runs are long: the best setting makes the page's image
    // a few kilobytes instead of tens, for no time worth measuring at this size.
    encoder.set_compression(png::Compression::Best);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(|e| Error::Internal(format!("PNG of a QR code: {e}")))?;
    Ok((out, side))
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test.
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_image_is_the_code_with_its_quiet_zone() {
        let text = "otpauth://totp/grantwire:bob?secret=AAAA&issuer=grantwire";
        let (url, side) = png_data_url(text, "a test").unwrap();
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
        // Written out, not taken from the constants, so a change to them fails here.
        assert_eq!(side, (code.width() + 8) * 8);
        let png = STANDARD
            .decode(url.strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        let mut reader = png::Decoder::new(png.as_slice()).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width as usize, info.height as usize), (side, side));
        let at = |x: usize, y: usize| pixels[y * side + x];
        // Four light modules of margin on every side; then the top-left finder pattern's
        // dark corner, one module of eight pixels.
        for i in 0..side {
            for edge in [0, 31, side - 32, side - 1] {
                assert_eq!((at(i, edge), at(edge, i)), (255, 255), "{i} {edge}");
            }
        }
        assert_eq!(at(32, 32), 0);
        assert_eq!(at(39, 39), 0);
    }
}
