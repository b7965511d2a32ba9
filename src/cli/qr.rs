//! The pairing QR code as terminal text (pure): two modules a character cell (`▀ ▄ █` and
//! space), a two-module quiet zone, dark modules drawn with the glyph.
//!
//! On a terminal the rows carry explicit colours (black on white), so the code reads the same on
//! light and dark themes; piped or with `NO_COLOR`, plain glyphs (dark on a light page). A
//! version 5 code (the compact URI with one address) is 41 characters wide and 21 rows high,
//! which leaves room for the URI on an 80×24 terminal. Test: tests/tunnel.rs
//! `pair_prints_a_qr_code_that_decodes_to_its_uri` (rendered to an image, read by `zbarimg`).

use qrcode::{Color, EcLevel, QrCode};

/// Modules of light margin around the code.
pub const QUIET_ZONE: usize = 2;

/// Black text on a white background, and back to the terminal's own colours.
const ON: &str = "\u{1b}[38;5;16;48;5;231m";
const OFF: &str = "\u{1b}[0m";

/// Renders `text` as an SVG QR code (black modules on white, a four-module quiet zone, one
/// path): what the control page shows for a pairing URI. Pure.
pub fn svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let width = qr.width();
    let colors = qr.to_colors();
    let side = width + 8;
    let mut path = String::new();
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            path.push_str(&format!("M{} {}h1v1h-1z", i % width + 4, i / width + 4));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {side} {side}\" shape-rendering=\"crispEdges\"><rect width=\"{side}\" height=\"{side}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
    ))
}

/// Renders `text` as QR code rows, `colour` adding explicit black-on-white escapes per row.
pub fn render(text: &str, colour: bool) -> Result<Vec<String>, qrcode::types::QrError> {
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let width = qr.width();
    let colors = qr.to_colors();
    let side = width + 2 * QUIET_ZONE;
    let dark = |x: usize, y: usize| {
        let (x, y) = (x.wrapping_sub(QUIET_ZONE), y.wrapping_sub(QUIET_ZONE));
        x < width && y < width && colors[y * width + x] == Color::Dark
    };
    let mut rows = Vec::with_capacity(side.div_ceil(2));
    for y in (0..side).step_by(2) {
        let mut row = String::with_capacity(side * 3 + ON.len() + OFF.len());
        if colour {
            row.push_str(ON);
        }
        for x in 0..side {
            row.push(match (dark(x, y), dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if colour {
            row.push_str(OFF);
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "CLAW://P/AIFYNLSWQJWGLSHFBWH7ZPOTZ5W67UDOPYDOPSAIHBJKUPJZ4HEQ2Y3DUBKFQY4LMFD64OJXYQGNU3AYSAQQMARJEMTXAAAAAAAQSSJDY";

    #[test]
    fn a_compact_uri_fits_beside_its_text_on_80_by_24() {
        let rows = render(URI, false).unwrap();
        assert_eq!(rows.len(), 21);
        assert!(rows.iter().all(|r| r.chars().count() == 41));
        // The quiet zone: first row and first/last columns are blank.
        assert!(rows[0].chars().all(|c| c == ' '));
        assert!(rows
            .iter()
            .all(|r| r.starts_with("  ") && r.ends_with("  ")));
    }

    #[test]
    fn colour_only_wraps_each_row() {
        let plain = render(URI, false).unwrap();
        let colour = render(URI, true).unwrap();
        for (p, c) in plain.iter().zip(&colour) {
            assert_eq!(
                c.strip_prefix(ON).and_then(|c| c.strip_suffix(OFF)),
                Some(p.as_str())
            );
        }
    }
}
