//! `keychain-auth-aws PROFILE`: an AWS `credential_process` backed by the keychain-auth broker.
//! See [`keychain_auth::adapters::aws`].

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = keychain_auth::adapters::aws::run(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &mut keychain_auth::adapters::connect,
    );
    std::process::exit(code);
}
