//! `keychain-auth-aws PROFILE`: an AWS `credential_process` (Version 1).
//!
//! The profile's credentials live in service `aws` under targets `PROFILE/access_key_id`,
//! `PROFILE/secret_access_key` and, optionally, `PROFILE/session_token` and
//! `PROFILE/expiration` (ISO 8601, passed through as stored). All four are asked for in one
//! batch on one connection (the required pair in one all-or-nothing request, each optional
//! target in its own request, all sent at once), and printed as
//! `{"Version":1,"AccessKeyId":…,"SecretAccessKey":…[,"SessionToken":…][,"Expiration":…]}`.
//!
//! Failures exit non-zero with one line on standard error naming the reason — never a value:
//! 1 for a refusal, a miss or no broker, 2 for a wrong command line.

use super::one_line;
use crate::client::{Call, Client, ClientError};
use std::io::Write;

/// The service credentials are stored under.
pub const SERVICE: &str = "aws";
const NAME: &str = "keychain-auth-aws";

/// The four target names of `profile`.
pub fn targets(profile: &str) -> [String; 4] {
    [
        format!("{profile}/access_key_id"),
        format!("{profile}/secret_access_key"),
        format!("{profile}/session_token"),
        format!("{profile}/expiration"),
    ]
}

fn valid_profile(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && !p.starts_with('-')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+@=,".contains(c))
}

/// The profile named on the command line (validated), or the exit status after printing the
/// usage (`-h`, `--help`: 0) or the version (`-V`, `--version`: 0) or why the command line is wrong (2).
fn profile_arg<'a>(
    args: &'a [String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<&'a str, i32> {
    let profile = match args {
        [p] if p == "-V" || p == "--version" => {
            let _ = writeln!(out, "{NAME} (keychain-auth) {}", crate::VERSION);
            return Err(0);
        }
        [p] if p == "-h" || p == "--help" => {
            let _ = writeln!(
                out,
                "usage: {NAME} PROFILE\n\nAn AWS credential_process: prints the profile's credentials (service aws, targets PROFILE/access_key_id, PROFILE/secret_access_key, optional PROFILE/session_token and PROFILE/expiration) as credential_process JSON.\nIn ~/.aws/config:  credential_process = {NAME} PROFILE\n\n  -h, --help      print this help\n  -V, --version   print the version"
            );
            return Err(0);
        }
        [p] => p,
        _ => {
            let _ = writeln!(err, "{NAME}: usage: {NAME} PROFILE");
            return Err(2);
        }
    };
    if !valid_profile(profile) {
        let _ = writeln!(
            err,
            "{NAME}: invalid profile name (letters, digits and -_.+@=, only, at most 200 bytes)"
        );
        return Err(2);
    }
    Ok(profile)
}

/// Runs the credential process for `args` (the arguments after the program name).
pub fn run(
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> i32 {
    let profile = match profile_arg(args, out, err) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let [key, secret, token, expiration] = targets(profile);
    let calls = [
        Call::read(SERVICE, &[&key, &secret]),
        Call::read(SERVICE, &[&token]),
        Call::read(SERVICE, &[&expiration]),
    ];
    let fail = |err: &mut dyn Write, why: String| {
        let _ = writeln!(err, "{NAME}: profile {profile}: {}", one_line(&why));
        1
    };
    let replies = match connect().and_then(|mut c| c.batch(&calls)) {
        Ok(r) => r,
        Err(e) => return fail(err, e.to_string()),
    };
    let mut replies = replies.into_iter();
    let mut value_of = |required: bool| -> Result<Vec<String>, ClientError> {
        let reply = replies.next().ok_or(ClientError::Closed)?;
        match reply.into_results() {
            Ok(items) => Ok(items
                .into_iter()
                .map(|i| i.value.unwrap_or_default())
                .collect()),
            Err(e) if !required && e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    };
    let pair = match value_of(true) {
        Ok(v) if v.len() == 2 => v,
        Ok(_) => return fail(err, "the broker returned an incomplete answer".into()),
        Err(e) if e.is_not_found() => {
            return fail(
                err,
                format!(
                    "no credentials stored (store them with: keychain-auth put aws {key}, and {secret})"
                ),
            );
        }
        Err(e) => return fail(err, e.to_string()),
    };
    let mut json = serde_json::json!({
        "Version": 1,
        "AccessKeyId": pair[0],
        "SecretAccessKey": pair[1],
    });
    for field in ["SessionToken", "Expiration"] {
        match value_of(false) {
            Ok(v) => {
                if let Some(x) = v.into_iter().next().filter(|x| !x.is_empty()) {
                    json[field] = serde_json::Value::String(x);
                }
            }
            Err(e) => return fail(err, e.to_string()),
        }
    }
    let _ = writeln!(out, "{json}").and_then(|()| out.flush());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        assert!(valid_profile("prod"));
        assert!(valid_profile("team.prod-1"));
        assert!(!valid_profile(""));
        assert!(!valid_profile("a/b"));
        assert!(!valid_profile("--help-me"));
        assert!(!valid_profile("a\nb"));
        assert_eq!(targets("p")[0], "p/access_key_id");
    }
}
