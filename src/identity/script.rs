//! Scripts under interpreters (SPEC §10): when the peer's executable is an interpreter, its
//! identity is the pair (interpreter, script). The script is found in the command line the way
//! that interpreter parses it (options before the script, options that take an argument, `--`),
//! resolved against the peer's working directory, opened and hashed. Inline code (`-c`, `-e`),
//! standard input, REPLs and `python -m` have no file to approve and are named as such.

use std::path::Path;

/// Interpreters recognised without configuration; `python` stands for every `python*`, and a
/// version suffix (`python3.11`, `perl5.36`, `ruby3.1`) is accepted on every name.
pub const DEFAULT_INTERPRETERS: &[&str] = &[
    "python", "node", "bash", "sh", "dash", "zsh", "perl", "ruby", "php", "deno", "bun",
];

/// How an interpreter's command line is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// CPython and friends.
    Python,
    /// Node.js.
    Node,
    /// POSIX shells and zsh.
    Shell,
    /// Perl.
    Perl,
    /// Ruby.
    Ruby,
    /// PHP CLI.
    Php,
    /// Deno (`deno run`).
    Deno,
    /// Bun.
    Bun,
    /// An interpreter added in config.json: the first non-option argument is the script, `-c`
    /// and `-e` are inline code.
    Generic,
}

/// What the command line says the interpreter runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptArg {
    /// A script file, as written on the command line.
    File(String),
    /// No file: inline code, standard input, a REPL or a module search; the text says which.
    NoFile(String),
}

/// The interpreter family of an executable named `name` (its file name), if it is one; `extra`
/// are the names config.json adds.
pub fn family(name: &str, extra: &[String]) -> Option<Family> {
    let versioned = |base: &str| {
        name.strip_prefix(base)
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    if name.starts_with("python") {
        return Some(Family::Python);
    }
    let known = [
        ("node", Family::Node),
        ("nodejs", Family::Node),
        ("bash", Family::Shell),
        ("sh", Family::Shell),
        ("dash", Family::Shell),
        ("zsh", Family::Shell),
        ("perl", Family::Perl),
        ("ruby", Family::Ruby),
        ("php", Family::Php),
        ("deno", Family::Deno),
        ("bun", Family::Bun),
    ];
    if let Some((_, f)) = known.iter().find(|(base, _)| versioned(base)) {
        return Some(*f);
    }
    extra
        .iter()
        .any(|e| versioned(e))
        .then_some(Family::Generic)
}

/// The family of the executable at `path`.
pub fn family_of(path: &Path, extra: &[String]) -> Option<Family> {
    family(path.file_name()?.to_str()?, extra)
}

/// Finds the script in `argv` (`argv[0]` is the interpreter) the way `family` parses it.
///
/// Only the script is approved, so the options before it must not make the interpreter load or
/// run anything else, or print what it runs: an option that does (python `-i`, node `--require`,
/// perl `-M`, bash `-x`, …) and an option this parser does not know (it might) make the command
/// line [`ScriptArg::NoFile`], with the reason. Such a caller is served only through an
/// interpreter approved with `--allow-any-script`.
pub fn script_arg(family: Family, argv: &[String]) -> ScriptArg {
    let args = argv.get(1..).unwrap_or_default();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(
            || "the interpreter".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
    let c = Say { prog: &prog };
    match family {
        Family::Python => python(args, &c),
        Family::Shell => shell(args, &c),
        Family::Perl => perl(args, &c),
        Family::Ruby => ruby(args, &c),
        Family::Php => php(args, &c),
        Family::Node => node(args, &c),
        Family::Deno => deno(args, &c),
        Family::Bun => bun(args, &c),
        Family::Generic => generic(args, &c),
    }
}

/// The reasons a command line has no approvable file, worded for the interpreter `prog`.
struct Say<'a> {
    prog: &'a str,
}

impl Say<'_> {
    fn inline(&self, flag: &str) -> ScriptArg {
        ScriptArg::NoFile(format!(
            "{} {flag} runs inline code, which has no file to approve",
            self.prog
        ))
    }
    fn stdin(&self) -> ScriptArg {
        ScriptArg::NoFile(format!(
            "{} reads its program from standard input or runs interactively, which has no file to approve",
            self.prog
        ))
    }
    /// An option that loads or runs code other than the script, or prints what runs.
    fn loads(&self, opt: &str, what: &str) -> ScriptArg {
        ScriptArg::NoFile(format!(
            "{} {opt} {what}, which is not part of the approved script",
            self.prog
        ))
    }
    /// An option the parser does not know: it might load code, so it is refused.
    fn unknown(&self, opt: &str) -> ScriptArg {
        ScriptArg::NoFile(format!(
            "{} runs with the option {opt}, which keychain-auth does not know to be harmless (options can make an interpreter load or run other code), so it is refused",
            self.prog
        ))
    }
    fn file(s: &str) -> ScriptArg {
        ScriptArg::File(s.to_string())
    }
    /// The word after `--`: the script, or standard input when there is none.
    fn after_dashes(&self, next: Option<&String>) -> ScriptArg {
        next.map_or_else(|| self.stdin(), |s| Say::file(s))
    }
}

