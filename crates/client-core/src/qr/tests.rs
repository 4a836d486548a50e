//! The QR codes read back, with a real decoder (`rqrr`), to exactly the profile the WireGuard
//! app imports, and stay small enough for a phone camera.

use super::*;
use crate::keys;
use grantwire_proto::{PresharedKey, Profile};

/// A profile as the broker makes it; `endpoint` varies, as it is the one field whose length
/// the operator chooses.
fn profile(endpoint: &str) -> Profile {
    Profile {
        lease_id: "l-0123456789abcdef".parse().unwrap(),
        edge: "home".parse().unwrap(),
        address: "10.77.0.254".parse().unwrap(),
        edge_public_key: keys::generate().public_key(),
        endpoint: endpoint.parse().unwrap(),
        allowed_ips: vec!["10.77.0.1/32".parse().unwrap()],
        preshared_key: PresharedKey::from_bytes([5; 32]),
        persistent_keepalive: 25,
        plex_url: "http://10.77.0.1:32400/web".parse().unwrap(),
        pin: "198.51.100.7/32".parse().unwrap(),
        expires_at: 1_700_000_000,
    }
}

/// Endpoints from the common case to a long DNS name and a full IPv6 address.
const ENDPOINTS: [&str; 3] = [
    "plex-host.example.net:51820",
    "a-rather-long-dynamic-dns-name-for-a-home.plex-server.example.org:51820",
    "[2001:db8:1234:5678:9abc:def0:1234:5678]:51820",
];

/// Decodes the one QR code in a greyscale image: (version, error-correction bits, text).
fn decode(
    width: usize,
    height: usize,
    pixel: impl FnMut(usize, usize) -> u8,
) -> (usize, u16, String) {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(width, height, pixel);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (meta, text) = grids[0].decode().expect("the QR code decodes");
    (meta.version.0, meta.ecc_level, text)
}

/// rqrr reports the two error-correction bits of the format information as stored in the
/// code (ISO/IEC 18004 table 12): M is 0b00, L 0b01, H 0b10, Q 0b11.
const ECC_BITS_M: u16 = 0;

/// Phone cameras read codes up to about version 15 reliably off a screen or a print of a
/// few centimetres; every profile must stay within it at level M.
const MAX_VERSION: usize = 15;

