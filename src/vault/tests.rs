//! The vault format attacked directly: wrong passphrases, altered bytes, moved records,
//! parameters out of bounds, rollback, and interrupted writes.

use super::format::{self, FLOOR};
use super::io::{FileError, VaultFile};
use super::records::{self, Sub};
use super::slots::Cost;
use super::*;

fn item(v: &str, attrs: &[(&str, &str)]) -> Item {
    Item {
        value: v.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

/// A vault file with two records, written through the real file path.
fn sample(dir: &std::path::Path) -> (VaultFile, Vault, crate::fsutil::FileStamp) {
    let f = VaultFile::new(&dir.join("kv").join("vault"));
    let (mut v, mut stamp) = f.create(b"pass phrase", Cost::Floor).unwrap();
    f.commit(&mut v, &mut stamp, |v| {
        v.set(
            "aws",
            "prod/access_key_id",
            &item("AKIAVERYSECRETVALUE", &[("environment", "production")]),
        )?;
        v.set(
            "git",
            "https://github.com",
            &item("ghp_tokentokentoken", &[]),
        )
    })
    .unwrap();
    (f, v, stamp)
}

/// Rewrites the body with `edit` and re-MACs it with the real file key, as only someone holding
/// the vault key could: used to show that the per-record AEAD holds on its own.
fn remac(v: &Vault, bytes: &[u8], edit: impl FnOnce(&mut format::Body)) -> Vec<u8> {
    let mut parsed = format::parse(bytes).unwrap();
    edit(&mut parsed.body);
    let body = serde_json::to_vec(&parsed.body).unwrap();
    let mac = records::mac(&v.keys.bytes()[Sub::File.range()], &[&body]);
    format::assemble(&body, &mac)
}

#[test]
fn values_names_and_attributes_are_not_in_the_file() {
    let t = tempfile::tempdir().unwrap();
    let (f, _, _) = sample(t.path());
    let text = String::from_utf8(std::fs::read(f.path()).unwrap()).unwrap();
    for plain in [
        "AKIAVERYSECRETVALUE",
        "prod/access_key_id",
        "aws",
        "github",
        "ghp_tokentokentoken",
        "environment",
        "production",
    ] {
        assert!(!text.contains(plain), "{plain} is in the file");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(f.path()), 0o600);
    assert_eq!(mode(f.path().parent().unwrap()), 0o700);
}

#[test]
fn the_passphrase_opens_it_and_a_wrong_one_does_not() {
    let t = tempfile::tempdir().unwrap();
    let (f, _, _) = sample(t.path());
    let (v, _) = f.unlock(b"pass phrase").unwrap();
    assert_eq!(
        v.get("aws", "prod/access_key_id").unwrap().unwrap(),
        item("AKIAVERYSECRETVALUE", &[("environment", "production")])
    );
    assert_eq!(v.list("git", "https", &Attributes::new()).len(), 1);
    assert_eq!(v.services(), vec!["aws".to_string(), "git".to_string()]);
    for wrong in [&b"pass phrasE"[..], b"", b"pass phrase "] {
        assert!(matches!(
            f.unlock(wrong),
            Err(FileError::Vault {
                source: VaultError::WrongPassphrase,
                ..
            })
        ));
    }
}

#[test]
fn any_altered_byte_of_the_body_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (f, _, _) = sample(t.path());
    let bytes = std::fs::read(f.path()).unwrap();
    let body_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // The generation (header), a record's ciphertext, a record's id.
    let parsed = format::parse(&bytes).unwrap();
    let gen_edit = text.replacen(
        &format!("\"generation\":{}", parsed.body.generation),
        &format!("\"generation\":{}", parsed.body.generation + 5),
        1,
    );
    let ct = &parsed.body.records[0].ct;
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { "1" } else { "0" },
        &ct[1..]
    );
    let ct_edit = text.replacen(ct.as_str(), &flipped, 1);
    let id = &parsed.body.records[1].id;
    let id_edit = text.replacen(id.as_str(), &"ab".repeat(32), 1);
    // One record removed (the body stays valid JSON).
    let mut fewer = parsed.body.clone();
    fewer.records.pop();
    let mut removed = serde_json::to_vec(&fewer).unwrap();
    removed.extend_from_slice(&bytes[body_end..]);
    for edited in [
        gen_edit.into_bytes(),
        ct_edit.into_bytes(),
        id_edit.into_bytes(),
        removed,
    ] {
        assert_ne!(edited, bytes);
        assert!(matches!(
            Vault::unlock(&edited, b"pass phrase"),
            Err(VaultError::Tampered)
        ));
    }
}

