//! The `keychain-auth` binary: see [`keychain_auth::cli`].

fn main() {
    if let Err(reason) = keychain_auth::cli::main() {
        eprintln!("keychain-auth: {reason}");
        std::process::exit(1);
    }
}
