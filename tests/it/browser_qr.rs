//! The broker's in-browser QR encoder (crates/broker/src/web/assets/qr.js) run in Chromium and
//! checked from outside: every code it makes is read back by a real decoder (`rqrr`), its version
//! is the smallest that holds the bytes, and its modules are exactly the `qrcode` crate's for the
//! same version, level and mask. A profile drawn on a `<canvas>` reads back from a screenshot.
//!
//! The pages are files in a temporary directory (HTML, qr.js, a CSP violation recorder and the
//! profile page's drawing script), loaded from `file://` under a Content-Security-Policy like
//! the broker's (`script-src 'self'`), so an inline script or an `eval` in qr.js fails here too.

use std::path::Path;
use std::time::Instant;

use grantwire_e2e::{require_browser, Browser, BrowserOpts, Chromedriver};
use qrcode::bits::Bits;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::{Color, EcLevel, Version};
use serde_json::{json, Value};

const QR_JS: &str = include_str!("../../crates/broker/src/web/assets/qr.js");
const LEVELS: [&str; 4] = ["L", "M", "Q", "H"];
/// Quiet zone and pixels per module of every rendering here.
const MARGIN: usize = 4;
const SCALE: usize = 4;

/// A wg-quick profile as `Profile::to_wg_quick` writes it (crates/proto/src/profile.rs), keys
/// made up: 400-odd bytes, the size the New device page draws.
const PROFILE: &str = "# grantwire lease l-7f3a9c for edge edge-paris-1\n\
    # Plex: http://10.77.0.1:32400/web\n\
    # Works only from 203.0.113.45 until unix time 1767225600.\n\
    [Interface]\n\
    PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
    Address = 10.77.0.23/32\n\
    \n\
    [Peer]\n\
    PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
    PresharedKey = 3DfVhVHn8Gz3Yb8Bq0yK1m1nH2ZkF0jvVbJXq1o0zDo=\n\
    AllowedIPs = 10.77.0.1/32\n\
    Endpoint = 198.51.100.7:51820\n\
    PersistentKeepalive = 25\n";

/// Records the page's Content-Security-Policy violations, loaded before anything else.
const CSP_WATCH: &str = "\"use strict\";\n\
    window.cspViolations = [];\n\
    document.addEventListener('securitypolicyviolation', (e) => {\n\
      window.cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI);\n\
    });\n";

/// The profile page's own script: draws `#payload` on `#code` as the New device page will, in
/// the page (where the CSP applies; scripts run through WebDriver are exempt from it).
const DRAW_JS: &str = "\"use strict\";\n\
    (function () {\n\
      const t0 = performance.now();\n\
      const qr = QrCode.encode(document.getElementById('payload').textContent, 'M');\n\
      QrCode.draw(document.getElementById('code'), qr, { scale: 4, margin: 4 });\n\
      const rows = qr.modules.map((r) => r.map((d) => (d ? '1' : '0')).join(''));\n\
      const ms = performance.now() - t0;\n\
      window.drawn = { version: qr.version, size: qr.size, rows, ms };\n\
    })();\n";

/// The pages, all under a CSP like the broker's: each loads the CSP watcher first and has an
/// inline script the policy must refuse (a canary: the policy is in force).
enum Page {
    /// A canvas and qr.js.
    Qr,
    /// The same without qr.js, to see which globals the script adds.
    Bare,
    /// [`PROFILE`] as text, drawn by [`DRAW_JS`] when the page loads.
    Profile,
}

