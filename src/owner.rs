//! The owner's own door to the secrets: `keychain-auth secret ls|get|put|rm`, `aws add` and
//! `export --age`.
//!
//! The person, proven by the vault passphrase (presence), manages the store directly, without
//! approving a shell. Each command is one call on the store ([`crate::owner_store`]): carried out
//! by the running daemon, which verifies the passphrase and holds the vault, or, with no daemon
//! running, here on the vault this process opened (non-dumpable). With a plain store there is no
//! passphrase to ask for. Every command is audited with `"source":"owner"`; values never reach
//! the log.

use crate::admin::{Done, Op, Source};
use crate::audit::Record;
use crate::backend::{Change, Item};
use crate::cli::failure::Failure;
use crate::owner_store::{OwnerAnswer, OwnerCall};
use crate::paths::Paths;
use crate::protocol::{Attributes, MAX_SERVICE_LEN, MAX_TARGET_LEN};
use std::io::{IsTerminal, Write};
use zeroize::Zeroizing;

/// Carries `call` out where the store is open: by the running broker (with the passphrase it
/// verifies), else here on the store the rules select (unlocked by presence).
fn owner_call(paths: &Paths, pass: Option<&str>, call: OwnerCall) -> Result<OwnerAnswer, Failure> {
    match crate::control::carry(paths, Source::Cli, Op::Owner { call }, pass)? {
        Done::Owner(answer) => Ok(answer),
        other => Err(format!("the broker answered {other:?} to the owner's call").into()),
    }
}

fn unexpected(answer: OwnerAnswer) -> Failure {
    format!("the broker gave an unexpected answer ({answer:?})").into()
}

fn check_name(what: &str, s: &str, max: usize) -> Result<(), Failure> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(
            format!("{what} {s:?} must be 1 to {max} bytes without control characters").into(),
        );
    }
    if what == "service" && crate::keys::is_reserved_service(s) {
        return Err(format!("{s:?} is reserved for keychain-auth itself").into());
    }
    Ok(())
}

/// A service and target as the owner typed them, checked before anything is asked.
fn check_item(service: &str, target: &str) -> Result<(), Failure> {
    check_name("service", service, MAX_SERVICE_LEN)?;
    check_name("target", target, MAX_TARGET_LEN)
}

fn record(action: &str, service: &str, targets: &[&str], status: &str) -> Record {
    let mut r = Record::new("request", "owner");
    r.action = Some(action.into());
    r.service = Some(service.into());
    r.targets = targets.iter().map(|t| (*t).to_string()).collect();
    r.count = Some(targets.len());
    r.status = Some(status.into());
    r
}

/// Audits, and refuses to report success when the record cannot be written.
fn audited(paths: &Paths, rec: &Record) -> Result<(), Failure> {
    crate::control::record(paths, rec)
        .map_err(|e| format!("the audit log could not be written: {e}").into())
}

/// `secret ls [SERVICE]`: services and their targets with attributes; never values.
pub(crate) fn ls(paths: &Paths, pass: Option<&str>, service: Option<&str>) -> Result<(), Failure> {
    if let Some(s) = service {
        check_name("service", s, MAX_SERVICE_LEN)?;
    }
    let call = OwnerCall::List {
        service: service.map(str::to_string),
    };
    let OwnerAnswer::Listing { services } = owner_call(paths, pass, call)? else {
        return Err("the broker gave no listing".into());
    };
    let mut out = String::new();
    let mut n = 0;
    for (s, entries) in &services {
        for e in entries {
            n += 1;
            let attrs: Vec<String> = e
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "{}  {}{}\n",
                crate::display::clean(s),
                crate::display::clean(&e.target),
                if attrs.is_empty() {
                    String::new()
                } else {
                    format!("  {}", crate::display::clean(&attrs.join(" ")))
                }
            ));
        }
    }
    audited(
        paths,
        &record("search", service.unwrap_or("*"), &[], "success"),
    )?;
    if n == 0 {
        crate::outln!(
            "no secrets{}",
            service.map_or(String::new(), |s| format!(
                " in {}",
                crate::display::clean(s)
            ))
        );
    } else {
        crate::display::print_keeping_status(out.trim_end_matches('\n'));
    }
    Ok(())
}