/// An option's value: the rest of the word after the letter at `i` of `flags`, or the next
/// word when the letter ends the word.
fn value_of<'a>(
    flags: &'a str,
    i: usize,
    letter: char,
    it: &mut std::slice::Iter<'a, String>,
) -> Option<&'a str> {
    let rest = &flags[i + letter.len_utf8()..];
    if rest.is_empty() {
        it.next().map(String::as_str)
    } else {
        Some(rest)
    }
}

fn python(args: &[String], c: &Say<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return c.stdin(),
            "--" => return c.after_dashes(it.next()),
            "--check-hash-based-pycs" => {
                it.next();
            }
            "--help" | "--version" | "--help-env" | "--help-xoptions" | "--help-all" => {
                return c.inline(a);
            }
            long if long.starts_with("--") => return c.unknown(long),
            short if short.starts_with('-') => {
                let flags = &short[1..];
                for (i, ch) in flags.char_indices() {
                    match ch {
                        'c' => return c.inline("-c"),
                        'h' | 'V' | '?' => return c.inline(&format!("-{ch}")),
                        'm' => {
                            return ScriptArg::NoFile(format!(
                                "{} -m runs a module found through its search path, which cannot be pinned to one file; run the module's file by its path instead",
                                c.prog
                            ));
                        }
                        'i' => {
                            return c.loads(
                                "-i",
                                "reads and runs code from standard input once the script ends",
                            );
                        }
                        'W' | 'X' => {
                            let Some(value) = value_of(flags, i, ch, &mut it) else {
                                return c.unknown(&format!("-{ch}"));
                            };
                            if let Some(refused) = python_value(ch, value, c) {
                                return refused;
                            }
                            break;
                        }
                        'b' | 'B' | 'd' | 'E' | 'I' | 'O' | 'P' | 'q' | 'R' | 's' | 'S' | 'u'
                        | 'v' | 'x' => {}
                        other => return c.unknown(&format!("-{other}")),
                    }
                }
            }
            script => return Say::file(script),
        }
    }
    c.stdin()
}

/// The refusal for python's `-W VALUE` or `-X VALUE`, if it loads code: a warning category
/// with a module path imports that module; `-X pycache_prefix` reads compiled modules from
/// another tree and `-X presite` imports a module first. Unknown `-X` names are refused.
fn python_value(letter: char, value: &str, c: &Say<'_>) -> Option<ScriptArg> {
    if letter == 'W' {
        let category = value.split(':').nth(2).unwrap_or_default();
        return category.contains('.').then(|| {
            c.loads(
                &format!("-W {value}"),
                "imports the module named in the warning category",
            )
        });
    }
    const HARMLESS: &[&str] = &[
        "dev",
        "utf8",
        "importtime",
        "faulthandler",
        "tracemalloc",
        "frozen_modules",
        "int_max_str_digits",
        "warn_default_encoding",
        "no_debug_ranges",
        "perf",
        "perf_jit",
        "cpu_count",
        "showrefcount",
        "gil",
    ];
    let name = value.split('=').next().unwrap_or_default();
    match name {
        "pycache_prefix" => Some(c.loads(
            &format!("-X {value}"),
            "reads compiled modules from another directory",
        )),
        "presite" => Some(c.loads(&format!("-X {value}"), "imports a module first")),
        n if HARMLESS.contains(&n) => None,
        _ => Some(c.unknown(&format!("-X {value}"))),
    }
}

