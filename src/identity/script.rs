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
pub fn script_arg(family: Family, argv: &[String]) -> ScriptArg {
    let args = argv.get(1..).unwrap_or_default();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map_or_else(
            || "the interpreter".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
    let inline = |flag: &str| {
        ScriptArg::NoFile(format!(
            "{prog} {flag} runs inline code, which has no file to approve"
        ))
    };
    let stdin = || {
        ScriptArg::NoFile(format!(
            "{prog} reads its program from standard input or runs interactively, which has no file to approve"
        ))
    };
    match family {
        Family::Python => python(args, &inline, &stdin, &prog),
        Family::Shell => clustered(
            args,
            "c",
            "s",
            "oO",
            &["--rcfile", "--init-file"],
            &inline,
            &stdin,
        ),
        Family::Perl => perl(args, &inline, &stdin),
        Family::Ruby => clustered(args, "e", "", "IrCEF", &[], &inline, &stdin),
        Family::Php => php(args, &inline, &stdin),
        Family::Node => node(args, &inline, &stdin),
        Family::Deno => deno(args, &inline, &stdin),
        Family::Bun => bun(args, &inline, &stdin),
        Family::Generic => clustered(args, "ce", "", "", &[], &inline, &stdin),
    }
}

type Why<'a> = &'a dyn Fn(&str) -> ScriptArg;
type Stdin<'a> = &'a dyn Fn() -> ScriptArg;

fn python(args: &[String], inline: Why<'_>, stdin: Stdin<'_>, prog: &str) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return stdin(),
            "--" => return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone())),
            "--check-hash-based-pycs" => {
                it.next();
            }
            "--help" | "--version" | "-h" | "-V" => return inline(a),
            long if long.starts_with("--") => {}
            short if short.starts_with('-') => {
                let flags = &short[1..];
                for (i, c) in flags.char_indices() {
                    match c {
                        'c' => return inline("-c"),
                        'm' => {
                            return ScriptArg::NoFile(format!(
                                "{prog} -m runs a module found through its search path, which cannot be pinned to one file; run the module's file by its path instead"
                            ));
                        }
                        'W' | 'X' => {
                            if i + 1 == flags.len() {
                                it.next();
                            }
                            break;
                        }
                        _ => {}
                    }
                }
            }
            script => return ScriptArg::File(script.to_string()),
        }
    }
    stdin()
}

/// Options clustered after one `-` (shells, ruby, generic): `inline_flags` mean inline code,
/// `stdin_flags` standard input, `arg_flags` take an argument (attached or the next word),
/// `long_with_arg` are long options followed by an argument.
fn clustered(
    args: &[String],
    inline_flags: &str,
    stdin_flags: &str,
    arg_flags: &str,
    long_with_arg: &[&str],
    inline: Why<'_>,
    stdin: Stdin<'_>,
) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-" {
            return stdin();
        }
        if a == "--" {
            return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone()));
        }
        if a.starts_with("--") {
            if long_with_arg.contains(&a.as_str()) {
                it.next();
            }
            continue;
        }
        if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 {
            let flags = &a[1..];
            for (i, c) in flags.char_indices() {
                if inline_flags.contains(c) {
                    return inline(&format!("-{c}"));
                }
                if stdin_flags.contains(c) {
                    return stdin();
                }
                if arg_flags.contains(c) {
                    if i + 1 == flags.len() {
                        it.next();
                    }
                    break;
                }
            }
            continue;
        }
        return ScriptArg::File(a.clone());
    }
    stdin()
}

fn perl(args: &[String], inline: Why<'_>, stdin: Stdin<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-" => return stdin(),
            "--" => return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone())),
            s if s.starts_with('-') && s.len() > 1 => {
                let flags = &s[1..];
                let mut digits_after = false;
                for (i, c) in flags.char_indices() {
                    // `-l` and `-0` take optional digits; other switches may follow them.
                    if digits_after && c.is_ascii_digit() {
                        continue;
                    }
                    digits_after = false;
                    match c {
                        'e' | 'E' => return inline(&format!("-{c}")),
                        '0' | 'l' => digits_after = true,
                        // Take an argument, attached or as the next word.
                        'I' | 'M' | 'm' => {
                            if i + 1 == flags.len() {
                                it.next();
                            }
                            break;
                        }
                        // Take an optional attached argument: the rest of the word.
                        'i' | 'd' | 'D' | 'x' | 'C' | 'V' => break,
                        _ => {}
                    }
                }
            }
            script => return ScriptArg::File(script.to_string()),
        }
    }
    stdin()
}

fn php(args: &[String], inline: Why<'_>, stdin: Stdin<'_>) -> ScriptArg {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-r" | "-R" | "-B" | "-E" | "-F" => return inline(a),
            "-a" | "-" => return stdin(),
            "-f" | "--file" => return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone())),
            "--" => return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone())),
            "-d" | "-c" | "-z" | "--define" | "--php-ini" | "--zend-extension" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            script => return ScriptArg::File(script.to_string()),
        }
    }
    stdin()
}

