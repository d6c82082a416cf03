//! Safe display of text a caller controls (file names, argv, services, targets, messages).
//!
//! Everything a caller can choose is shown through [`clean`] (or [`path`]) before it reaches a
//! terminal, so that escape sequences (ESC/CSI/OSC), carriage returns, BEL, C1 controls, other
//! non-printables and bidirectional overrides are shown as visible escapes (`\x1b`, `\u{202e}`)
//! instead of acting on the terminal, and invisible or look-alike characters (a Hangul filler,
//! a fraction slash) as escapes instead of passing for nothing or for `/`. A literal backslash is shown as `\\`, so an escape in the
//! output is never ambiguous with text the caller wrote. [`bounded`] also caps the length, for
//! fragments of a caller's input echoed in errors. [`print_line`] writes to stdout and exits
//! quietly when the reader went away (`keychain-auth list-pending | head -1`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// True for characters that are never printed as themselves: controls, bidi and other format
/// characters, and characters that print as nothing or as something they are not
/// ([`looks_like_something_else`]).
fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || c == '\\'
        || matches!(c,
            '\u{061C}'              // arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line / paragraph separator
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{206F}' // word joiner, bidi isolates, invisible operators
            | '\u{FEFF}'            // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
        || looks_like_something_else(c)
}

/// Invisible characters (that print as blank or as nothing) and look-alikes of the characters
/// that structure a path or a command line (`/`, `.`, space): shown escaped, so
/// `…/x/\u{2044}usr\u{2044}bin\u{2044}git` cannot read as `/usr/bin/git` and a Hangul filler
/// cannot pass for nothing. From Unicode's default-ignorable and white-space properties and the
/// confusables of `/`, `.` and space.
fn looks_like_something_else(c: char) -> bool {
    matches!(c,
        // Blank or empty when printed.
        '\u{00A0}'                 // no-break space
        | '\u{00AD}'               // soft hyphen
        | '\u{034F}'               // combining grapheme joiner
        | '\u{115F}' | '\u{1160}'   // Hangul choseong / jungseong fillers
        | '\u{1680}'               // ogham space mark
        | '\u{17B4}' | '\u{17B5}'   // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'  // Mongolian selectors and vowel separator
        | '\u{2000}'..='\u{200A}'  // en quad … hair space
        | '\u{202F}'               // narrow no-break space
        | '\u{205F}'               // medium mathematical space
        | '\u{2800}'               // braille pattern blank
        | '\u{3000}'               // ideographic space
        | '\u{3164}'               // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'  // variation selectors
        | '\u{FFA0}'               // halfwidth Hangul filler
        | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}' // musical symbol formatting
        | '\u{E0000}'..='\u{E0FFF}' // tags, variation selectors supplement
        // Look-alikes of `/`.
        | '\u{0338}'               // combining long solidus overlay
        | '\u{2044}'               // fraction slash
        | '\u{2215}'               // division slash
        | '\u{2571}'               // box drawings light diagonal
        | '\u{27CB}'               // mathematical rising diagonal
        | '\u{29F8}'               // big solidus
        | '\u{2CC6}'               // Coptic capital letter old Coptic esh
        | '\u{3033}'               // vertical kana repeat mark upper half
        | '\u{FF0F}'               // fullwidth solidus
        | '\u{1735}'               // Philippine single punctuation
        | '\u{1D23A}'              // Greek instrumental notation symbol-47
        // Look-alikes of `.`.
        | '\u{2024}'               // one dot leader
        | '\u{FF0E}'               // fullwidth full stop
        | '\u{A4F8}'               // Lisu letter tone mya ti
        | '\u{0701}' | '\u{0702}'   // Syriac supralinear / sublinear full stop
    )
}

fn escape_into(out: &mut String, c: char) {
    // Writing to a String cannot fail.
    let _ = match c {
        '\\' => write!(out, "\\\\"),
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    };
}

/// `s` with every control, format or bidi character shown as a visible escape; borrowed when
/// there is nothing to escape.
pub fn clean(s: &str) -> Cow<'_, str> {
    escape(s, needs_escape)
}

/// [`clean`] for text that is already JSON-escaped (serde escapes controls and backslashes, not
/// bidi or zero-width characters): backslashes are kept as they are.
pub fn clean_json(s: &str) -> Cow<'_, str> {
    escape(s, |c| c != '\\' && needs_escape(c))
}