/// POSIX shells, bash, dash and zsh: options clustered after `-` (on) or `+` (off); `-o NAME`
/// and `-O NAME` take a name.
fn shell(args: &[String], c: &Say<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return c.stdin(),
            "--" => return c.after_dashes(it.next()),
            "--norc" | "--noprofile" | "--posix" | "--noediting" | "--restricted" | "--no-rcs" => {
                continue;
            }
            "--rcfile" | "--init-file" => return c.loads(a, "runs a startup file first"),
            "--login" => {
                return c.loads(
                    a,
                    "runs the login startup files (~/.bash_profile, ~/.profile) first",
                );
            }
            "--verbose" => return c.loads(a, "prints the script's lines as they are read"),
            "--debugger" => return c.loads(a, "runs the script under the bash debugger"),
            long if long.starts_with("--") => return c.unknown(long),
            _ => {}
        }
        if !((a.starts_with('-') || a.starts_with('+')) && a.len() > 1) {
            return Say::file(a);
        }
        let on = a.starts_with('-');
        let flags = &a[1..];
        for (i, ch) in flags.char_indices() {
            match ch {
                'c' if on => return c.inline("-c"),
                's' if on => return c.stdin(),
                'i' if on => {
                    return c.loads(
                        "-i",
                        "makes the shell interactive, which runs ~/.bashrc (or $ENV) first",
                    );
                }
                'l' if on => {
                    return c.loads("-l", "runs the login startup files (~/.profile) first");
                }
                'x' if on => {
                    return c.loads(
                        "-x",
                        "prints every command with its arguments expanded (a secret among them)",
                    );
                }
                'v' if on => return c.loads("-v", "prints the script's lines as they are read"),
                'o' | 'O' => {
                    let Some(name) = value_of(flags, i, ch, &mut it) else {
                        return c.unknown(&format!("{}{ch}", &a[..1]));
                    };
                    if on && let Some(refused) = shell_option(ch, name, c) {
                        return refused;
                    }
                    break;
                }
                // Harmless on, and (with the four above) harmless off.
                'a' | 'b' | 'e' | 'f' | 'h' | 'k' | 'm' | 'n' | 'p' | 'r' | 't' | 'u' | 'B'
                | 'C' | 'E' | 'H' | 'P' | 'T' | 'i' | 'l' | 'x' | 'v' => {}
                other => return c.unknown(&format!("{}{other}", &a[..1])),
            }
        }
    }
    c.stdin()
}

/// The refusal for `-o NAME` (`set -o`) or `-O NAME` (`shopt -s`) turned on, unless known to
/// be harmless: `xtrace` and `verbose` print what runs, `extdebug` starts the debugger.
fn shell_option(letter: char, name: &str, c: &Say<'_>) -> Option<ScriptArg> {
    const SET: &[&str] = &[
        "allexport",
        "braceexpand",
        "emacs",
        "errexit",
        "errtrace",
        "functrace",
        "hashall",
        "histexpand",
        "history",
        "ignoreeof",
        "interactive-comments",
        "keyword",
        "monitor",
        "noclobber",
        "noexec",
        "noglob",
        "nolog",
        "notify",
        "nounset",
        "onecmd",
        "physical",
        "pipefail",
        "posix",
        "privileged",
        "vi",
    ];
    const SHOPT: &[&str] = &[
        "extglob",
        "globstar",
        "nullglob",
        "failglob",
        "dotglob",
        "nocaseglob",
        "nocasematch",
        "lastpipe",
        "inherit_errexit",
        "globasciiranges",
        "shift_verbose",
        "xpg_echo",
    ];
    let opt = format!("-{letter} {name}");
    match name {
        "xtrace" | "verbose" => Some(c.loads(&opt, "prints what the script runs")),
        "extdebug" => Some(c.loads(&opt, "runs the script under the bash debugger")),
        n if (letter == 'o' && SET.contains(&n)) || (letter == 'O' && SHOPT.contains(&n)) => None,
        _ => Some(c.unknown(&opt)),
    }
}