fn node(args: &[String], inline: Why<'_>, stdin: Stdin<'_>) -> ScriptArg {
    const WITH_ARG: &[&str] = &[
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "-C",
        "--conditions",
        "--input-type",
        "--title",
        "--env-file",
        "--inspect-port",
        "--disable-warning",
        "--watch-path",
        "--stack-size",
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.split('=').next().unwrap_or(a);
        match name {
            "-e" | "--eval" | "-p" | "--print" => return inline(name),
            "-i" | "--interactive" | "-" => return stdin(),
            "--" => return it.next().map_or_else(stdin, |s| ScriptArg::File(s.clone())),
            n if WITH_ARG.contains(&n) && !a.contains('=') => {
                it.next();
            }
            n if n.starts_with('-') => {}
            _ => return ScriptArg::File(a.clone()),
        }
    }
    stdin()
}

fn deno(args: &[String], inline: Why<'_>, stdin: Stdin<'_>) -> ScriptArg {
    match args.first().map(String::as_str) {
        None | Some("repl") => stdin(),
        Some("eval") => inline("eval"),
        Some("run") => {
            const WITH_ARG: &[&str] = &[
                "-c",
                "--config",
                "--import-map",
                "--lock",
                "--cert",
                "--location",
                "--seed",
                "--v8-flags",
                "--env-file",
                "--inspect",
            ];
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                let name = a.split('=').next().unwrap_or(a);
                if a == "-" {
                    return stdin();
                }
                if WITH_ARG.contains(&name) && !a.contains('=') {
                    it.next();
                } else if !a.starts_with('-') {
                    return ScriptArg::File(a.clone());
                }
            }
            stdin()
        }
        Some(other) if !other.starts_with('-') => ScriptArg::File(other.to_string()),
        Some(_) => inline("with these options"),
    }
}

fn bun(args: &[String], inline: Why<'_>, stdin: Stdin<'_>) -> ScriptArg {
    for a in args {
        match a.as_str() {
            "-e" | "--eval" | "-p" | "--print" => return inline(a),
            "repl" => return stdin(),
            "run" => continue,
            s if s.starts_with('-') => {}
            script => return ScriptArg::File(script.to_string()),
        }
    }
    stdin()
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
            arg(s, &["bash", "--norc", "--rcfile", "rc", "x.sh"]),
            file("x.sh")
        );
        assert_eq!(arg(s, &["sh", "+x", "x.sh"]), file("x.sh"));
        assert!(no_file(arg(s, &["bash", "-c", "echo"])).contains("-c runs inline code"));
        assert!(no_file(arg(s, &["bash", "-ec", "echo"])).contains("inline"));
        assert!(no_file(arg(s, &["sh", "-s"])).contains("standard input"));
        assert!(no_file(arg(s, &["bash"])).contains("standard input"));
    }

    #[test]
    fn node_perl_ruby_php_deno_bun_command_lines() {
        assert_eq!(
            arg(
                Family::Node,
                &["node", "--require", "m", "--no-warnings", "a.js"]
            ),
            file("a.js")
        );
        assert_eq!(
            arg(Family::Node, &["node", "--import=x", "a.mjs"]),
            file("a.mjs")
        );
        assert!(no_file(arg(Family::Node, &["node", "-e", "1"])).contains("inline"));
        assert!(no_file(arg(Family::Node, &["node"])).contains("standard input"));
        assert_eq!(
            arg(
                Family::Perl,
                &["perl", "-w", "-I", "lib", "-Mstrict", "t.pl"]
            ),
            file("t.pl")
        );
        assert!(no_file(arg(Family::Perl, &["perl", "-lane", "print"])).contains("inline"));
        assert!(no_file(arg(Family::Perl, &["perl", "-l012e", "print"])).contains("inline"));
        assert_eq!(
            arg(Family::Perl, &["perl", "-l", "-0777", "s.pl"]),
            file("s.pl")
        );
        assert_eq!(
            arg(Family::Ruby, &["ruby", "-I", "lib", "-rjson", "r.rb"]),
            file("r.rb")
        );
        assert!(no_file(arg(Family::Ruby, &["ruby", "-e", "p 1"])).contains("inline"));
        assert_eq!(
            arg(Family::Php, &["php", "-d", "x=1", "-f", "i.php"]),
            file("i.php")
        );
        assert!(no_file(arg(Family::Php, &["php", "-r", "echo 1;"])).contains("inline"));
        assert_eq!(
            arg(
                Family::Deno,
                &["deno", "run", "--allow-net", "-c", "c.json", "m.ts"]
            ),
            file("m.ts")
        );
        assert!(no_file(arg(Family::Deno, &["deno", "eval", "1"])).contains("inline"));
        assert_eq!(arg(Family::Bun, &["bun", "run", "b.ts"]), file("b.ts"));
        assert!(no_file(arg(Family::Bun, &["bun", "-e", "1"])).contains("inline"));
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
