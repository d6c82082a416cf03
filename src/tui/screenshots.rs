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

/// A real-looking SHA-256 (of `seed`).
fn real_hash(seed: &str) -> crate::identity::BinaryHash {
    use sha2::Digest;
    crate::identity::BinaryHash::parse(&hex::encode(sha2::Sha256::digest(seed.as_bytes())))
        .expect("hash")
}

/// The sample state with real-looking hashes, paths and a day's worth of audit records.
fn realistic_state() -> State {
    let mut s = sample_state();
    s.broker.socket = "/run/user/1000/keychain-auth/agent.sock".into();
    s.broker.pid = 48213;
    s.broker.requests = 1_284;
    realistic_callers(&mut s);
    s.audit = realistic_audit();
    s.audit_sel = s.audit.len() - 1;
    s
}

/// The sample's pending callers and policies with real-looking hashes and paths: leftpad run
/// by node, a new deploy-tool whose older version is registered, mycli, python3.11.
fn realistic_callers(s: &mut State) {
    let (leftpad, deploy_new, deploy_old, mycli) = (
        real_hash("leftpad"),
        real_hash("deploy 2.4.1"),
        real_hash("deploy 2.4.0"),
        real_hash("mycli"),
    );
    s.pending[0].hash = leftpad;
    s.pending[0].path = "/home/alex/.npm/_npx/8c1f2e7a/node_modules/.bin/leftpad".into();
    s.pending[0].argv = vec![
        "node".into(),
        "leftpad".into(),
        "--fix".into(),
        "src/".into(),
    ];
    s.pending[1].hash = deploy_new.clone();
    s.pending[1].path = "/home/alex/.local/bin/deploy-tool".into();
    s.pending[1].argv = vec!["deploy-tool".into(), "--env".into(), "prod".into()];
    s.pending[1].changed_from = Some(deploy_old.clone());
    s.policies[0].entry.hash = mycli;
    s.policies[0].entry.path = "/usr/local/bin/mycli".into();
    s.policies[1].entry.hash = deploy_old;
    s.policies[1].entry.path = "/home/alex/.local/bin/deploy-tool".into();
    s.policies[1].on_disk = OnDisk::Changed(deploy_new);
    s.policies[1].entry.launched_by = [real_hash("/usr/bin/make")].into_iter().collect();
    s.policies[2].entry.hash = real_hash("python3.11");
    for l in &mut s.pending[0].chain {
        l.hash = Some(real_hash(&l.path));
    }
}

/// 24 requests by mycli, deploy-tool and leftpad over the morning, then a grant made on the
/// dashboard.
fn realistic_audit() -> Vec<crate::audit::Record> {
    let calls: [(&str, &str, &str, &str, &str); 8] = [
        ("success", "mycli", "read", "aws", "prod-api-key"),
        ("success", "mycli", "read", "aws", "staging-api-key"),
        ("denied", "mycli", "read", "gcp", ""),
        ("success", "deploy-tool", "read", "k8s", "cluster-token"),
        ("success", "mycli", "write", "aws", "prod-api-key"),
        ("denied", "leftpad", "read", "aws", ""),
        ("error", "mycli", "read", "aws", "rotated-key"),
        ("success", "mycli", "search", "aws", "prod-api-key"),
    ];
    let mut audit: Vec<_> = (0..24)
        .map(|i| realistic_request(i, calls[i % calls.len()]))
        .collect();
    let mut grant = crate::audit::Record::new("policy_change", "dashboard");
    grant.ts = "2026-11-24T09:59:48.311Z".into();
    grant.action = Some("grant".into());
    grant.path = Some("/usr/local/bin/mycli".into());
    grant.hash = Some(real_hash("mycli").to_string());
    grant.status = Some("success".into());
    grant.read = vec!["gcp".into()];
    audit.push(grant);
    audit
}

