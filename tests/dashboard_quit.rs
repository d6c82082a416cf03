//! The dashboard that embeds the only broker, in a real terminal (tmux): its first screen says
//! that quitting stops the broker and how to keep one running, above the hint bar; quitting with
//! a caller connected, or with a request held for an answer, says what they lose and asks.

use testkit::{Dashboard, Sandbox, held_response, request, wait_for};

#[test]
fn quitting_the_embedded_broker_says_what_callers_lose_and_asks() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let tmux = Dashboard::start(&env, &["tui"]);
    let screen = tmux.wait_screen("the first screen", |s| {
        s.contains("EMBEDDED") && s.contains("keychain-auth install")
    });
    let lines: Vec<&str> = screen.lines().collect();
    let last = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .expect("lines");
    assert!(
        lines[last].contains("quit"),
        "the hint bar stays:\n{screen}"
    );
    assert!(
        lines[last - 1].contains("doctor explains")
            || lines[last - 1].contains("keychain-auth install"),
        "the notice right above it:\n{screen}"
    );
    assert!(
        !screen.contains("org.freedesktop"),
        "plain words:\n{screen}"
    );

    // A caller holds a connection open: q asks, saying what it loses.
    let reader = env.registered_client("reader", &["--read", "s"]);
    let mut session = env.session(&reader);
    session.send(&request("read", "s", &["nothing"]));
    tmux.keys(&["q"]);
    let screen = tmux.wait_screen("the quit question", |s| {
        s.contains("Quit and stop the broker?")
    });
    assert!(screen.contains("1 connected caller(s) lose it"), "{screen}");
    assert!(screen.contains("keychain-auth install"), "{screen}");
    tmux.keys(&["n"]);
    tmux.wait_screen("the question gone", |s| {
        !s.contains("Quit and stop the broker?")
    });
    assert!(testkit::status(&env.socket).is_some(), "still serving");
    drop(session);

    // A request held for an answer: ctrl-c asks over the prompt; yes stops the broker, and the
    // held caller is refused rather than left waiting.
    let stranger = env.client("stranger");
    let held = env.spawn_client(&stranger, &request("read", "s", &["k"]));
    tmux.wait_screen("the prompt", |s| {
        s.contains("stranger") && s.contains("allow once")
    });
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_screen("the quit question over the prompt", |s| {
        s.contains("Quit and stop the broker?")
    });
    assert!(
        screen.contains("1 request(s) waiting for your answer are refused"),
        "{screen}"
    );
    tmux.keys(&["y"]);
    wait_for(20, "the embedded broker to stop", || {
        (!env.socket.exists()).then_some(())
    });
    let answer = held_response(held);
    assert_eq!(answer["status"], "denied", "{answer}");
}