#[test]
fn a_record_moved_onto_another_target_does_not_open_even_with_a_valid_file_mac() {
    let t = tempfile::tempdir().unwrap();
    let (f, v, _) = sample(t.path());
    let bytes = std::fs::read(f.path()).unwrap();
    // Swap the two records' ciphertexts (and nonces), keeping each id: the associated data
    // (vault id, record id) no longer matches.
    let swapped = remac(&v, &bytes, |b| {
        let (a, c) = (b.records[0].clone(), b.records[1].clone());
        b.records[0].ct = c.ct;
        b.records[0].nonce = c.nonce;
        b.records[1].ct = a.ct;
        b.records[1].nonce = a.nonce;
    });
    assert!(matches!(
        Vault::unlock(&swapped, b"pass phrase"),
        Err(VaultError::Record(_))
    ));
    // A record copied into another vault (same passphrase, another key and id) does not open.
    let other = VaultFile::new(&t.path().join("other").join("vault"));
    let (ov, _) = other.create(b"pass phrase", Cost::Floor).unwrap();
    let obytes = std::fs::read(other.path()).unwrap();
    let rec = format::parse(&bytes).unwrap().body.records[0].clone();
    let moved = remac(&ov, &obytes, |b| b.records.push(rec));
    assert!(matches!(
        Vault::unlock(&moved, b"pass phrase"),
        Err(VaultError::Record(_))
    ));
    // The control: re-MACed without a change, it opens.
    let same = remac(&v, &bytes, |_| {});
    assert!(Vault::unlock(&same, b"pass phrase").is_ok());
}

