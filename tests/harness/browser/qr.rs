//! Reading QR codes back out of a screenshot, the way a phone's camera would see the page: the
//! whole PNG as a grey image, every code `rqrr` finds in it decoded.

/// The payloads of every QR code in the PNG `png_bytes`, in the order `rqrr` finds them.
/// Panics when the PNG cannot be read; codes that are found but do not decode are reported in
/// the error list of [`decode_qr_detailed`].
pub fn decode_qr(png_bytes: &[u8]) -> Vec<String> {
    let (found, errors) = decode_qr_detailed(png_bytes);
    if found.is_empty() && !errors.is_empty() {
        panic!("QR codes were found but none decoded: {errors:?}");
    }
    found
}

/// The payloads that decoded, and why the others did not.
pub fn decode_qr_detailed(png_bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let (width, height, luma) = png_to_luma(png_bytes).unwrap_or_else(|e| panic!("PNG: {e}"));
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| luma[y * width + x]);
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for grid in img.detect_grids() {
        match grid.decode() {
            Ok((_, text)) => found.push(text),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (found, errors)
}

/// Width, height and one luma byte per pixel (ITU-R BT.601 weights, alpha over white: a
/// transparent page background is white on a screen).
pub fn png_to_luma(png_bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), String> {
    let mut decoder = png::Decoder::new(png_bytes);
    // Palettes to RGB, low bit depths to 8 bits, 16 bits to 8: every format below is 8-bit.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let (w, h) = (info.width as usize, info.height as usize);
    let colour = info.color_type;
    if !matches!(
        colour,
        png::ColorType::Grayscale
            | png::ColorType::GrayscaleAlpha
            | png::ColorType::Rgb
            | png::ColorType::Rgba
    ) {
        return Err(format!(
            "unexpected colour type {colour:?} after normalising"
        ));
    }
    let luma = buf[..info.buffer_size()]
        .chunks_exact(colour.samples())
        .map(|p| pixel_luma(colour, p))
        .collect::<Vec<u8>>();
    if luma.len() != w * h {
        return Err(format!("{} pixels for {w}x{h}", luma.len()));
    }
    Ok((w, h, luma))
}

/// A PNG of `text` as a QR code, for tests that show a known code to the browser: `module` pixels per module, a 4-module quiet zone, drawn
/// in `colour` (RGB) on white, so the decoder sees what a styled page would show.
pub fn encode_qr_png(text: &str, module: usize, colour: [u8; 3]) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).expect("qrcode");
    let n = code.width();
    let side = (n + 8) * module;
    let dark = |x: usize, y: usize| {
        let (mx, my) = (x / module, y / module);
        (4..n + 4).contains(&mx)
            && (4..n + 4).contains(&my)
            && code[(mx - 4, my - 4)] == qrcode::Color::Dark
    };
    let mut pixels = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            pixels.extend_from_slice(&if dark(x, y) { colour } else { [255; 3] });
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(&pixels))
        .expect("png");
    out
}

fn pixel_luma(colour: png::ColorType, p: &[u8]) -> u8 {
    match colour {
        png::ColorType::GrayscaleAlpha => over_white(p[0], p[1]),
        png::ColorType::Rgb => luma(p[0], p[1], p[2]),
        png::ColorType::Rgba => over_white(luma(p[0], p[1], p[2]), p[3]),
        _ => p[0],
    }
}

fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000) as u8
}

fn over_white(v: u8, alpha: u8) -> u8 {
    ((u32::from(v) * u32::from(alpha) + 255 * (255 - u32::from(alpha))) / 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str =
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
                           Address = 10.77.0.2/32\n\n[Peer]\n\
                           PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
                           Endpoint = 192.0.2.1:51820\nAllowedIPs = 10.77.0.1/32\n";

    #[test]
    fn a_rendered_profile_reads_back() {
        assert_eq!(
            decode_qr(&encode_qr_png(PROFILE, 4, [0, 0, 0])),
            vec![PROFILE]
        );
    }

    #[test]
    fn a_coloured_code_at_small_modules_reads_back() {
        assert_eq!(
            decode_qr(&encode_qr_png("hello", 3, [30, 60, 120])),
            vec!["hello"]
        );
    }

    #[test]
    fn a_blank_image_holds_no_code() {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 64, 64);
        enc.set_color(png::ColorType::Grayscale);
        enc.write_header()
            .and_then(|mut w| w.write_image_data(&[255; 64 * 64]))
            .expect("png");
        assert!(decode_qr(&out).is_empty());
    }
}