fn write_page(dir: &Path, page: Page) -> String {
    let (name, body) = match page {
        Page::Qr => ("qr.html", "<script src=\"qr.js\"></script>".to_owned()),
        Page::Bare => ("bare.html", String::new()),
        Page::Profile => (
            "profile.html",
            format!(
                "<pre id=\"payload\" hidden>{PROFILE}</pre>\
                 <script src=\"qr.js\"></script><script src=\"draw.js\"></script>"
            ),
        ),
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; script-src 'self'; img-src 'self' data:\">\
         <title>qr</title><script src=\"csp-watch.js\"></script></head><body>\
         <script>window.canary = 1;</script><canvas id=\"code\"></canvas>{body}</body></html>"
    );
    for (file, text) in [
        ("qr.js", QR_JS),
        ("csp-watch.js", CSP_WATCH),
        ("draw.js", DRAW_JS),
    ] {
        std::fs::write(dir.join(file), text).unwrap_or_else(|e| panic!("writing {file}: {e}"));
    }
    let path = dir.join(name);
    std::fs::write(&path, html).expect("write page");
    format!("file://{}", path.display())
}

fn open_page(name: &str, page: Page) -> (tempfile::TempDir, Chromedriver, Browser) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = write_page(dir.path(), page);
    let driver = Chromedriver::start();
    let browser = Browser::new(&driver, name, BrowserOpts::desktop());
    browser.goto(&url);
    let loaded = browser.execute(
        "return [typeof window.QrCode, typeof window.canary];",
        vec![],
    );
    assert_eq!(
        loaded,
        json!(["object", "undefined"]),
        "qr.js runs and the inline canary does not: the page's CSP is in force"
    );
    (dir, driver, browser)
}

/// Asserts the only CSP violation on the page is the inline canary's: qr.js used no inline
/// script or style, and no eval on loading (nor in the profile page's drawing).
#[track_caller]
fn assert_no_csp_violation(browser: &Browser) {
    let seen = browser.execute("return window.cspViolations;", vec![]);
    assert_eq!(
        seen,
        json!(["script-src-elem inline"]),
        "CSP violations (the canary's expected)"
    );
}

fn ec_level(level: &str) -> EcLevel {
    match level {
        "L" => EcLevel::L,
        "M" => EcLevel::M,
        "Q" => EcLevel::Q,
        "H" => EcLevel::H,
        _ => panic!("level {level}"),
    }
}

/// The bits the `qrcode` crate puts in `version`'s data codewords: byte mode, as qr.js encodes.
/// (`QrCode::with_error_correction_level` would segment digits and capitals into numeric and
/// alphanumeric modes, which qr.js never uses, so its version is not the one to compare.)
fn crate_bits(bytes: &[u8], version: i16, level: EcLevel) -> Option<Bits> {
    let mut bits = Bits::new(Version::Normal(version));
    bits.push_byte_data(bytes).ok()?;
    bits.push_terminator(level).ok()?;
    Some(bits)
}

/// The smallest version holding `bytes` in byte mode, by the `qrcode` crate.
fn crate_version(bytes: &[u8], level: EcLevel) -> Option<i16> {
    (1..=40).find(|&v| crate_bits(bytes, v, level).is_some())
}

/// Bytes a version holds in byte mode: the crate's data bits less mode and count fields.
fn crate_capacity(version: i16, level: EcLevel) -> usize {
    let bits = Bits::new(Version::Normal(version))
        .max_len(level)
        .expect("a normal version");
    let count = if version < 10 { 8 } else { 16 };
    (bits - 4 - count) / 8
}

/// The crate's symbol for `bytes` at this version and level with `mask` forced, as rows.
fn crate_matrix(bytes: &[u8], version: i16, level: EcLevel, mask: u64) -> Vec<Vec<bool>> {
    let bits = crate_bits(bytes, version, level).expect("the bytes fit");
    let (data, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), Version::Normal(version), level)
            .expect("codewords");
    let mut canvas = Canvas::new(Version::Normal(version), level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    canvas.apply_mask(match mask {
        0 => MaskPattern::Checkerboard,
        1 => MaskPattern::HorizontalLines,
        2 => MaskPattern::VerticalLines,
        3 => MaskPattern::DiagonalLines,
        4 => MaskPattern::LargeCheckerboard,
        5 => MaskPattern::Fields,
        6 => MaskPattern::Diamonds,
        7 => MaskPattern::Meadow,
        _ => panic!("mask {mask}"),
    });
    let size = Version::Normal(version).width() as usize;
    let colours = canvas.into_colors();
    colours
        .chunks(size)
        .map(|row| row.iter().map(|c| *c == Color::Dark).collect())
        .collect()
}

