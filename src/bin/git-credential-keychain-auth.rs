//! `git-credential-keychain-auth`: a git credential helper backed by the keychain-auth broker.
//! See [`keychain_auth::adapters::git`].

fn main() {
    let action = std::env::args().nth(1);
    let code = keychain_auth::adapters::git::run(
        action.as_deref(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &mut keychain_auth::adapters::connect,
    );
    std::process::exit(code);
}
