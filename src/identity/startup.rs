//! Start-up code an interpreter runs from places the user can write, before the approved script
//! (SPEC §10, injection guard): Python's user site directory (`*.pth` files, whose `import`
//! lines run, and `usercustomize`/`sitecustomize` modules) unless the caller runs with `-s` or
//! `-I`, and zsh's `~/.zshenv` unless it runs with `-f`. Any program of the user's can write
//! these files, so a script approved by its hash would otherwise run code nobody approved.

use super::process::Environ;
use super::script::Family;
use std::path::{Path, PathBuf};

/// A start-up file the caller's interpreter will run before its script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    /// The file (or module directory).
    pub file: PathBuf,
    /// What it is and how to run without it, for the refusal.
    pub why: &'static str,
}

/// Most start-up files named per caller (the first one is enough to refuse it).
const MAX_FOUND: usize = 4;

/// The start-up files the interpreter at `exe` (of `family`), run with `argv` in an environment
/// `env`, will run before its script. `home` is where `~` is when the caller's `HOME` is unset.
pub(crate) fn startup_files(
    family: Family,
    exe: &Path,
    argv: &[String],
    env: &Environ,
    home: Option<&Path>,
) -> Vec<Startup> {
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let home = env
        .get("HOME")
        .map(PathBuf::from)
        .or(home.map(Path::to_path_buf));
    match family {
        Family::Python => python_user_site(&name, argv, env, home.as_deref()),
        Family::Shell if name.starts_with("zsh") => zshenv(argv, env, home.as_deref()),
        _ => Vec::new(),
    }
}

/// The single-letter options given before the script (clustered words starting with `-`).
fn option_letters(argv: &[String]) -> String {
    let mut letters = String::new();
    for a in argv.iter().skip(1) {
        if a == "--" || !a.starts_with('-') || a.starts_with("--") || a.len() < 2 {
            break;
        }
        letters.push_str(&a[1..]);
    }
    letters
}

fn python_user_site(
    name: &str,
    argv: &[String],
    env: &Environ,
    home: Option<&Path>,
) -> Vec<Startup> {
    let letters = option_letters(argv);
    let ignore_env = letters.contains('E') || letters.contains('I');
    if letters.contains('s') || letters.contains('I') {
        return Vec::new();
    }
    if !ignore_env && env.get("PYTHONNOUSERSITE").is_some() {
        return Vec::new();
    }
    let base = match env.get("PYTHONUSERBASE").filter(|_| !ignore_env) {
        Some(b) => PathBuf::from(b),
        None => match home {
            Some(h) => h.join(".local"),
            None => return Vec::new(),
        },
    };
    let lib = base.join("lib");
    // `python3.11` names its version; a bare `python3` may be any, so every one is looked at.
    let versions: Vec<String> = match name.strip_prefix("python") {
        Some(v) if v.contains('.') => vec![format!("python{v}")],
        _ => std::fs::read_dir(&lib)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("python"))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut found = Vec::new();
    for v in versions {
        let site = lib.join(v).join("site-packages");
        let Ok(entries) = std::fs::read_dir(&site) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let file = e.file_name();
            let file = file.to_string_lossy();
            let stem = file.split('.').next().unwrap_or_default();
            let why = if file.ends_with(".pth") {
                "a .pth file in Python's user site directory, whose import lines Python runs at start-up"
            } else if stem == "usercustomize" || stem == "sitecustomize" {
                "a module in Python's user site directory that Python imports at start-up"
            } else {
                continue;
            };
            found.push(Startup {
                file: site.join(&*file),
                why,
            });
            if found.len() == MAX_FOUND {
                return found;
            }
        }
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    found
}