/// ISO/IEC 18004's mask penalty (rules 1-4), written here apart from qr.js to check its choice.
/// Rule 3 counts 40 for each side of a 1:1:3:1:1 pattern that has four light modules, the
/// quiet zone past the edge counting as light (the `qrcode` crate scores differently, so its
/// own mask choice is no reference).
fn penalty(m: &[Vec<bool>]) -> u32 {
    let n = m.len();
    let line_score = |line: &[bool]| {
        let mut score = 0;
        let mut run = 1;
        for i in 1..=line.len() {
            if i < line.len() && line[i] == line[i - 1] {
                run += 1;
            } else {
                if run >= 5 {
                    score += 3 + (run - 5);
                }
                run = 1;
            }
        }
        let light =
            |from: isize| (from..from + 4).all(|k| k < 0 || k >= n as isize || !line[k as usize]);
        let finder = [true, false, true, true, true, false, true];
        for s in 0..=n - 7 {
            if line[s..s + 7] == finder {
                score += 40 * (u32::from(light(s as isize - 4)) + u32::from(light(s as isize + 7)));
            }
        }
        score
    };
    let mut score = 0;
    for i in 0..n {
        let column: Vec<bool> = m.iter().map(|row| row[i]).collect();
        score += line_score(&m[i]) + line_score(&column);
    }
    for y in 0..n - 1 {
        for x in 0..n - 1 {
            let c = m[y][x];
            if m[y][x + 1] == c && m[y + 1][x] == c && m[y + 1][x + 1] == c {
                score += 3;
            }
        }
    }
    let dark = m.iter().flatten().filter(|&&d| d).count();
    let total = n * n;
    score + 10 * ((20 * dark).abs_diff(10 * total) / total) as u32
}

/// The symbol as a grey image: white quiet zone of [`MARGIN`], [`SCALE`] pixels per module.
fn render(m: &[Vec<bool>]) -> (usize, Vec<u8>) {
    let side = (m.len() + 2 * MARGIN) * SCALE;
    let mut luma = vec![255u8; side * side];
    for (y, row) in m.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            if !dark {
                continue;
            }
            for py in 0..SCALE {
                let start = ((y + MARGIN) * SCALE + py) * side + (x + MARGIN) * SCALE;
                luma[start..start + SCALE].fill(0);
            }
        }
    }
    (side, luma)
}

fn write_png(path: &Path, side: usize, luma: &[u8]) {
    let file = std::fs::File::create(path).expect("png file");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(luma))
        .expect("png");
}

/// Decodes the rendered symbol with `rqrr`: its metadata (version, level indicator, mask) and
/// text, or why it failed.
fn decode(side: usize, luma: &[u8]) -> Result<(rqrr::MetaData, String), String> {
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| luma[y * side + x]);
    let grids = img.detect_grids();
    match grids.as_slice() {
        [grid] => grid.decode().map_err(|e| e.to_string()),
        _ => Err(format!("{} codes found", grids.len())),
    }
}

/// A payload of exactly `len` UTF-8 bytes, from a profile's alphabet; with `utf8`, also "é"
/// (2 bytes), "✓" (3) and "🔑" (4, a surrogate pair in JavaScript).
fn payload(len: usize, seed: usize, utf8: bool) -> String {
    const ASCII: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/= \n#:.[]";
    let wide = ["é", "✓", "🔑"];
    let mut s = String::new();
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    while s.len() < len {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let pick = (x >> 33) % 97;
        let w = wide[pick % 3];
        if utf8 && pick < 20 && s.len() + w.len() <= len {
            s.push_str(w);
        } else {
            s.push(ASCII[pick % ASCII.len()] as char);
        }
    }
    s
}

