//! The `keychain-auth` binary: see [`keychain_auth::cli`].

fn main() {
    if let Err(reason) = keychain_auth::cli::main() {
        // A reason can quote a path or a caller's text: never let it drive the terminal.
        eprintln!("keychain-auth: {}", keychain_auth::display::clean(&reason));
        std::process::exit(1);
    }
}