fn perl(args: &[String], c: &Say<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return c.stdin(),
            "--" => return c.after_dashes(it.next()),
            s if s.starts_with('-') && s.len() > 1 => {
                let flags = &s[1..];
                let mut digits_after = false;
                for ch in flags.chars() {
                    // `-l` and `-0` take optional digits; other switches may follow them.
                    if digits_after && ch.is_ascii_digit() {
                        continue;
                    }
                    digits_after = false;
                    match ch {
                        'e' | 'E' => return c.inline(&format!("-{ch}")),
                        '0' | 'l' => digits_after = true,
                        'I' => return c.loads("-I", "adds a directory modules are loaded from"),
                        'M' | 'm' => return c.loads(&format!("-{ch}"), "loads a module first"),
                        'd' => {
                            return c.loads(
                                "-d",
                                "runs the script under a debugger ($PERL5DB or a Devel:: module)",
                            );
                        }
                        'S' => {
                            return c.loads(
                                "-S",
                                "looks the script up on PATH, so the file run may not be the one checked",
                            );
                        }
                        // Take an optional attached argument: the rest of the word.
                        'i' | 'C' | 'F' => break,
                        'a' | 'c' | 'f' | 'g' | 'n' | 'p' | 's' | 't' | 'T' | 'u' | 'U' | 'w'
                        | 'W' | 'X' => {}
                        other => return c.unknown(&format!("-{other}")),
                    }
                }
            }
            script => return Say::file(script),
        }
    }
    c.stdin()
}

fn ruby(args: &[String], c: &Say<'_>) -> ScriptArg {
    const LONG: &[&str] = &[
        "--disable",
        "--enable",
        "--jit",
        "--yjit",
        "--encoding",
        "--external-encoding",
        "--internal-encoding",
        "--verbose",
        "--backtrace-limit",
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return c.stdin(),
            "--" => return c.after_dashes(it.next()),
            long if long.starts_with("--") => {
                let name = long.split('=').next().unwrap_or(long);
                let known = LONG
                    .iter()
                    .any(|l| name == *l || name.starts_with(&format!("{l}-")));
                if !known {
                    return c.unknown(long);
                }
            }
            s if s.starts_with('-') && s.len() > 1 => {
                let flags = &s[1..];
                for (i, ch) in flags.char_indices() {
                    match ch {
                        'e' => return c.inline("-e"),
                        'r' => return c.loads("-r", "loads a library first"),
                        'I' => return c.loads("-I", "adds a directory libraries are loaded from"),
                        'C' | 'x' | 'S' => {
                            return c.loads(
                                &format!("-{ch}"),
                                "changes directory or searches PATH for the script, so the file run may not be the one checked",
                            );
                        }
                        'E' => {
                            if value_of(flags, i, ch, &mut it).is_none() {
                                return c.unknown("-E");
                            }
                            break;
                        }
                        // Take an optional attached argument: the rest of the word.
                        'K' | 'W' | '0' | 'F' => break,
                        'a' | 'c' | 'd' | 'l' | 'n' | 'p' | 's' | 'U' | 'v' | 'w' => {}
                        other => return c.unknown(&format!("-{other}")),
                    }
                }
            }
            script => return Say::file(script),
        }
    }
    c.stdin()
}

fn php(args: &[String], c: &Say<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" | "-R" | "-B" | "-E" | "-F" => return c.inline(a),
            "-a" | "-" => return c.stdin(),
            "-f" | "--file" | "--" => return c.after_dashes(it.next()),
            "-d" | "--define" | "-c" | "--php-ini" => {
                return c.loads(
                    a,
                    "sets configuration (auto_prepend_file, extension, …) that can load other code",
                );
            }
            "-z" | "--zend-extension" => return c.loads(a, "loads an extension"),
            "-n" | "--no-php-ini" | "-q" | "--no-header" | "-C" | "--no-chdir" | "-H"
            | "--hide-args" => {}
            s if s.starts_with('-') => return c.unknown(s),
            script => return Say::file(script),
        }
    }
    c.stdin()
}