/// Encodes `cases` (text, level) in the page, a batch per call; returns each result with its
/// rows as strings of 0 and 1.
fn encode_all(browser: &Browser, cases: &[(String, &str)]) -> Vec<Value> {
    let js = "return arguments[0].map(([text, level]) => {\
                const qr = QrCode.encode(text, level);\
                return { version: qr.version, level: qr.level, mask: qr.mask, size: qr.size,\
                         rows: qr.modules.map((r) => r.map((d) => (d ? '1' : '0')).join('')) };\
              });";
    let mut out = Vec::new();
    for batch in cases.chunks(40) {
        let args = batch.iter().map(|(t, l)| json!([t, l])).collect();
        match browser.execute(js, vec![Value::Array(args)]) {
            Value::Array(results) => out.extend(results),
            other => panic!("encode returned {other}"),
        }
    }
    out
}

fn rows_of(result: &Value) -> Vec<Vec<bool>> {
    result["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_str()
                .expect("row")
                .bytes()
                .map(|b| b == b'1')
                .collect()
        })
        .collect()
}

/// Every version boundary of every level (the longest payload a version holds and one byte
/// more), empty and one-byte payloads, some with multi-byte characters: each code decodes to
/// its text at the level and mask it reports, uses the smallest version that holds the bytes,
/// chose the mask of least penalty, and equals the `qrcode` crate's symbol module for module.
#[test]
fn codes_decode_at_the_smallest_version_and_match_the_reference() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let t0 = Instant::now();
    let (_dir, _driver, browser) = open_page("browser_qr/matrix", Page::Qr);
    let mut cases: Vec<(String, &str)> = Vec::new();
    for level in LEVELS {
        let ec = ec_level(level);
        let mut lengths = vec![0, 1];
        for v in 1..=40 {
            let cap = crate_capacity(v, ec);
            lengths.push(cap);
            if v < 40 {
                lengths.push(cap + 1);
            }
        }
        for (i, len) in lengths.into_iter().enumerate() {
            cases.push((payload(len, i, i % 4 == 3), level));
        }
    }
    let t_js = Instant::now();
    let results = encode_all(&browser, &cases);
    let js_ms = t_js.elapsed().as_millis();
    assert_no_csp_violation(&browser);
    assert_eq!(results.len(), cases.len());

    // The checks run in Rust, on every core: rqrr is slow in a debug build.
    let artifacts = browser.artifacts_dir().to_owned();
    let work: Vec<(&(String, &str), &Value)> = cases.iter().zip(&results).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let t_check = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (work, artifacts) = (&work, &artifacts);
                s.spawn(move || {
                    work.iter()
                        .skip(t)
                        .step_by(threads)
                        .flat_map(|((text, level), got)| check_case(text, level, got, artifacts))
                        .collect::<Vec<String>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a checking thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failures (failed images in {}):\n{}",
        failures.len(),
        artifacts.display(),
        failures.join("\n")
    );
    for level in LEVELS {
        let made: Vec<i64> = results
            .iter()
            .filter(|r| r["level"] == json!(level))
            .filter_map(|r| r["version"].as_i64())
            .collect();
        assert!(
            (1..=40).all(|v| made.contains(&v)),
            "every version 1..40 made at level {level}"
        );
    }
    eprintln!(
        "browser_qr: {} codes (versions 1-40, levels L M Q H) encoded in Chromium in {js_ms} ms, \
         checked in {} ms on {threads} threads, whole test {} ms",
        cases.len(),
        t_check.elapsed().as_millis(),
        t0.elapsed().as_millis()
    );
}

