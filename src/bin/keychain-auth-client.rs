//! `keychain-auth-client`: the reference client. It sends each request line (from its arguments,
//! or else from standard input, one per line) over one connection and prints each response line.
//!
//! ```text
//! keychain-auth-client '{"type":"REQUEST","action":"read","service":"aws","targets":["key"]}'
//! ```
//!
//! Options:
//! - `--socket PATH`: the broker's socket (default: the same as the daemon's);
//! - `--repeat N`: send the argument lines N times (a load generator for benchmarks);
//! - `--reconnect`: open a new connection for every round (measures connect + identify);
//! - `--quiet`: do not print responses;
//! - `--stats`: print one JSON summary line of per-round latencies at the end;
//! - `--help`: print usage; `--version`: print the version.
//!
//! Before sending anything it checks that the broker runs as the same user (or root), and
//! refuses otherwise (see the client SDK, [`keychain_auth::client`]).
//!
//! It exits 0 when every response was `success` (or a STATUS), 1 when any was not, 2 on a
//! connection error.

use keychain_auth::client::{Client, ClientError};
use keychain_auth::paths::Paths;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Options {
    socket: Option<PathBuf>,
    repeat: usize,
    reconnect: bool,
    quiet: bool,
    stats: bool,
    lines: Vec<String>,
}

const USAGE: &str = "\
usage: keychain-auth-client [--socket PATH] [--repeat N] [--reconnect] [--quiet] [--stats] [REQUEST-LINE]...

Sends each request line (its arguments, or else standard input one per line) to the
keychain-auth broker over one connection and prints each response line.

  --socket PATH   the broker's socket (default: $KEYCHAIN_AUTH_SOCKET, else the XDG default)
  --repeat N      send the argument lines N times
  --reconnect     open a new connection for every round
  --quiet         do not print responses
  --stats         print one JSON line of per-round latencies at the end
  --help, -h      print this help
  --version, -V   print the version

Exit status: 0 when every response was a success (or a STATUS), 1 when any was not,
2 when it cannot connect or is used wrongly. Prefer standard input for writes: arguments
are visible to other processes.
";

fn main() {
    std::process::exit(match run() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!(
                "keychain-auth-client: {}",
                keychain_auth::display::clean(&e)
            );
            2
        }
    });
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        repeat: 1,
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => o.socket = Some(args.next().ok_or("--socket needs a path")?.into()),
            "--repeat" => {
                o.repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--repeat needs a positive number")?;
            }
            "--reconnect" => o.reconnect = true,
            "--quiet" => o.quiet = true,
            "--stats" => o.stats = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("keychain-auth-client {}", keychain_auth::VERSION);
                std::process::exit(0);
            }
            _ => o.lines.push(a),
        }
    }
    if o.repeat > 1 && o.lines.is_empty() {
        return Err("--repeat needs request lines as arguments".into());
    }
    Ok(o)
}

fn run() -> Result<bool, String> {
    let o = parse_args()?;
    let paths = Paths::from_env(o.socket.as_deref()).map_err(|e| e.to_string())?;
    let connect =
        || Client::connect(&paths.socket, Duration::from_secs(60)).map_err(|e| e.to_string());
    let mut client = connect()?;
    let mut all_ok = true;
    let mut errors = 0usize;
    let mut out = std::io::stdout().lock();
    let mut send = |line: &str, client: &mut Client| -> Result<(), String> {
        let resp = client
            .round_trip(line.as_bytes())
            .map_err(|e: ClientError| e.to_string())?;
        let ok = serde_json::from_str::<serde_json::Value>(&resp)
            .map(|v| v["type"] == "STATUS" || v["status"] == "success")
            .unwrap_or(false);
        if !ok {
            all_ok = false;
            errors += 1;
        }
        if !o.quiet {
            writeln!(out, "{resp}")
                .and_then(|()| out.flush())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    if o.lines.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| e.to_string())?;
            send(&line, &mut client)?;
        }
        return Ok(all_ok);
    }
    let mut samples: Vec<u64> = Vec::with_capacity(if o.stats { o.repeat } else { 0 });
    let started = Instant::now();
    for _ in 0..o.repeat {
        let t = Instant::now();
        if o.reconnect {
            client = connect()?;
        }
        for line in &o.lines {
            send(line, &mut client)?;
        }
        if o.stats {
            samples.push(t.elapsed().as_nanos() as u64);
        }
    }
    if o.stats {
        let elapsed = started.elapsed().as_secs_f64();
        let summary = serde_json::json!({
            "rounds": o.repeat,
            "errors": errors,
            "elapsed_s": elapsed,
            "samples_ns": samples,
        });
        println!("{summary}");
    }
    Ok(all_ok)
}
