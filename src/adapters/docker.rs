//! `docker-credential-keychain-auth`: the docker credential helper protocol
//! (docker-credential-helpers), used by docker, podman, buildah and skopeo.
//!
//! - `store`: standard input `{"ServerURL":…,"Username":…,"Secret":…}`; no output.
//! - `get`: standard input the server URL; output `{"ServerURL":…,"Username":…,"Secret":…}`.
//! - `erase`: standard input the server URL; no output.
//! - `list`: output `{"<ServerURL>":"<Username>",…}` (needs the search permission).
//! - `version`: prints the version.
//!
//! Like every docker-credential-helpers program, an error is one line on **standard output**
//! and exit status 1; a miss is exactly `credentials not found in native keychain`, which the
//! docker client recognises. Credentials live in service `docker`, target the server URL,
//! attribute `username`.

use super::{MAX_INPUT, one_line, read_input};
use crate::client::{Call, Client, ClientError};
use crate::protocol::Attributes;
use std::io::{Read, Write};

/// The service credentials are stored under.
pub const SERVICE: &str = "docker";
/// The exact miss message docker clients test for.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
const NAME: &str = "docker-credential-keychain-auth";

/// What `store` reads.
#[derive(serde::Deserialize)]
struct Credentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

fn usage() -> String {
    format!("Usage: {NAME} <store|get|erase|list|version>")
}

/// What `--help` prints: the usage line and what the helper is.
fn help() -> String {
    format!(
        "{}\n\nA docker-credential-helpers program backed by the keychain-auth broker (docker, podman,\nbuildah, skopeo). Credentials live in service `docker`, target the server URL, attribute\n`username`. Set up: {{\"credsStore\": \"keychain-auth\"}} in ~/.docker/config.json.\n\n  -h, --help      print this help\n  -v, --version   print the version\n",
        usage()
    )
}

/// Runs the helper with `args` (the arguments after the program name); returns the exit status.
pub fn run(
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> i32 {
    let action = match args {
        [a] => a.as_str(),
        _ => {
            let _ = writeln!(out, "{}", usage());
            return 1;
        }
    };
    let result = match action {
        "--version" | "-v" | "version" => {
            Ok(format!("{NAME} (keychain-auth) {}\n", crate::VERSION))
        }
        "--help" | "-h" => Ok(help()),
        "store" => store(input, connect),
        "get" => get(input, connect),
        "erase" => erase(input, connect),
        "list" => list(connect),
        other => Err(format!("{NAME}: unknown action: {}", one_line(other))),
    };
    match result {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            0
        }
        Err(e) => {
            let _ = writeln!(out, "{e}").and_then(|()| out.flush());
            1
        }
    }
}

/// Reads all of standard input (as the Go helpers' line scanner does, joining lines).
fn input_text(input: &mut dyn Read) -> Result<String, String> {
    let bytes = match read_input(input) {
        Ok(b) => b,
        Err(true) => return Err("bufio.Scanner: token too long".into()),
        Err(false) => return Err("cannot read standard input".into()),
    };
    debug_assert!(bytes.len() <= MAX_INPUT);
    String::from_utf8(bytes).map_err(|_| "the input is not UTF-8".to_string())
}

fn server_url(input: &mut dyn Read) -> Result<String, String> {
    let text = input_text(input)?;
    let url: String = text.lines().collect::<String>().trim().to_string();
    if url.is_empty() {
        return Err("no credentials server URL".into());
    }
    Ok(url)
}

fn refused(e: ClientError) -> String {
    if e.is_not_found() {
        NOT_FOUND.to_string()
    } else {
        format!("{NAME}: {}", one_line(&e.to_string()))
    }
}

fn store(
    input: &mut dyn Read,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> Result<String, String> {
    let text = input_text(input)?;
    // Go's decoder error shape, without quoting the input (it carries the secret).
    let creds: Credentials = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "invalid character in credentials JSON (line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    if creds.server_url.trim().is_empty() {
        return Err("no credentials server URL".into());
    }
    if creds.username.is_empty() {
        return Err("no credentials username".into());
    }
    let mut attrs = Attributes::new();
    attrs.insert("username".into(), creds.username);
    let call =
        Call::write(SERVICE, &[creds.server_url.trim()], vec![creds.secret]).with_attributes(attrs);
    connect()
        .and_then(|mut c| c.call(&call))
        .and_then(super::super::client::Reply::into_results)
        .map_err(refused)?;
    Ok(String::new())
}

fn get(
    input: &mut dyn Read,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> Result<String, String> {
    let url = server_url(input)?;
    let items = connect()
        .and_then(|mut c| c.read(SERVICE, &[&url]))
        .map_err(refused)?;
    let item = items
        .into_iter()
        .next()
        .ok_or_else(|| NOT_FOUND.to_string())?;
    let username = item
        .attributes
        .and_then(|a| a.get("username").cloned())
        .unwrap_or_default();
    let json = serde_json::json!({
        "ServerURL": url,
        "Username": username,
        "Secret": item.value.unwrap_or_default(),
    });
    Ok(format!("{json}\n"))
}

fn erase(
    input: &mut dyn Read,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> Result<String, String> {
    let url = server_url(input)?;
    connect()
        .and_then(|mut c| c.delete(SERVICE, &[&url]))
        .map_err(refused)?;
    Ok(String::new())
}

fn list(connect: &mut dyn FnMut() -> Result<Client, ClientError>) -> Result<String, String> {
    let items = connect()
        .and_then(|mut c| c.search(SERVICE, &[]))
        .map_err(refused)?;
    let map: serde_json::Map<String, serde_json::Value> = items
        .into_iter()
        .map(|i| {
            let user = i
                .attributes
                .and_then(|a| a.get("username").cloned())
                .unwrap_or_default();
            (i.target, serde_json::Value::String(user))
        })
        .collect();
    Ok(format!("{}\n", serde_json::Value::Object(map)))
}
