//! `keychain-auth completions bash|zsh|fish` and `keychain-auth man`: generated from the same
//! clap definition ([`crate::cli::args::Cli`]) that parses the command line, so they never drift
//! from it.

use clap::CommandFactory;
use std::io::Write;

/// The shells `completions` writes for (a value of the command line, defined with it).
pub use crate::cli::args::Shell;

/// Writes the completion script for `shell` to standard output.
pub fn completions(shell: Shell) -> std::io::Result<()> {
    let mut cmd = crate::cli::args::Cli::command();
    let mut buf = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "keychain-auth", &mut buf);
    if matches!(shell, Shell::Bash) {
        buf = fix_bash_states(&buf);
    }
    emit(&buf)
}

/// clap_complete's bash script (clap issue 6421) walks the words into states spelled
/// `keychain__auth__subcmd__audit` but labels its `case` arms `keychain__subcmd__auth__subcmd__audit`
/// (the hyphen of the binary's name escaped as a subcommand separator), so nothing after the
/// first word ever completed. The arms are respelled the way the walk spells them.
fn fix_bash_states(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script)
        .replace("keychain__subcmd__auth__", "keychain__auth__")
        .replace("keychain__subcmd__auth)", "keychain__auth)")
        .into_bytes()
}

/// Writes the manual page (roff, section 1) to standard output; with `dir`, writes every page
/// (`keychain-auth.1` and `keychain-auth-COMMAND.1` for each command the main page lists) there
/// and names them.
pub fn man(dir: Option<&std::path::Path>) -> std::io::Result<()> {
    let cmd = crate::cli::args::Cli::command();
    let Some(dir) = dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        return emit(&buf);
    };
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(cmd, dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot write the pages to {}: {e}",
                crate::display::path(dir)
            ),
        )
    })?;
    crate::outln!(
        "wrote the manual pages to {} (keychain-auth.1 and one per command)",
        crate::display::path(dir)
    );
    Ok(())
}

/// Standard output; a closed pipe (`keychain-auth man | head`) ends quietly.
fn emit(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