/// What is wrong with the code qr.js made for `text` at `level` (nothing when empty). The
/// symbol is decoded by rqrr from its module grid, and also from a rendering at 4 pixels per
/// module for the profile-sized payloads (up to 1200 bytes at L and M).
fn check_case(text: &str, level: &str, got: &Value, artifacts: &Path) -> Vec<String> {
    let bytes = text.as_bytes();
    let ec = ec_level(level);
    let version = got["version"].as_i64().unwrap_or(0) as i16;
    let mask = got["mask"].as_u64().unwrap_or(99);
    let rows = rows_of(got);
    let size = 4 * version as usize + 17;
    let what = format!(
        "{} bytes at {level} (version {version}, mask {mask})",
        bytes.len()
    );
    let mut errors = Vec::new();
    if got["level"] != json!(level) || got["size"] != json!(size) {
        errors.push(format!("{what}: reported {} {}", got["level"], got["size"]));
    }
    if rows.len() != size || rows.iter().any(|r| r.len() != size) {
        return vec![format!("{what}: not {size}x{size} modules")];
    }
    let smallest = crate_version(bytes, ec);
    if smallest != Some(version) {
        errors.push(format!(
            "{what}: the smallest version holding it is {smallest:?}"
        ));
    }

    let level_bits = [1, 0, 3, 2][LEVELS.iter().position(|l| *l == level).unwrap_or(0)];
    let expect = (version as usize, level_bits, mask);
    let mut read_back = |how: &str, decoded: Result<(rqrr::MetaData, String), String>| match decoded
    {
        Ok((meta, t))
            if t == text && (meta.version.0, meta.ecc_level, u64::from(meta.mask)) == expect =>
        {
            true
        }
        Ok((meta, t)) => {
            let head: String = t.chars().take(30).collect();
            errors.push(format!(
                "{what}: {how} read version {}, level bits {}, mask {}, {head:?}",
                meta.version.0, meta.ecc_level, meta.mask
            ));
            false
        }
        Err(e) => {
            errors.push(format!("{what}: {how} does not decode: {e}"));
            false
        }
    };
    let grid = rqrr::Grid::new(rqrr::SimpleGrid::from_func(size, |x, y| rows[y][x]));
    read_back("the module grid", grid.decode().map_err(|e| e.to_string()));
    if bytes.len() <= 1200 && (level == "L" || level == "M") {
        let (side, luma) = render(&rows);
        if !read_back("the image", decode(side, &luma)) {
            write_png(
                &artifacts.join(format!("failed-{level}-{}.png", bytes.len())),
                side,
                &luma,
            );
        }
    }

    if smallest == Some(version) && mask < 8 {
        let reference = crate_matrix(bytes, version, ec, mask);
        let differ = reference
            .iter()
            .flatten()
            .zip(rows.iter().flatten())
            .filter(|(a, b)| a != b)
            .count();
        if differ > 0 {
            errors.push(format!(
                "{what}: {differ} modules differ from the qrcode crate's"
            ));
        }
        let scores: Vec<u32> = (0..8)
            .map(|k| penalty(&crate_matrix(bytes, version, ec, k)))
            .collect();
        let best = (0..8).min_by_key(|&k| scores[k]).unwrap_or(0) as u64;
        if mask != best {
            errors.push(format!(
                "{what}: mask {best} has the least penalty: {scores:?}"
            ));
        }
    }
    errors
}