fn node(args: &[String], c: &Say<'_>) -> ScriptArg {
    /// Options known to leave the program alone; those marked take a value (`=VALUE` or the
    /// next word).
    const HARMLESS: &[(&str, bool)] = &[
        ("--no-warnings", false),
        ("--no-deprecation", false),
        ("--trace-warnings", false),
        ("--trace-deprecation", false),
        ("--throw-deprecation", false),
        ("--pending-deprecation", false),
        ("--trace-uncaught", false),
        ("--enable-source-maps", false),
        ("--preserve-symlinks", false),
        ("--preserve-symlinks-main", false),
        ("--abort-on-uncaught-exception", false),
        ("--use-openssl-ca", false),
        ("--use-bundled-ca", false),
        ("--no-addons", false),
        ("--frozen-intrinsics", false),
        ("--disallow-code-generation-from-strings", false),
        ("--zero-fill-buffers", false),
        ("--stack-size", true),
        ("--max-old-space-size", true),
        ("--max-semi-space-size", true),
        ("--title", true),
        ("--disable-warning", true),
        ("--unhandled-rejections", true),
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.split('=').next().unwrap_or(a);
        match name {
            "-e" | "--eval" | "-p" | "--print" => return c.inline(name),
            "-i" | "--interactive" | "-" => return c.stdin(),
            "--" => return c.after_dashes(it.next()),
            "-r" | "--require" | "--import" | "--loader" | "--experimental-loader" => {
                return c.loads(name, "loads a module before the script");
            }
            n if n.starts_with("--inspect") || n.starts_with("--debug") => {
                return c.loads(name, "opens a debugger through which any code can be run");
            }
            n if n.starts_with("--env-file") => {
                return c.loads(
                    name,
                    "reads environment variables (NODE_OPTIONS among them) from a file",
                );
            }
            n if n.starts_with('-') => match HARMLESS.iter().find(|(h, _)| *h == n) {
                Some((_, true)) if !a.contains('=') => {
                    it.next();
                }
                Some(_) => {}
                None => return c.unknown(name),
            },
            _ => return Say::file(a),
        }
    }
    c.stdin()
}

fn deno(args: &[String], c: &Say<'_>) -> ScriptArg {
    match args.first().map(String::as_str) {
        None | Some("repl") => c.stdin(),
        Some("eval") => c.inline("eval"),
        Some("run") => {
            for a in &args[1..] {
                let name = a.split('=').next().unwrap_or(a);
                match name {
                    "-" => return c.stdin(),
                    "-c" | "--config" | "--import-map" | "--preload" => {
                        return c.loads(name, "makes imports resolve to other files");
                    }
                    n if n.starts_with("--inspect") => {
                        return c.loads(name, "opens a debugger through which any code can be run");
                    }
                    n if n.starts_with("--env") => {
                        return c.loads(name, "reads environment variables from a file");
                    }
                    "-A" | "-q" | "--quiet" | "--no-prompt" | "--no-check" | "--check"
                    | "--cached-only" | "--no-remote" | "--no-npm" | "--no-lock" | "--frozen"
                    | "--no-config" => {}
                    n if n.starts_with("--allow-")
                        || n.starts_with("--deny-")
                        || n.starts_with("--unstable") => {}
                    n if n.starts_with('-') => return c.unknown(n),
                    _ => return Say::file(a),
                }
            }
            c.stdin()
        }
        Some(other) if !other.starts_with('-') => Say::file(other),
        Some(other) => c.unknown(other),
    }
}

fn bun(args: &[String], c: &Say<'_>) -> ScriptArg {
    for a in args {
        let name = a.split('=').next().unwrap_or(a);
        match name {
            "-e" | "--eval" | "-p" | "--print" => return c.inline(name),
            "repl" => return c.stdin(),
            "run" | "--bun" | "-b" | "--smol" | "--silent" | "--no-install"
            | "--prefer-offline" => {}
            "-r" | "--preload" | "--require" | "--import" => {
                return c.loads(name, "loads a module before the script");
            }
            n if n.starts_with('-') => return c.unknown(n),
            script => return Say::file(script),
        }
    }
    c.stdin()
}

/// An interpreter added in config.json: the first non-option argument is the script, `-c` and
/// `-e` are inline code, and any other option is unknown (refused).
fn generic(args: &[String], c: &Say<'_>) -> ScriptArg {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        None | Some("-") => c.stdin(),
        Some("--") => c.after_dashes(it.next()),
        Some(flag @ ("-c" | "-e")) => c.inline(flag),
        Some(other) if other.starts_with('-') => c.unknown(other),
        Some(script) => Say::file(script),
    }
}

/// The interpreter a script names in its `#!` line: its path and, for `/usr/bin/env NAME`, the
/// program name to look up on `PATH`. `None` when there is no `#!` line.
pub fn shebang(first_line: &[u8]) -> Option<Shebang> {
    let line = first_line.strip_prefix(b"#!")?;
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let interp = words.next()?.to_string();
    if Path::new(&interp).file_name().is_some_and(|n| n == "env") {
        let program = words.find(|w| !w.starts_with('-') && !w.contains('='))?;
        return Some(Shebang::Env(program.to_string()));
    }
    Some(Shebang::Path(interp))
}