/// The `i`th request record: (status, who, action, service, target).
fn realistic_request(
    i: usize,
    (status, who, action, service, target): (&str, &str, &str, &str, &str),
) -> crate::audit::Record {
    let mut r = record(status, service);
    r.ts = format!(
        "2026-11-24T09:{:02}:{:02}.{:03}Z",
        12 + i * 2,
        (i * 17) % 60,
        i * 37 % 1000
    );
    r.pid = Some(40_000 + i as i32 * 13);
    r.action = Some(action.into());
    let (path, hash) = match who {
        "mycli" => ("/usr/local/bin/mycli", real_hash("mycli")),
        "deploy-tool" => (
            "/home/alex/.local/bin/deploy-tool",
            real_hash("deploy 2.4.0"),
        ),
        _ => (
            "/home/alex/.npm/_npx/8c1f2e7a/node_modules/.bin/leftpad",
            real_hash("leftpad"),
        ),
    };
    r.path = Some(path.to_string());
    r.hash = Some(hash.to_string());
    r.targets = if target.is_empty() {
        vec![]
    } else {
        vec![target.into()]
    };
    r.reason = match status {
        "denied" if who == "leftpad" => Some("unregistered_binary".into()),
        "denied" => Some("service_not_allowed".into()),
        "error" => Some("not_found".into()),
        _ => None,
    };
    r
}

#[test]
#[ignore = "writes screenshots/*.png; run with --features screenshots -- --ignored"]
fn screenshots() {
    let s = realistic_state();
    pane_screenshots(&s);
    approve_flow_screenshots(&s);
    upgrade_screenshot(&s);
    let mut e = empty_state();
    e.broker.embedded = false;
    save("empty-connected", &e, 120, 36);
    // The broker went away: the badge says so, the reason is on the message line.
    let mut d = s.clone();
    d.broker.embedded = false;
    update(
        &mut d,
        Action::StatusFailed(
            "the broker on /run/user/1000/keychain-auth/agent.sock does not answer: connection refused (os error 111)".into(),
        ),
    );
    save("disconnected", &d, 120, 36);
    // A policy change in full.
    let mut r = s.clone();
    update(&mut r, Action::Command(Command::Focus(2)));
    update(&mut r, Action::Command(Command::Bottom));
    update(&mut r, Action::Command(Command::Enter));
    save("audit-detail", &r, 120, 36);
    prompt_screenshot(&s);
}

/// The dashboard with each pane focused, small, and with the help open.
fn pane_screenshots(s: &State) {
    save("dashboard", s, 120, 36);
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
}

/// The approve flow: editor preset to zero privileges with the asked service typed in, the
/// service added, then the result.
fn approve_flow_screenshots(s: &State) {
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
}

/// The upgrade question for deploy-tool.
fn upgrade_screenshot(s: &State) {
    let mut u = s.clone();
    update(&mut u, Action::Command(Command::Focus(3)));
    update(&mut u, Action::Command(Command::Down));
    update(
        &mut u,
        Action::UpgradePreview {
            path: "/home/alex/.local/bin/deploy-tool".into(),
            old: real_hash("deploy 2.4.0"),
            new: real_hash("deploy 2.4.1"),
            size: 4_194_304,
            mtime: "2026-11-24 09:58:12 UTC".into(),
        },
    );
    save("upgrade-confirm", &u, 120, 36);
}

/// A live prompt: a script wants a secret, another caller waits behind it.
fn prompt_screenshot(s: &State) {
    let mut p = s.clone();
    p.now_ms = crate::tui::test_support::now_ms() + 6_000;
    let mut first = crate::tui::test_support::prompt("p7");
    first.path = "/usr/bin/python3.11".into();
    first.hash = real_hash("python3.11").to_string();
    first.script = Some("/home/alex/src/infra/deploy.py".into());
    first.script_hash = Some(real_hash("deploy.py").to_string());
    first.argv = vec![
        "python3".into(),
        "deploy.py".into(),
        "--env".into(),
        "prod".into(),
    ];
    first.chain[0].path = "/usr/bin/python3.11".into();
    first.chain[1].path = "/usr/bin/bash".into();
    first.chain[2].path = "/usr/bin/tmux".into();
    for l in &mut first.chain {
        l.hash = Some(real_hash(&l.path));
    }
    first.message = "unregistered script /home/alex/src/infra/deploy.py".into();
    first.waiting = 2;
    let mut second = crate::tui::test_support::prompt("p8");
    second.service = "gcp".into();
    for pr in [first, second] {
        update(
            &mut p,
            Action::Approver(crate::server::approval::ApproverEvent::Prompt(Box::new(pr))),
        );
    }
    save("prompt", &p, 120, 36);
}