#[test]
fn out_of_bounds_parameters_are_refused_before_any_key_derivation() {
    let t = tempfile::tempdir().unwrap();
    let (f, _, _) = sample(t.path());
    let bytes = std::fs::read(f.path()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let m = format!("\"m_kib\":{}", FLOOR.0);
    for (from, to) in [
        (m.clone(), "\"m_kib\":4194304".to_string()),
        (m.clone(), "\"m_kib\":8".to_string()),
        (format!("\"t\":{}", FLOOR.1), "\"t\":1000000".to_string()),
        (format!("\"t\":{}", FLOOR.1), "\"t\":1".to_string()),
        (format!("\"p\":{}", FLOOR.2), "\"p\":255".to_string()),
        ("\"argon2id\"".into(), "\"argon2i\"".into()),
    ] {
        let edited = text.replacen(&from, &to, 1);
        assert_ne!(edited, text, "{from}");
        let started = std::time::Instant::now();
        let err = Vault::unlock(edited.as_bytes(), b"pass phrase").unwrap_err();
        assert!(
            matches!(err, VaultError::Format(format::FormatError::Bounds(_))),
            "{to}: {err}"
        );
        // Refused from the header alone: a 4 GiB or million-pass KDF never ran.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

#[test]
fn every_write_takes_the_next_generation_and_an_older_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (f, mut v, mut stamp) = sample(t.path());
    let g = v.generation();
    assert_eq!(g, 2, "created, then one commit");
    let old = std::fs::read(f.path()).unwrap();
    f.commit(&mut v, &mut stamp, |v| {
        Ok::<_, VaultError>(v.delete("git", "https://github.com"))
    })
    .unwrap();
    assert_eq!(v.generation(), g + 1);
    assert_eq!(
        format::parse(&std::fs::read(f.path()).unwrap())
            .unwrap()
            .body
            .generation,
        g + 1
    );
    // Another process (or an attacker) puts the older copy back: refused by the holder.
    assert!(matches!(
        v.reload(&old),
        Err(VaultError::Rollback { seen, found }) if seen == g + 1 && found == g
    ));
    crate::fsutil::write_atomic(f.path(), &old).unwrap();
    let err = f
        .commit(&mut v, &mut stamp, |v| {
            Ok::<_, VaultError>(v.delete("aws", "x"))
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("went back from generation"),
        "{err}"
    );
    // A change written by another holder of the key is picked up before the next write.
    crate::fsutil::write_atomic(f.path(), &v.next_generation_bytes().unwrap()).unwrap();
    let (mut other, mut other_stamp) = f.unlock(b"pass phrase").unwrap();
    f.commit(&mut other, &mut other_stamp, |o| {
        o.set("npm", "token", &item("npm_x", &[]))
    })
    .unwrap();
    f.commit(&mut v, &mut stamp, |v| {
        v.set("pypi", "token", &item("pypi_x", &[]))
    })
    .unwrap();
    let (fresh, _) = f.unlock(b"pass phrase").unwrap();
    assert!(fresh.get("npm", "token").unwrap().is_some());
    assert!(fresh.get("pypi", "token").unwrap().is_some());
}

#[test]
fn a_write_is_never_torn_and_a_failed_change_leaves_memory_and_file_as_they_were() {
    let t = tempfile::tempdir().unwrap();
    let (f, mut v, mut stamp) = sample(t.path());
    let before = std::fs::read(f.path()).unwrap();
    // The change fails half-way: nothing is written, memory is restored.
    let err = f
        .commit(&mut v, &mut stamp, |v| {
            v.set("aws", "half", &item("x", &[]))?;
            Err::<(), _>(VaultError::Tampered)
        })
        .unwrap_err();
    assert!(matches!(err, FileError::Vault { .. }));
    assert!(v.get("aws", "half").unwrap().is_none());
    assert_eq!(std::fs::read(f.path()).unwrap(), before);
    // A torn file (any prefix of a vault, as a crash inside a non-atomic write would leave) is
    // refused whole, never read as a smaller vault.
    for cut in [0, 10, before.len() / 2, before.len() - 70, before.len() - 1] {
        assert!(
            Vault::unlock(&before[..cut], b"pass phrase").is_err(),
            "{cut}"
        );
    }
    // The write path replaces the file atomically: a half-written temp file beside it (a
    // crash mid-write) changes nothing, and the next write is whole.
    let dir = f.path().parent().unwrap();
    std::fs::write(dir.join(".vault.tmp-crashed"), &before[..before.len() / 2]).unwrap();
    let (mut again, mut again_stamp) = f.unlock(b"pass phrase").unwrap();
    f.commit(&mut again, &mut again_stamp, |v| {
        v.set("aws", "after", &item("y", &[]))
    })
    .unwrap();
    let (reopened, _) = f.unlock(b"pass phrase").unwrap();
    assert_eq!(reopened.count(), 3);
}

#[test]
fn a_changed_passphrase_replaces_the_old_one() {
    let t = tempfile::tempdir().unwrap();
    let (f, mut v, mut stamp) = sample(t.path());
    f.commit(&mut v, &mut stamp, |v| {
        v.change_passphrase(b"new one", Cost::Floor)
    })
    .unwrap();
    assert!(f.unlock(b"pass phrase").is_err());
    let (v2, _) = f.unlock(b"new one").unwrap();
    assert_eq!(v2.count(), 2);
    // Same vault key: the audit key does not change with the passphrase.
    assert_eq!(v2.audit_key().mac(&[b"x"]), v.audit_key().mac(&[b"x"]));
}

#[test]
fn creating_over_an_existing_vault_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (f, _, _) = sample(t.path());
    assert!(matches!(
        f.create(b"other", Cost::Floor),
        Err(FileError::Exists(_))
    ));
    assert!(f.unlock(b"pass phrase").is_ok());
}

#[test]
fn calibration_stays_inside_the_bounds() {
    let p = slots::choose(Cost::Calibrated(std::time::Duration::from_millis(50))).unwrap();
    assert!(p.check().is_ok(), "{p:?}");
    assert_eq!(p.m_kib, slots::CALIBRATED_M_KIB);
}
