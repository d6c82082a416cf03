//! `keychain-auth-client`: the reference client. It sends each request line (from its arguments,
//! or else from standard input, one per line) over one connection and prints each response line.
//!
//! ```text
//! keychain-auth-client '{"type":"REQUEST","action":"read","service":"aws","targets":["key"]}'
//! ```
//!
//! The socket is `--socket PATH`, else the same default as the daemon's. It exits 0 when every
//! response was `success` (or a STATUS), 1 when any was not, 2 on a connection error.

use keychain_auth::client::Client;
use keychain_auth::paths::Paths;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    std::process::exit(match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("keychain-auth-client: {e}");
            2
        }
    });
}

fn run() -> Result<bool, String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket: Option<PathBuf> = None;
    if let Some(i) = args.iter().position(|a| a == "--socket") {
        if i + 1 >= args.len() {
            return Err("--socket needs a path".into());
        }
        socket = Some(PathBuf::from(args.remove(i + 1)));
        args.remove(i);
    }
    let paths = Paths::from_env(socket.as_deref()).map_err(|e| e.to_string())?;
    let mut client = Client::connect(&paths.socket, Duration::from_secs(30))
        .map_err(|e| format!("cannot connect to {}: {e}", paths.socket.display()))?;
    let mut all_ok = true;
    let mut send = |line: &str, client: &mut Client| -> Result<(), String> {
        let resp = client
            .round_trip(line.as_bytes())
            .map_err(|e| e.to_string())?;
        let ok = serde_json::from_str::<serde_json::Value>(&resp)
            .map(|v| v["type"] == "STATUS" || v["status"] == "success")
            .unwrap_or(false);
        all_ok &= ok;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{resp}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())
    };
    if args.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| e.to_string())?;
            send(&line, &mut client)?;
        }
    } else {
        for line in &args {
            send(line, &mut client)?;
        }
    }
    Ok(all_ok)
}