/// A parsed `#!` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shebang {
    /// `#!/usr/bin/python3`.
    Path(String),
    /// `#!/usr/bin/env python3`: the program to find on `PATH`.
    Env(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(f: Family, argv: &[&str]) -> ScriptArg {
        script_arg(
            f,
            &argv
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>(),
        )
    }
    fn file(s: &str) -> ScriptArg {
        ScriptArg::File(s.into())
    }
    fn no_file(a: ScriptArg) -> String {
        match a {
            ScriptArg::NoFile(why) => why,
            ScriptArg::File(f) => panic!("expected no file, got {f}"),
        }
    }

    #[test]
    fn interpreters_are_recognised_by_name_with_versions() {
        assert_eq!(family("python3.11", &[]), Some(Family::Python));
        assert_eq!(family("python", &[]), Some(Family::Python));
        assert_eq!(family("bash", &[]), Some(Family::Shell));
        assert_eq!(family("perl5.36.0", &[]), Some(Family::Perl));
        assert_eq!(family("nodejs", &[]), Some(Family::Node));
        assert_eq!(family("shellcheck", &[]), None);
        assert_eq!(family("bashful", &[]), None);
        assert_eq!(family("keychain-auth", &[]), None);
        assert_eq!(family("lua5.4", &["lua".into()]), Some(Family::Generic));
    }

    #[test]
    fn python_command_lines() {
        let p = Family::Python;
        assert_eq!(arg(p, &["python3", "good.py", "-c", "x"]), file("good.py"));
        assert_eq!(
            arg(p, &["python3", "-u", "-W", "ignore", "-X", "dev", "s.py"]),
            file("s.py")
        );
        assert_eq!(
            arg(p, &["python3", "-Wignore", "-Bu", "s.py"]),
            file("s.py")
        );
        assert_eq!(arg(p, &["python3", "--", "-odd.py"]), file("-odd.py"));
        assert!(no_file(arg(p, &["python3", "-c", "print(1)"])).contains("-c runs inline code"));
        assert!(no_file(arg(p, &["python3", "-Bc", "print(1)"])).contains("inline"));
        assert!(no_file(arg(p, &["python3", "-m", "http.server"])).contains("-m runs a module"));
        assert!(no_file(arg(p, &["python3"])).contains("standard input"));
        assert!(no_file(arg(p, &["python3", "-"])).contains("standard input"));
    }

    #[test]
    fn shell_command_lines() {
        let s = Family::Shell;
        assert_eq!(arg(s, &["bash", "deploy.sh", "-c"]), file("deploy.sh"));
        assert_eq!(
            arg(s, &["bash", "-e", "-o", "pipefail", "x.sh"]),
            file("x.sh")
        );
        assert_eq!(
            arg(
                s,
                &["bash", "--norc", "--noprofile", "-O", "extglob", "x.sh"]
            ),
            file("x.sh")
        );
        assert_eq!(arg(s, &["sh", "+x", "x.sh"]), file("x.sh"));
        assert_eq!(
            arg(s, &["bash", "+o", "xtrace", "-eu", "x.sh"]),
            file("x.sh")
        );
        assert!(no_file(arg(s, &["bash", "-c", "echo"])).contains("-c runs inline code"));
        assert!(no_file(arg(s, &["bash", "-ec", "echo"])).contains("inline"));
        assert!(no_file(arg(s, &["sh", "-s"])).contains("standard input"));
        assert!(no_file(arg(s, &["bash"])).contains("standard input"));
    }

    #[test]
    fn shell_options_that_run_or_print_other_code_are_refused() {
        let s = Family::Shell;
        for (argv, says) in [
            (&["bash", "-x", "x.sh"][..], "-x prints every command"),
            (&["bash", "-ex", "x.sh"][..], "-x prints"),
            (&["bash", "-v", "x.sh"][..], "-v prints"),
            (&["bash", "-o", "xtrace", "x.sh"][..], "-o xtrace prints"),
            (&["bash", "-oxtrace", "x.sh"][..], "-o xtrace prints"),
            (&["bash", "-o", "verbose", "x.sh"][..], "-o verbose"),
            (&["bash", "-O", "extdebug", "x.sh"][..], "debugger"),
            (&["bash", "-i", "x.sh"][..], "~/.bashrc"),
            (&["bash", "-l", "x.sh"][..], "login"),
            (&["bash", "--login", "x.sh"][..], "login"),
            (&["bash", "--rcfile", "rc", "x.sh"][..], "startup file"),
            (&["bash", "--init-file", "rc", "x.sh"][..], "startup file"),
            (&["bash", "--verbose", "x.sh"][..], "prints"),
            (&["bash", "--debugger", "x.sh"][..], "debugger"),
        ] {
            let why = no_file(arg(s, argv));
            assert!(
                why.contains(says) && why.contains("not part of"),
                "{argv:?}: {why}"
            );
        }
        for argv in [
            &["bash", "-o", "someday", "x.sh"][..],
            &["bash", "-O", "someshopt", "x.sh"][..],
            &["bash", "--pretty-print", "x.sh"][..],
            &["bash", "-Z", "x.sh"][..],
            &["bash", "-o"][..],
        ] {
            assert!(no_file(arg(s, argv)).contains("does not know"), "{argv:?}");
        }
    }

    #[test]
    fn python_options_that_run_other_code_are_refused() {
        let p = Family::Python;
        for (argv, says) in [
            (
                &["python3", "-i", "s.py"][..],
                "-i reads and runs code from standard input",
            ),
            (&["python3", "-I", "-i", "s.py"][..], "-i reads"),
            (&["python3", "-Ii", "s.py"][..], "-i reads"),
            (
                &["python3", "-X", "pycache_prefix=/tmp/p", "s.py"][..],
                "compiled modules",
            ),
            (
                &["python3", "-Xpresite=evil", "s.py"][..],
                "imports a module",
            ),
            (
                &["python3", "-W", "ignore::evil.Cat", "s.py"][..],
                "imports the module",
            ),
        ] {
            let why = no_file(arg(p, argv));
            assert!(why.contains(says), "{argv:?}: {why}");
        }
        for argv in [
            &["python3", "-X", "newthing", "s.py"][..],
            &["python3", "--new-long", "s.py"][..],
            &["python3", "-j", "s.py"][..],
        ] {
            assert!(no_file(arg(p, argv)).contains("does not know"), "{argv:?}");
        }
        assert_eq!(
            arg(
                p,
                &[
                    "python3",
                    "-I",
                    "-s",
                    "-X",
                    "utf8",
                    "-W",
                    "ignore::DeprecationWarning",
                    "s.py"
                ]
            ),
            file("s.py")
        );
        assert_eq!(arg(p, &["python3", "-Es", "s.py", "-i"]), file("s.py"));
    }

    #[test]
    fn node_perl_ruby_php_deno_bun_command_lines() {
        assert_eq!(
            arg(
                Family::Node,
                &[
                    "node",
                    "--no-warnings",
                    "--title",
                    "t",
                    "--stack-size=900",
                    "a.js"
                ]
            ),
            file("a.js")
        );
        assert!(no_file(arg(Family::Node, &["node", "-e", "1"])).contains("inline"));
        assert!(no_file(arg(Family::Node, &["node"])).contains("standard input"));
        assert_eq!(arg(Family::Perl, &["perl", "-wT", "t.pl"]), file("t.pl"));
        assert!(no_file(arg(Family::Perl, &["perl", "-lane", "print"])).contains("inline"));
        assert!(no_file(arg(Family::Perl, &["perl", "-l012e", "print"])).contains("inline"));
        assert_eq!(
            arg(Family::Perl, &["perl", "-l", "-0777", "s.pl"]),
            file("s.pl")
        );
        assert_eq!(
            arg(
                Family::Ruby,
                &["ruby", "-w", "--disable-gems", "-E", "UTF-8", "r.rb"]
            ),
            file("r.rb")
        );
        assert!(no_file(arg(Family::Ruby, &["ruby", "-e", "p 1"])).contains("inline"));
        assert_eq!(
            arg(Family::Php, &["php", "-n", "-f", "i.php"]),
            file("i.php")
        );
        assert!(no_file(arg(Family::Php, &["php", "-r", "echo 1;"])).contains("inline"));
        assert_eq!(
            arg(Family::Deno, &["deno", "run", "--allow-net", "-A", "m.ts"]),
            file("m.ts")
        );
        assert!(no_file(arg(Family::Deno, &["deno", "eval", "1"])).contains("inline"));
        assert_eq!(arg(Family::Bun, &["bun", "run", "b.ts"]), file("b.ts"));
        assert!(no_file(arg(Family::Bun, &["bun", "-e", "1"])).contains("inline"));
        assert_eq!(arg(Family::Generic, &["lua", "x.lua"]), file("x.lua"));
        assert!(
            no_file(arg(Family::Generic, &["lua", "-l", "m", "x.lua"])).contains("does not know")
        );
    }

    #[test]
    fn options_that_load_modules_are_refused_in_every_interpreter() {
        for (f, argv, says) in [
            (
                Family::Node,
                &["node", "-r", "./evil.js", "a.js"][..],
                "-r loads a module",
            ),
            (
                Family::Node,
                &["node", "--require", "./evil.js", "a.js"][..],
                "--require loads",
            ),
            (
                Family::Node,
                &["node", "--import=./evil.mjs", "a.js"][..],
                "--import loads",
            ),
            (
                Family::Node,
                &["node", "--import", "./evil.mjs", "a.js"][..],
                "--import loads",
            ),
            (
                Family::Node,
                &["node", "--loader", "./l.mjs", "a.js"][..],
                "--loader loads",
            ),
            (
                Family::Node,
                &["node", "--experimental-loader=x", "a.js"][..],
                "loads a module",
            ),
            (
                Family::Node,
                &["node", "--inspect=9229", "a.js"][..],
                "debugger",
            ),
            (
                Family::Node,
                &["node", "--env-file=.env", "a.js"][..],
                "NODE_OPTIONS",
            ),
            (
                Family::Perl,
                &["perl", "-I", "A", "-MEvil", "t.pl"][..],
                "-I adds a directory",
            ),
            (
                Family::Perl,
                &["perl", "-MEvil", "t.pl"][..],
                "-M loads a module",
            ),
            (
                Family::Perl,
                &["perl", "-mEvil", "t.pl"][..],
                "-m loads a module",
            ),
            (Family::Perl, &["perl", "-d", "t.pl"][..], "debugger"),
            (Family::Perl, &["perl", "-d:Evil", "t.pl"][..], "debugger"),
            (Family::Perl, &["perl", "-wd", "t.pl"][..], "debugger"),
            (Family::Perl, &["perl", "-S", "t.pl"][..], "PATH"),
            (
                Family::Ruby,
                &["ruby", "-r", "evil", "r.rb"][..],
                "-r loads a library",
            ),
            (Family::Ruby, &["ruby", "-revil", "r.rb"][..], "-r loads"),
            (Family::Ruby, &["ruby", "-I", "lib", "r.rb"][..], "-I adds"),
            (
                Family::Ruby,
                &["ruby", "-C", "/tmp", "r.rb"][..],
                "changes directory",
            ),
            (
                Family::Php,
                &["php", "-d", "auto_prepend_file=/tmp/e.php", "i.php"][..],
                "auto_prepend_file",
            ),
            (
                Family::Php,
                &["php", "-c", "/tmp/php.ini", "i.php"][..],
                "configuration",
            ),
            (
                Family::Deno,
                &["deno", "run", "--import-map=m.json", "m.ts"][..],
                "resolve",
            ),
            (
                Family::Bun,
                &["bun", "--preload", "./e.ts", "b.ts"][..],
                "loads a module",
            ),
        ] {
            let why = no_file(arg(f, argv));
            assert!(why.contains(says), "{argv:?}: {why}");
        }
    }

    #[test]
    fn shebangs() {
        assert_eq!(
            shebang(b"#!/usr/bin/python3 -u"),
            Some(Shebang::Path("/usr/bin/python3".into()))
        );
        assert_eq!(
            shebang(b"#! /bin/sh"),
            Some(Shebang::Path("/bin/sh".into()))
        );
        assert_eq!(
            shebang(b"#!/usr/bin/env python3"),
            Some(Shebang::Env("python3".into()))
        );
        assert_eq!(
            shebang(b"#!/usr/bin/env -S VAR=1 node --x"),
            Some(Shebang::Env("node".into()))
        );
        assert_eq!(shebang(b"print(1)"), None);
    }
}
