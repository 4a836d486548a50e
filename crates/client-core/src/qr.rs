//! The profile as a QR code, for "Create from QR code" in the official WireGuard apps: Unicode
//! half blocks for a terminal, and PNG or SVG images. The images hold the private key, so
//! [`write_qr_png`] and [`write_qr_svg`] write them like the profile itself, mode 0600.
//!
//! What is encoded is [`qr_payload`]: the wg-quick text without its `#` comment lines. The apps
//! ignore comments, and leaving them out keeps a profile (about 300 bytes) at QR version 11 at
//! error-correction level L (the terminal code) and version 13 at level M (the images). Phone
//! cameras read such codes off a screen at arm's length; past version 15 or so (77 modules and
//! up) modules get small enough on a phone-sized or printed image that reads start to fail.

use std::fmt::Write as _;
use std::path::Path;

use qrcode::render::unicode::Dense1x2;
use qrcode::{Color, EcLevel, QrCode};

use crate::output::write_private_file;
use crate::Error;

/// Error correction of the images. M (15% of the code may be lost) rather than L: an image may
/// be printed, scaled or photographed off a glossy screen; the terminal code stays at L so it
/// fits an 80x40 terminal.
pub const IMAGE_EC_LEVEL: EcLevel = EcLevel::M;

/// Pixels per module in the PNG: a version 13 code with its quiet zone is 616 pixels square,
/// sharp on a phone screen and on paper without any scaling blur.
pub const PNG_MODULE_PIXELS: usize = 8;

/// Modules of light margin on each side, as the QR specification asks for: detectors find the
/// finder patterns by the contrast around them.
pub const QUIET_ZONE: usize = 4;

/// The text a QR code of `wg_quick` encodes: every line but the `#` comments.
pub fn qr_payload(wg_quick: &str) -> String {
    wg_quick
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// The QR code the images of `wg_quick` draw, at [`IMAGE_EC_LEVEL`].
pub fn image_code(wg_quick: &str) -> Result<QrCode, Error> {
    QrCode::with_error_correction_level(qr_payload(wg_quick).as_bytes(), IMAGE_EC_LEVEL)
        .map_err(Error::Qr)
}

/// Renders the profile as a QR code of Unicode half blocks for a terminal.
///
/// Version 11 at level L is 61 modules plus the 4-module quiet zone on each side: 69 columns
/// and 35 lines, inside an 80x40 terminal. Level L is enough because the code is read off a
/// screen. The colours are inverted for the usual light-on-dark terminal: a glyph is drawn in
/// the light foreground colour, so a light module is a glyph and a dark module a blank.
pub fn render_qr(wg_quick: &str) -> Result<String, Error> {
    let code = QrCode::with_error_correction_level(qr_payload(wg_quick).as_bytes(), EcLevel::L)
        .map_err(Error::Qr)?;
    let mut image = code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    image.push('\n');
    Ok(image)
}

/// The profile's QR code as an 8-bit greyscale PNG, dark modules black on white.
pub fn render_qr_png(wg_quick: &str) -> Result<Vec<u8>, Error> {
    let code = image_code(wg_quick)?;
    let side = (code.width() + 2 * QUIET_ZONE) * PNG_MODULE_PIXELS;
    let modules = padded_modules(&code);
    let mut pixels = Vec::with_capacity(side * side);
    for row in &modules {
        let line: Vec<u8> = row
            .iter()
            .flat_map(|&dark| [if dark { 0 } else { 255 }; PNG_MODULE_PIXELS])
            .collect();
        for _ in 0..PNG_MODULE_PIXELS {
            pixels.extend_from_slice(&line);
        }
    }
    // At most 40 versions * 4 + 17 + 8 = 185 modules of 8 pixels: far inside u32.
    let side = side as u32;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .map_err(Error::QrPng)?;
    Ok(out)
}

/// The profile's QR code as an SVG image: one unit per module, the quiet zone included, each
/// run of dark modules in a row one rectangle of the single path.
pub fn render_qr_svg(wg_quick: &str) -> Result<String, Error> {
    let code = image_code(wg_quick)?;
    let modules = padded_modules(&code);
    let n = modules.len();
    let px = n * PNG_MODULE_PIXELS;
    let mut path = String::new();
    for (y, row) in modules.iter().enumerate() {
        let mut x = 0;
        while x < n {
            if !row[x] {
                x += 1;
                continue;
            }
            let run = row[x..].iter().take_while(|&&dark| dark).count();
            // Writing to a String cannot fail.
            let _ = write!(path, "M{x} {y}h{run}v1h-{run}z");
            x += run;
        }
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" viewBox=\"0 0 {n} {n}\" \
         width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\">\n\
         <rect width=\"{n}\" height=\"{n}\" fill=\"#ffffff\"/>\n\
         <path fill=\"#000000\" d=\"{path}\"/>\n\
         </svg>\n"
    ))
}

/// Writes [`render_qr_png`]'s image to `path`, mode 0600: it holds the private key.
pub fn write_qr_png(path: &Path, wg_quick: &str) -> Result<(), Error> {
    write_private_file(path, &render_qr_png(wg_quick)?)
}

/// Writes [`render_qr_svg`]'s image to `path`, mode 0600: it holds the private key.
pub fn write_qr_svg(path: &Path, wg_quick: &str) -> Result<(), Error> {
    write_private_file(path, render_qr_svg(wg_quick)?.as_bytes())
}

/// The code's modules (true: dark) by row, inside a light quiet zone.
fn padded_modules(code: &QrCode) -> Vec<Vec<bool>> {
    let width = code.width();
    let n = width + 2 * QUIET_ZONE;
    let colors = code.to_colors();
    let mut rows = vec![vec![false; n]; n];
    for (i, color) in colors.iter().enumerate() {
        rows[QUIET_ZONE + i / width][QUIET_ZONE + i % width] = *color == Color::Dark;
    }
    rows
}

#[cfg(test)]
mod tests;