/// `secret get SERVICE TARGET`: the value and a newline on standard output.
pub(crate) fn get(
    paths: &Paths,
    pass: Option<&str>,
    service: &str,
    target: &str,
) -> Result<(), Failure> {
    check_item(service, target)?;
    let call = OwnerCall::Get {
        service: service.into(),
        target: target.into(),
    };
    let item = match owner_call(paths, pass, call)? {
        OwnerAnswer::Item { item } => item,
        other => return Err(unexpected(other)),
    };
    let Some(item) = item else {
        audited(paths, &record("read", service, &[target], "error"))?;
        return Err(format!("no secret {target:?} in {service:?}").into());
    };
    audited(paths, &record("read", service, &[target], "success"))?;
    let value = Zeroizing::new(item.value.clone());
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", value.as_str()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A value: asked twice without echo at a terminal, else all of standard input (one trailing
/// newline dropped). Empty is refused unless `allow_empty`.
fn value(label: &str, allow_empty: bool) -> Result<Zeroizing<String>, Failure> {
    let v = if std::io::stdin().is_terminal() {
        let first = crate::vault_cli::ask_hidden(&format!("{label}: "))?;
        let again = crate::vault_cli::ask_hidden("Again: ")?;
        if *first != *again {
            return Err("the two entries differ; nothing was stored".into());
        }
        first
    } else {
        Zeroizing::new(crate::scripts::read_value(&mut std::io::stdin().lock())?)
    };
    if v.is_empty() && !allow_empty {
        return Err(format!("{label}: an empty value is refused (pass --allow-empty to store one); nothing was stored").into());
    }
    Ok(v)
}

/// `secret put SERVICE TARGET [--allow-empty]`.
pub(crate) fn put(
    paths: &Paths,
    pass: Option<&str>,
    service: &str,
    target: &str,
    allow_empty: bool,
) -> Result<(), Failure> {
    check_item(service, target)?;
    let v = value("Value", allow_empty)?;
    let changes = vec![Change::Set {
        service: service.into(),
        target: target.into(),
        item: Item {
            value: v.to_string(),
            attributes: Attributes::new(),
        },
    }];
    owner_call(paths, pass, OwnerCall::Apply { changes })?;
    audited(paths, &record("write", service, &[target], "success"))?;
    crate::outln!(
        "stored {} in {}",
        crate::display::clean(target),
        crate::display::clean(service)
    );
    Ok(())
}

/// `secret rm SERVICE TARGET`.
pub(crate) fn rm(
    paths: &Paths,
    pass: Option<&str>,
    service: &str,
    target: &str,
) -> Result<(), Failure> {
    check_item(service, target)?;
    let call = OwnerCall::Remove {
        service: service.into(),
        target: target.into(),
    };
    let existed = match owner_call(paths, pass, call)? {
        OwnerAnswer::Removed { existed } => existed,
        other => return Err(unexpected(other)),
    };
    if !existed {
        audited(paths, &record("delete", service, &[target], "error"))?;
        return Err(format!("no secret {target:?} in {service:?}").into());
    }
    audited(paths, &record("delete", service, &[target], "success"))?;
    crate::outln!(
        "removed {} from {}",
        crate::display::clean(target),
        crate::display::clean(service)
    );
    Ok(())
}

/// `aws add PROFILE`: the access key pair and an optional session token, stored in one batch
/// where `keychain-auth-aws PROFILE` reads them. Without a terminal, standard input holds the
/// key id, the secret key and optionally the token, one per line.
pub(crate) fn aws_add(paths: &Paths, pass: Option<&str>, profile: &str) -> Result<(), Failure> {
    let [key_t, secret_t, token_t, _] = crate::adapters::aws::targets(profile);
    check_name("target", &token_t, MAX_TARGET_LEN)?;
    let (key, secret, token) = if std::io::stdin().is_terminal() {
        let key = Zeroizing::new(crate::vault_cli::ask_visible("AWS access key id: ")?);
        let secret = crate::vault_cli::ask_hidden("AWS secret access key: ")?;
        let token = crate::vault_cli::ask_hidden("Session token (empty: none): ")?;
        (key, secret, token)
    } else {
        let all = Zeroizing::new(crate::scripts::read_value(&mut std::io::stdin().lock())?);
        let mut lines = all.lines().map(|l| Zeroizing::new(l.trim().to_string()));
        (
            lines.next().unwrap_or_default(),
            lines.next().unwrap_or_default(),
            lines.next().unwrap_or_default(),
        )
    };
    if key.is_empty() || secret.is_empty() {
        return Err(
            "the access key id and the secret access key are both needed; nothing was stored"
                .into(),
        );
    }
    let set = |target: &str, v: &str| Change::Set {
        service: "aws".into(),
        target: target.into(),
        item: Item {
            value: v.into(),
            attributes: Attributes::new(),
        },
    };
    let mut changes = vec![set(&key_t, &key), set(&secret_t, &secret)];
    if token.is_empty() {
        changes.push(Change::Delete {
            service: "aws".into(),
            target: token_t.clone(),
        });
    } else {
        changes.push(set(&token_t, &token));
    }
    owner_call(paths, pass, OwnerCall::Apply { changes })?;
    let mut targets = vec![key_t.as_str(), secret_t.as_str()];
    if !token.is_empty() {
        targets.push(token_t.as_str());
    }
    audited(paths, &record("write", "aws", &targets, "success"))?;
    crate::outln!(
        "stored AWS profile {}; in ~/.aws/config:  credential_process = keychain-auth-aws {}",
        crate::display::clean(profile),
        crate::display::clean(profile)
    );
    Ok(())
}

/// `export --age FILE [--recipient AGE1…]`: every secret (but keychain-auth's own items) as an
/// age-encrypted JSON file in the file store's format (`{"version":1,"items":{service:{target:
/// {"value","attributes"}}}}`), so `age -d FILE > ~/.keychain-auth/keyring.json` restores it as a
/// file store. Encrypted to the recipient given, else to a passphrase asked twice at the
/// terminal (age's scrypt). FILE is created 0600 and never overwritten.
pub(crate) fn export_age(
    paths: &Paths,
    pass: Option<&str>,
    file: &std::path::Path,
    recipient: Option<&str>,
) -> Result<(), Failure> {
    use std::str::FromStr;
    let encryptor = match recipient {
        Some(r) => {
            let r = age::x25519::Recipient::from_str(r)
                .map_err(|e| format!("--recipient {r:?} is not an age recipient (age1…): {e}"))?;
            age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .map_err(|e| format!("age: {e}"))?
        }
        None => {
            let first = crate::vault_cli::ask_hidden("Passphrase for the export: ").map_err(|_| {
                "export --age needs --recipient AGE1… or a terminal to ask for the export's passphrase".to_string()
            })?;
            if *crate::vault_cli::ask_hidden("Again: ")? != *first || first.is_empty() {
                return Err("the two passphrases differ or are empty; nothing was exported".into());
            }
            age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(
                first.to_string(),
            ))
        }
    };
    let OwnerAnswer::Items { items: all } = owner_call(paths, pass, OwnerCall::Dump)? else {
        return Err("the broker gave no items".into());
    };
    let n = all.len();
    let mut items = serde_json::Map::new();
    for (service, target, item) in all {
        let targets = items
            .entry(service)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(t) = targets.as_object_mut() {
            t.insert(
                target,
                serde_json::json!({"value": item.value, "attributes": item.attributes}),
            );
        }
    }
    let plain = Zeroizing::new(serde_json::to_vec(
        &serde_json::json!({"version": 1, "items": items}),
    )?);
    drop(items);
    let out = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(file)
            .map_err(|e| format!("{}: {e} (export never overwrites a file)", file.display()))?
    };
    let written = encryptor
        .wrap_output(&out)
        .and_then(|mut w| {
            w.write_all(&plain)?;
            w.finish()
        })
        .and_then(std::fs::File::sync_all);
    if let Err(e) = written {
        let _ = std::fs::remove_file(file);
        return Err(format!("{}: {e}; nothing was exported", file.display()).into());
    }
    let mut rec = record("export", "*", &[], "success");
    rec.count = Some(n);
    rec.message = Some(format!(
        "{n} item(s) exported, age-encrypted, to {}",
        file.display()
    ));
    audited(paths, &rec)?;
    crate::outln!("exported {n} item(s) to {} (age)", file.display());
    Ok(())
}