/// A wg-quick profile encoded and drawn by the page's own script on its canvas at 4 pixels per
/// module: the canvas holds exactly the modules, black on white, and a screenshot of the window
/// reads back as the profile.
#[test]
fn a_profile_drawn_on_a_canvas_reads_back_from_a_screenshot() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let (_dir, _driver, mut browser) = open_page("browser_qr/profile", Page::Profile);
    let js = "const c = document.getElementById('code');\
              return Object.assign({ width: c.width, height: c.height, png: c.toDataURL('image/png') },\
                                   window.drawn);";
    let got = browser.execute(js, vec![]);
    assert!(
        got["rows"].is_array(),
        "the page's script drew the profile: {}",
        browser.execute("return window.cspViolations;", vec![])
    );
    let rows = rows_of(&got);
    let size = rows.len();
    let side = (size + 2 * MARGIN) * SCALE;
    assert_eq!(got["size"], json!(size));
    assert_eq!(
        (got["width"].clone(), got["height"].clone()),
        (json!(side), json!(side)),
        "canvas size"
    );

    // The canvas's own pixels: every one pure black or white, each module's square its colour.
    let b64 = got["png"]
        .as_str()
        .expect("png")
        .trim_start_matches("data:image/png;base64,");
    let png = data_encoding::BASE64
        .decode(b64.as_bytes())
        .expect("base64");
    let (w, h, pixels) = grantwire_e2e::harness::browser::png_to_luma(&png).expect("canvas PNG");
    assert_eq!((w, h), (side, side));
    let (_, expected) = render(&rows);
    let wrong = pixels.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(
        wrong, 0,
        "canvas pixels differing from the modules at scale 4, margin 4"
    );

    assert_no_csp_violation(&browser);
    let (shot, codes) = browser.qr_codes("wg-quick-profile");
    assert_eq!(
        codes,
        vec![PROFILE.to_owned()],
        "the code in {}",
        shot.display()
    );
    eprintln!(
        "browser_qr: {}-byte profile at M is version {} ({size}x{size}), encoded and drawn in {} \
         ms, {side}px canvas; screenshot {}",
        PROFILE.len(),
        got["version"],
        got["ms"].as_f64().unwrap_or(f64::NAN).round(),
        shot.display()
    );
}

/// Too much text fails with a message saying so, one byte past version 40's capacity at each
/// level; a level that is not L, M, Q or H is refused; and the script adds one global only.
#[test]
fn too_long_text_and_bad_levels_throw_and_only_one_global_is_added() {
    let _alone = crate::one_module_at_a_time(module_path!());
    if !require_browser() {
        return;
    }
    let (dir, _driver, browser) = open_page("browser_qr/errors", Page::Qr);
    let js = "try { QrCode.encode(arguments[0], arguments[1]); return 'no error'; }\
              catch (e) { return e.name + ': ' + e.message; }";
    let err = browser.execute(js, vec![json!("x".repeat(3000)), json!("H")]);
    assert_eq!(
        err,
        json!(
            "RangeError: QrCode.encode: 3000 bytes do not fit in a QR code at level H \
               (version 40 holds at most 1273 bytes)"
        )
    );
    for level in LEVELS {
        let cap = crate_capacity(40, ec_level(level));
        let err = browser.execute(js, vec![json!("é".repeat(cap / 2 + 1)), json!(level)]);
        let want = format!("{} bytes do not fit", 2 * (cap / 2 + 1));
        assert!(
            err.as_str().is_some_and(|e| e.contains(&want)),
            "{level}: {err}"
        );
        let fits = browser.execute(js, vec![json!("x".repeat(cap)), json!(level)]);
        assert_eq!(fits, json!("no error"), "{cap} bytes fit at {level}");
    }
    let err = browser.execute(js, vec![json!("hi"), json!("X")]);
    assert!(
        err.as_str().is_some_and(|e| e.contains("level must be")),
        "{err}"
    );
    let default = browser.execute("return QrCode.encode('hi').level;", vec![]);
    assert_eq!(default, json!("M"), "M unless told");

    assert_no_csp_violation(&browser);
    // Asked twice per page: chromedriver leaves a global of its own (`ret_nodes`) after a script.
    let globals = "return Object.getOwnPropertyNames(window);";
    browser.execute(globals, vec![]);
    let with: Vec<Value> = browser
        .execute(globals, vec![])
        .as_array()
        .cloned()
        .unwrap_or_default();
    browser.goto(&write_page(dir.path(), Page::Bare));
    browser.execute(globals, vec![]);
    let without: Vec<Value> = browser
        .execute(globals, vec![])
        .as_array()
        .cloned()
        .unwrap_or_default();
    let added: Vec<&Value> = with.iter().filter(|g| !without.contains(g)).collect();
    assert_eq!(added, vec![&json!("QrCode")], "the globals qr.js adds");
}
