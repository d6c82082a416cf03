//! Screenshots from real renders: the dashboard drawn into ratatui's `TestBackend`, the buffer
//! written as SVG (one monospace text run per style), rasterised with resvg into
//! `screenshots/*.png`. Run with:
//! `cargo test --features screenshots --lib screenshots -- --ignored`

use super::action::{Action, Command};
use super::state::{OnDisk, PolicyRow, State};
use super::test_support::*;
use super::update::update;
use super::view;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

const CELL_W: f32 = 8.43;
const CELL_H: f32 = 17.0;
const FONT: f32 = 14.0;
const FG: &str = "#d8dee9";
const BG: &str = "#1d2230";

fn color(c: Color, default: &str) -> String {
    match c {
        Color::Reset => default.into(),
        Color::Black => "#1d2230".into(),
        Color::Red => "#e06c75".into(),
        Color::Green => "#98c379".into(),
        Color::Yellow => "#e5c07b".into(),
        Color::Blue => "#3b6ea8".into(),
        Color::Magenta => "#c678dd".into(),
        Color::Cyan => "#56b6c2".into(),
        Color::Gray => "#abb2bf".into(),
        Color::DarkGray => "#5c6370".into(),
        Color::LightRed => "#ff7b86".into(),
        Color::LightGreen => "#b5e890".into(),
        Color::LightYellow => "#ffd88a".into(),
        Color::LightBlue => "#61afef".into(),
        Color::LightMagenta => "#e29ff0".into(),
        Color::LightCyan => "#7fd8e3".into(),
        Color::White => "#ffffff".into(),
        Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        Color::Indexed(_) => default.into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The buffer as an SVG document.
fn svg(buf: &Buffer) -> String {
    let (w, h) = (buf.area.width, buf.area.height);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}"><rect width="100%" height="100%" fill="{BG}"/>"#,
        (f32::from(w) * CELL_W + 16.0).ceil(),
        (f32::from(h) * CELL_H + 16.0).ceil()
    );
    for y in 0..h {
        let mut x = 0;
        while x < w {
            let cell = &buf[(x, y)];
            let style = cell.style();
            let start = x;
            let mut text = String::new();
            while x < w && buf[(x, y)].style() == style {
                text.push_str(buf[(x, y)].symbol());
                x += 1;
            }
            let reversed = style.add_modifier.contains(Modifier::REVERSED);
            let (mut fg, mut bg) = (
                color(style.fg.unwrap_or(Color::Reset), FG),
                color(style.bg.unwrap_or(Color::Reset), BG),
            );
            if reversed {
                std::mem::swap(&mut fg, &mut bg);
            }
            let px = 8.0 + f32::from(start) * CELL_W;
            let py = 8.0 + f32::from(y) * CELL_H;
            if bg != BG {
                out.push_str(&format!(
                    r#"<rect x="{px}" y="{py}" width="{}" height="{CELL_H}" fill="{bg}"/>"#,
                    f32::from(x - start) * CELL_W
                ));
            }
            if text.trim().is_empty() {
                continue;
            }
            let weight = if style.add_modifier.contains(Modifier::BOLD) {
                "bold"
            } else {
                "normal"
            };
            let italic = if style.add_modifier.contains(Modifier::ITALIC) {
                "italic"
            } else {
                "normal"
            };
            let underline = if style.add_modifier.contains(Modifier::UNDERLINED) {
                r#" text-decoration="underline""#
            } else {
                ""
            };
            out.push_str(&format!(
                r#"<text x="{px}" y="{}" font-family="DejaVu Sans Mono" font-size="{FONT}" font-weight="{weight}" font-style="{italic}" fill="{fg}" xml:space="preserve" textLength="{}" lengthAdjust="spacingAndGlyphs"{underline}>{}</text>"#,
                py + CELL_H * 0.78,
                f32::from(x - start) * CELL_W,
                escape(&text)
            ));
        }
    }
    out.push_str("</svg>");
    out
}

fn save(name: &str, state: &State, w: u16, h: u16) {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| view::draw(f, state)).expect("draw");
    let svg = svg(t.backend().buffer());
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(&svg, &opt).expect("svg");
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).expect("pixmap");
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("dir");
    pixmap
        .save_png(dir.join(format!("{name}.png")))
        .expect("png");
}

#[test]
#[ignore = "writes screenshots/*.png; run with --features screenshots -- --ignored"]
fn screenshots() {
    let s = sample_state();
    save("dashboard", &s, 120, 36);
    let mut a = s.clone();
    update(&mut a, Action::Command(Command::Focus(2)));
    save("audit", &a, 120, 36);
    let mut p = s.clone();
    update(&mut p, Action::Command(Command::Focus(3)));
    save("policies", &p, 120, 36);
    save("small-80x24", &p, 80, 24);
    let mut h = s.clone();
    update(&mut h, Action::Command(Command::Help));
    save("help", &h, 120, 36);
    // The approve flow: editor preset to zero privileges with the asked service typed in,
    // the service added, then the result.
    let mut f = s.clone();
    update(&mut f, Action::Command(Command::Approve));
    save("approve-1-editor", &f, 120, 36);
    update(&mut f, Action::Command(Command::Enter));
    save("approve-2-added", &f, 120, 36);
    update(&mut f, Action::Command(Command::Enter));
    let approved = f.pending.remove(0);
    let mut entry = crate::policy::BinaryPolicy::new(approved.path.clone(), approved.hash.clone());
    entry.registered_at = "2026-11-24T10:00:00Z".into();
    entry.allowed_read_services.insert("aws".into());
    let mut rows = f.policies.clone();
    rows.push(PolicyRow {
        entry,
        on_disk: OnDisk::Ok,
    });
    let pending = f.pending.clone();
    update(&mut f, Action::PendingLoaded(pending));
    update(&mut f, Action::PoliciesLoaded(rows));
    // Focusing clears the message line, so the result is set after it.
    update(&mut f, Action::Command(Command::Focus(3)));
    f.message = Some((
        true,
        format!(
            "approved {} ({})",
            approved.path.display(),
            approved.hash.short()
        ),
    ));
    save("approve-3-done", &f, 120, 36);
    let mut u = s.clone();
    update(&mut u, Action::Command(Command::Focus(3)));
    update(&mut u, Action::Command(Command::Down));
    update(
        &mut u,
        Action::UpgradePreview {
            path: "/usr/local/bin/deploy".into(),
            old: hash('b'),
            new: hash('c'),
            size: 4_194_304,
            mtime: "2026-11-24 09:58:12 UTC".into(),
        },
    );
    save("upgrade-confirm", &u, 120, 36);
    let mut e = empty_state();
    e.broker.embedded = false;
    save("empty-connected", &e, 120, 36);
}
