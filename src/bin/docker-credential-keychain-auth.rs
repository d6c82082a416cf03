//! `docker-credential-keychain-auth`: a docker credential helper backed by the keychain-auth
//! broker. See [`keychain_auth::adapters::docker`].

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = keychain_auth::adapters::docker::run(
        &args,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut keychain_auth::adapters::connect,
    );
    std::process::exit(code);
}