fn png_pixels(png_bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let decoder = png::Decoder::new(png_bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

#[test]
fn png_decodes_to_exactly_the_profile_at_version_13_level_m() {
    for endpoint in ENDPOINTS {
        let wg_quick = profile(endpoint).to_wg_quick(&keys::generate());
        let (w, h, px) = png_pixels(&render_qr_png(&wg_quick).unwrap());
        let (version, ecc, text) = decode(w, h, |x, y| px[y * w + x]);
        assert_eq!(text, qr_payload(&wg_quick), "{endpoint}");
        assert_eq!(ecc, ECC_BITS_M, "{endpoint}: level M");
        assert!(version <= MAX_VERSION, "{endpoint}: version {version}");
        if endpoint == ENDPOINTS[0] {
            // The usual profile: version 13, 69 modules, 616 pixels with the quiet zone.
            assert_eq!(version, 13);
            assert_eq!(w, (69 + 2 * QUIET_ZONE) * PNG_MODULE_PIXELS);
            assert_eq!(h, w);
        }
    }
}

#[test]
fn the_payload_is_the_wg_quick_text_without_comments() {
    let key = keys::generate();
    let wg_quick = profile(ENDPOINTS[0]).to_wg_quick(&key);
    let payload = qr_payload(&wg_quick);
    let kept: Vec<&str> = wg_quick.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(payload.lines().collect::<Vec<_>>(), kept);
    assert!(
        payload.starts_with("[Interface]\nPrivateKey = "),
        "{payload}"
    );
    assert!(payload.contains(&key.to_base64()));
    assert!(payload.ends_with("PersistentKeepalive = 25\n"), "{payload}");
}

/// The modules of the SVG's path, by row, parsed back from its `M x yhNv1h-Nz` runs.
fn svg_modules(svg: &str) -> Vec<Vec<bool>> {
    let mut reader = quick_xml::Reader::from_str(svg);
    let (mut side, mut path) = (None, None);
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                for attr in e.attributes() {
                    let attr = attr.expect("well-formed attribute");
                    let value = String::from_utf8(attr.value.to_vec()).unwrap();
                    match (e.name().as_ref(), attr.key.as_ref()) {
                        (b"svg", b"viewBox") => {
                            let parts: Vec<usize> =
                                value.split(' ').map(|p| p.parse().unwrap()).collect();
                            assert_eq!(parts[..2], [0, 0]);
                            assert_eq!(parts[2], parts[3], "square");
                            side = Some(parts[2]);
                        }
                        (b"path", b"d") => path = Some(value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let n = side.expect("a viewBox");
    let mut rows = vec![vec![false; n]; n];
    for run in path.expect("a path").split('z').filter(|r| !r.is_empty()) {
        let nums: Vec<usize> = run
            .trim_start_matches('M')
            .split(['h', 'v', ' '])
            .filter(|p| !p.is_empty())
            .map(|p| p.trim_start_matches('-').parse().unwrap())
            .collect();
        let [x, y, len, 1, back] = nums[..] else {
            panic!("not a run: {run}")
        };
        assert_eq!(len, back, "{run}");
        rows[y][x..x + len].iter_mut().for_each(|m| *m = true);
    }
    rows
}

#[test]
fn svg_is_well_formed_and_carries_the_pngs_matrix() {
    let wg_quick = profile(ENDPOINTS[1]).to_wg_quick(&keys::generate());
    let svg = render_qr_svg(&wg_quick).unwrap();
    let modules = svg_modules(&svg);
    let n = modules.len();

    // The PNG, sampled at the centre of each module, is the same matrix.
    let (w, _, px) = png_pixels(&render_qr_png(&wg_quick).unwrap());
    assert_eq!(w, n * PNG_MODULE_PIXELS);
    let half = PNG_MODULE_PIXELS / 2;
    for (y, row) in modules.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            let p = px[(y * PNG_MODULE_PIXELS + half) * w + x * PNG_MODULE_PIXELS + half];
            assert_eq!(dark, p == 0, "module ({x}, {y})");
        }
    }
    // And it decodes on its own, drawn at 4 pixels a module.
    let scale = 4;
    let (version, ecc, text) = decode(n * scale, n * scale, |x, y| {
        if modules[y / scale][x / scale] {
            0
        } else {
            255
        }
    });
    assert_eq!(text, qr_payload(&wg_quick));
    assert_eq!(ecc, ECC_BITS_M);
    assert!(version <= MAX_VERSION, "version {version}");
}

#[test]
fn terminal_code_fits_an_80x40_terminal() {
    let qr = render_qr(&profile(ENDPOINTS[0]).to_wg_quick(&keys::generate())).unwrap();
    let lines: Vec<&str> = qr.lines().collect();
    let width = lines[0].chars().count();
    // Version 11 at level L: 61 modules plus two 4-module quiet zones, as the rustdoc says.
    assert_eq!(width, 69, "{width} columns");
    assert_eq!(lines.len(), 35);
    assert!(lines.iter().all(|l| l.chars().count() == width));
    assert!(qr.contains('\u{2588}') || qr.contains('\u{2580}'));
}

#[cfg(unix)]
#[test]
fn image_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let wg_quick = profile(ENDPOINTS[0]).to_wg_quick(&keys::generate());
    let png_path = dir.path().join("qr/home.png");
    let svg_path = dir.path().join("home.svg");
    write_qr_png(&png_path, &wg_quick).unwrap();
    write_qr_svg(&svg_path, &wg_quick).unwrap();
    for path in [&png_path, &svg_path] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    assert!(std::fs::read(&png_path)
        .unwrap()
        .starts_with(b"\x89PNG\r\n"));
}
