//! Key slots: the vault key wrapped under a key derived from the passphrase.
//!
//! A passphrase slot runs Argon2id (memory-hard: a guess costs its full memory and time on any
//! hardware) over the passphrase and a random salt, and uses the 32-byte result to wrap the
//! vault key with XChaCha20-Poly1305. The associated data binds the wrapped key to the vault's
//! id and the exact KDF parameters, so a slot cannot be moved to another vault or given other
//! parameters. A wrong passphrase fails the tag check; nothing distinguishes it from a damaged
//! slot, and nothing about the passphrase is stored.
//!
//! Creation calibrates the cost to about one second on this machine ([`Cost::Calibrated`]).
//! [`Cost::Floor`] writes the floor of the load-time bounds instead (see
//! [`super::format::FLOOR`]); it exists so that tests can create vaults quickly and never
//! weakens a vault it did not create: the bounds are checked on every load, the wrapped key
//! only opens with the parameters it was wrapped under, and re-wrapping (a passphrase change)
//! needs the vault key.

use super::format::{FLOOR, KdfParams, Slot};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::time::{Duration, Instant};
use zeroize::{Zeroize, Zeroizing};

/// How expensive a new passphrase slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// 64 MiB and as many passes as take about `target` here (at least the floor's 2).
    Calibrated(Duration),
    /// The floor the load-time bounds accept (tests; `KEYCHAIN_AUTH_VAULT_KDF=floor` at `init`).
    Floor,
}

/// The memory a calibrated slot uses (64 MiB).
pub const CALIBRATED_M_KIB: u32 = 64 * 1024;

/// Why a slot could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Wrong passphrase (or a damaged slot: the two cannot be told apart).
    #[error("wrong passphrase")]
    Wrong,
    /// The KDF refused the parameters (never for checked ones).
    #[error("the key derivation failed: {0}")]
    Kdf(String),
    /// No random bytes.
    #[error("the OS gave no random bytes: {0}")]
    Random(String),
}

/// Fills `buf` from the OS.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), SlotError> {
    getrandom::fill(buf).map_err(|e| SlotError::Random(e.to_string()))
}

/// The 32-byte wrapping key for `passphrase` under `params` (already bounds-checked).
fn derive(passphrase: &[u8], params: &KdfParams) -> Result<Zeroizing<[u8; 32]>, SlotError> {
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| SlotError::Kdf(e.to_string()))?;
    let salt = hex::decode(&params.salt).map_err(|e| SlotError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &salt, out.as_mut())
        .map_err(|e| SlotError::Kdf(e.to_string()))?;
    Ok(out)
}

fn params_with(m_kib: u32, t: u32, p: u32) -> Result<KdfParams, SlotError> {
    let mut salt = [0u8; 32];
    random(&mut salt)?;
    Ok(KdfParams {
        algorithm: "argon2id".into(),
        version: 0x13,
        m_kib,
        t,
        p,
        salt: hex::encode(salt),
    })
}

/// Chooses the parameters for a new slot.
pub fn choose(cost: Cost) -> Result<KdfParams, SlotError> {
    let (m0, t0, p0) = FLOOR;
    match cost {
        Cost::Floor => params_with(m0, t0, p0),
        Cost::Calibrated(target) => {
            // One timed run at the minimum passes gives the time per pass here.
            let probe = params_with(CALIBRATED_M_KIB, t0, 1)?;
            let started = Instant::now();
            derive(b"calibration", &probe)?;
            let per_pass = (started.elapsed() / t0).max(Duration::from_millis(1));
            let passes = (target.as_secs_f64() / per_pass.as_secs_f64()).round();
            // Clamped into the bounds: a slow machine keeps the floor's passes.
            let t = (passes as u32).clamp(t0, super::format::MAX_T);
            params_with(CALIBRATED_M_KIB, t, 1)
        }
    }
}

fn aad(vault_id: &str, params: &KdfParams) -> Vec<u8> {
    format!(
        "keychain-auth vault slot v1|{vault_id}|{}",
        params.canonical()
    )
    .into_bytes()
}

/// A passphrase slot wrapping `vault_key` for the vault `vault_id`.
pub fn wrap(
    vault_id: &str,
    passphrase: &[u8],
    params: KdfParams,
    vault_key: &[u8; 32],
) -> Result<Slot, SlotError> {
    let kek = derive(passphrase, &params)?;
    let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*kek));
    let mut nonce = [0u8; 24];
    random(&mut nonce)?;
    let aad = aad(vault_id, &params);
    let wrapped = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: vault_key,
                aad: &aad,
            },
        )
        .map_err(|_| SlotError::Kdf("encryption failed".into()))?;
    Ok(Slot {
        kind: "passphrase".into(),
        kdf: params,
        nonce: hex::encode(nonce),
        wrapped: hex::encode(wrapped),
    })
}

/// The vault key from `slot` with `passphrase`; [`SlotError::Wrong`] otherwise. The slot's
/// parameters must have passed [`KdfParams::check`] (parsing does that).
pub fn unwrap(
    vault_id: &str,
    slot: &Slot,
    passphrase: &[u8],
) -> Result<Zeroizing<[u8; 32]>, SlotError> {
    let kek = derive(passphrase, &slot.kdf)?;
    let mut nonce = [0u8; 24];
    hex::decode_to_slice(&slot.nonce, &mut nonce).map_err(|_| SlotError::Wrong)?;
    let wrapped = hex::decode(&slot.wrapped).map_err(|_| SlotError::Wrong)?;
    let cipher = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*kek));
    let aad = aad(vault_id, &slot.kdf);
    let mut plain = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &wrapped,
                aad: &aad,
            },
        )
        .map_err(|_| SlotError::Wrong)?;
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        plain.zeroize();
        return Err(SlotError::Wrong);
    }
    key.copy_from_slice(&plain);
    plain.zeroize();
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_passphrase_unwraps_and_nothing_else_does() {
        let key = [9u8; 32];
        let id = "11".repeat(16);
        let slot = wrap(&id, b"correct horse", choose(Cost::Floor).unwrap(), &key).unwrap();
        assert_eq!(*unwrap(&id, &slot, b"correct horse").unwrap(), key);
        assert_eq!(unwrap(&id, &slot, b"correct hors"), Err(SlotError::Wrong));
        // Bound to the vault and to the parameters.
        assert_eq!(
            unwrap(&"22".repeat(16), &slot, b"correct horse"),
            Err(SlotError::Wrong)
        );
        let mut more = slot.clone();
        more.kdf.t += 1;
        assert_eq!(unwrap(&id, &more, b"correct horse"), Err(SlotError::Wrong));
        let mut flipped = slot.clone();
        flipped.wrapped.replace_range(0..2, "00");
        if flipped.wrapped != slot.wrapped {
            assert_eq!(
                unwrap(&id, &flipped, b"correct horse"),
                Err(SlotError::Wrong)
            );
        }
        assert!(!slot.wrapped.contains(&hex::encode(key)));
    }

    #[test]
    fn the_floor_is_inside_the_bounds() {
        let p = choose(Cost::Floor).unwrap();
        assert_eq!((p.m_kib, p.t, p.p), FLOOR);
        assert!(p.check().is_ok());
        assert_ne!(p.salt, choose(Cost::Floor).unwrap().salt, "fresh salt");
    }
}