fn zshenv(argv: &[String], env: &Environ, home: Option<&Path>) -> Vec<Startup> {
    let no_rcs = option_letters(argv).contains('f')
        || argv.iter().any(|a| a == "--no-rcs" || a == "--norcs");
    if no_rcs {
        return Vec::new();
    }
    let dir = match env.get("ZDOTDIR") {
        Some(d) => PathBuf::from(d),
        None => match home {
            Some(h) => h.to_path_buf(),
            None => return Vec::new(),
        },
    };
    let file = dir.join(".zshenv");
    if std::fs::symlink_metadata(&file).is_ok() {
        vec![Startup {
            file,
            why: "zsh's ~/.zshenv, which zsh runs before every script",
        }]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| (*s).to_string()).collect()
    }

    fn env_with(vars: &[(&'static str, &str)]) -> Environ {
        Environ {
            injected: Vec::new(),
            read: vars.iter().map(|(n, v)| (*n, (*v).to_string())).collect(),
        }
    }

    #[test]
    fn python_user_site_files_are_found_unless_the_user_site_is_off() {
        let home = tempfile::tempdir().unwrap();
        let site = home.path().join(".local/lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::write(site.join("requests.py"), "").unwrap();
        let exe = Path::new("/usr/bin/python3.11");
        let env = env_with(&[("HOME", home.path().to_str().unwrap())]);
        let run = |argv: &[&str], env: &Environ| {
            startup_files(Family::Python, exe, &words(argv), env, None)
        };
        assert!(
            run(&["python3", "s.py"], &env).is_empty(),
            "an ordinary module is not start-up code"
        );
        std::fs::write(site.join("evil.pth"), "import os\n").unwrap();
        std::fs::write(site.join("usercustomize.py"), "").unwrap();
        let found = run(&["python3", "s.py"], &env);
        let files: Vec<_> = found.iter().map(|s| s.file.clone()).collect();
        assert_eq!(
            files,
            vec![site.join("evil.pth"), site.join("usercustomize.py")]
        );
        // -E ignores PYTHONNOUSERSITE but not the user site.
        assert_eq!(run(&["python3", "-E", "s.py"], &env).len(), 2);
        for off in [
            &["python3", "-s", "s.py"][..],
            &["python3", "-I", "s.py"],
            &["python3", "-Bs", "s.py"],
        ] {
            assert!(run(off, &env).is_empty(), "{off:?}");
        }
        let nousersite = env_with(&[
            ("HOME", home.path().to_str().unwrap()),
            ("PYTHONNOUSERSITE", "1"),
        ]);
        assert!(run(&["python3", "s.py"], &nousersite).is_empty());
        assert_eq!(run(&["python3", "-E", "s.py"], &nousersite).len(), 2);
        // PYTHONUSERBASE moves the directory (and -E ignores it).
        let other = tempfile::tempdir().unwrap();
        let other_site = other.path().join("lib/python3.11/site-packages");
        std::fs::create_dir_all(&other_site).unwrap();
        std::fs::write(other_site.join("x.pth"), "import evil\n").unwrap();
        let moved = env_with(&[
            ("HOME", "/nonexistent"),
            ("PYTHONUSERBASE", other.path().to_str().unwrap()),
        ]);
        assert_eq!(
            run(&["python3", "s.py"], &moved)[0].file,
            other_site.join("x.pth")
        );
        assert!(run(&["python3", "-E", "s.py"], &moved).is_empty());
        // A bare `python3` looks at every version's directory.
        let bare = startup_files(
            Family::Python,
            Path::new("/opt/py/python3"),
            &words(&["python3", "s.py"]),
            &env,
            None,
        );
        assert_eq!(bare.len(), 2);
    }

    #[test]
    fn zshenv_is_found_unless_zsh_runs_without_startup_files() {
        let home = tempfile::tempdir().unwrap();
        let env = env_with(&[("HOME", home.path().to_str().unwrap())]);
        let zsh = Path::new("/usr/bin/zsh");
        let run = |argv: &[&str]| startup_files(Family::Shell, zsh, &words(argv), &env, None);
        assert!(run(&["zsh", "s.zsh"]).is_empty());
        std::fs::write(home.path().join(".zshenv"), "echo hi\n").unwrap();
        assert_eq!(run(&["zsh", "s.zsh"])[0].file, home.path().join(".zshenv"));
        assert!(run(&["zsh", "-f", "s.zsh"]).is_empty());
        assert!(
            startup_files(
                Family::Shell,
                Path::new("/bin/bash"),
                &words(&["bash", "s.sh"]),
                &env,
                None
            )
            .is_empty()
        );
    }
}
