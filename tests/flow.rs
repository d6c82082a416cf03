//! The full SPEC flow against the real daemon with the file store.

mod common;

use common::TestEnv;

#[test]
fn full_flow_on_the_file_store() {
    let env = TestEnv::new();
    let _daemon = env.start();
    common::flow::full_flow(&env, "aws");
    // The file store holds what the flow left, 0600 in a 0700 directory.
    assert_eq!(common::mode(&env.file_store()), 0o600);
    assert_eq!(common::mode(env.file_store().parent().expect("dir")), 0o700);
}