fn escape(s: &str, needs_escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            escape_into(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path for display: [`clean`], with bytes that are not UTF-8 shown as `\xNN`.
pub fn path(p: &Path) -> String {
    let mut out = String::new();
    for chunk in p.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(&clean(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// [`clean`], cut to at most `max` characters of the original (then ending in `…`).
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", clean(&s[..cut])),
        None => clean(s).into_owned(),
    }
}

/// JSON text (from `serde_json`) with the characters serde leaves raw but a terminal acts on
/// (DEL, C1 controls, bidi and zero-width characters) written as `\uXXXX` escapes. The result
/// is still exact JSON and decodes to the same values; structural newlines are kept.
pub fn json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\\' && c != '\n' && needs_escape(c) {
            // UTF-16 code units: a character beyond the BMP (a tag) is a surrogate pair.
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Words joined by spaces, each [`clean`]ed (argv as shown).
pub fn join(words: &[String]) -> String {
    words.iter().map(|w| clean(w)).collect::<Vec<_>>().join(" ")
}

/// Writes `line` and a newline to stdout. When stdout is a closed pipe the process exits 0 at
/// once (the reader has all it wanted); any other write error exits 1 with a one-line reason.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        // stderr may be gone too; nothing more can be done then.
        let _ = writeln!(std::io::stderr(), "keychain-auth: cannot write output: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` (and a newline) to standard output without exiting: a closed pipe is ignored,
/// so a command whose exit status carries a verdict (`audit verify`) keeps it when its reader
/// stops early. Other write errors are said on standard error.
pub fn print_keeping_status(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        let _ = writeln!(std::io::stderr(), "keychain-auth: cannot write output: {e}");
    }
}

/// `println!` through [`print_line`]: quiet exit on a closed pipe, never a panic.
#[macro_export]
macro_rules! outln {
    () => { $crate::display::print_line("") };
    ($($arg:tt)*) => { $crate::display::print_line(&format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "/home/me/bin/deploy-tool --env prod é 日本";
        assert!(matches!(clean(s), Cow::Borrowed(_)));
        assert_eq!(clean(s), s);
    }

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(clean("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(clean("\x1b[2J"), "\\x1b[2J");
        assert_eq!(clean("x\ny\rz\t"), "x\\ny\\rz\\t");
        assert_eq!(clean("\u{7f}\u{9b}\u{85}"), "\\x7f\\u{9b}\\u{85}");
        assert_eq!(clean("\0"), "\\x00");
    }

    #[test]
    fn escapes_bidi_and_invisible_format_characters() {
        assert_eq!(clean("evil\u{202e}gpj.exe"), "evil\\u{202e}gpj.exe");
        assert_eq!(clean("\u{2066}a\u{2069}"), "\\u{2066}a\\u{2069}");
        assert_eq!(clean("a\u{200b}b\u{feff}"), "a\\u{200b}b\\u{feff}");
    }

    #[test]
    fn invisible_and_look_alike_characters_are_escaped() {
        // The review's path: fraction slashes after a Hangul filler read as /usr/bin/git.
        let path = "/home/u/x/\u{3164}\u{2044}usr\u{2044}bin\u{2044}git";
        assert_eq!(
            clean(path),
            "/home/u/x/\\u{3164}\\u{2044}usr\\u{2044}bin\\u{2044}git"
        );
        for c in [
            '\u{2215}',
            '\u{29F8}',
            '\u{FF0F}',
            '\u{2571}',
            '\u{00A0}',
            '\u{2800}',
            '\u{115F}',
            '\u{FFA0}',
            '\u{FE0F}',
            '\u{E0041}',
            '\u{2024}',
            '\u{FF0E}',
            '\u{00AD}',
            '\u{3000}',
        ] {
            let shown = clean(&c.to_string()).into_owned();
            assert_eq!(shown, format!("\\u{{{:x}}}", c as u32), "{c:?}");
        }
        // Ordinary letters of other scripts are left alone.
        assert_eq!(
            clean("/home/ゆき/Документы/λ.py"),
            "/home/ゆき/Документы/λ.py"
        );
        // JSON output: a tag beyond the BMP is a surrogate pair and still decodes exactly.
        let v = serde_json::json!(["a\u{E0041}\u{2044}b"]);
        let text = json(&serde_json::to_string(&v).expect("json"));
        assert_eq!(text, "[\"a\\udb40\\udc41\\u2044b\"]");
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn backslash_is_escaped_so_output_is_unambiguous() {
        assert_eq!(clean("\\x1b"), "\\\\x1b");
        assert_ne!(clean("\\x1b"), clean("\x1b"));
    }

    #[test]
    fn no_output_contains_a_raw_control() {
        let all: String = (0u32..0x3200)
            .chain(0xE0000..0xE0100)
            .filter_map(char::from_u32)
            .collect();
        let out = clean(&all);
        assert!(!out.chars().any(needs_escape_except_backslash), "{out}");
    }

    fn needs_escape_except_backslash(c: char) -> bool {
        c != '\\' && needs_escape(c)
    }

    #[test]
    fn paths_show_invalid_utf8_as_hex() {
        let p = Path::new(OsStr::from_bytes(b"/tmp/a\xffb\x1b.sh"));
        assert_eq!(path(p), "/tmp/a\\xffb\\x1b.sh");
    }

    #[test]
    fn bounded_cuts_on_characters_and_marks_the_cut() {
        assert_eq!(bounded("short", 64), "short");
        let long = "é".repeat(100);
        let b = bounded(&long, 64);
        assert_eq!(b.chars().count(), 65);
        assert!(b.ends_with('…'));
        assert_eq!(bounded("\x1b\x1b\x1b", 2), "\\x1b\\x1b…");
    }

    #[test]
    fn clean_json_keeps_json_escapes_and_escapes_bidi() {
        let json = serde_json::to_string("a\x1b\u{202e}b\\").expect("json");
        assert_eq!(json, "\"a\\u001b\u{202e}b\\\\\"");
        assert_eq!(clean_json(&json), "\"a\\u001b\\u{202e}b\\\\\"");
    }

    #[test]
    fn json_output_escapes_what_serde_leaves_raw_and_stays_exact() {
        let v = serde_json::json!({"argv": ["\x1b]0;pwned\x07", "\u{9b}2J\u{7f}", "a\u{202e}b\\"]});
        let text = json(&serde_json::to_string_pretty(&v).expect("json"));
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && needs_escape_except_backslash(c)),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back, v);
    }

    #[test]
    fn join_cleans_each_word() {
        assert_eq!(
            join(&["ls".into(), "\x1b[2J".into()]),
            "ls \\x1b[2J".to_string()
        );
    }
}
