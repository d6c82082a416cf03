//! The full SPEC flow against the real daemon with the file store.

use testkit::Sandbox;

#[test]
fn full_flow_on_the_file_store() {
    let env = Sandbox::new();
    let _daemon = env.start();
    testkit::full_flow(&env, "aws");
    // The file store holds what the flow left, 0600 in a 0700 directory.
    assert_eq!(testkit::mode(&env.file_store()), 0o600);
    assert_eq!(
        testkit::mode(env.file_store().parent().expect("dir")),
        0o700
    );
}
