//! Secret Service sessions: how a secret travels over the bus.
//!
//! `plain` sends it as it is (the bus is local and same-user). `dh-ietf1024-sha256-aes128-cbc-pkcs7`
//! (what libsecret and Python's secretstorage try first): a Diffie-Hellman exchange in the
//! 1024-bit MODP group of RFC 2409 (generator 2), the shared secret as 128 big-endian bytes put
//! through HKDF-SHA256 (no salt, no info) to a 16-byte key, and every secret sent as
//! AES-128-CBC with PKCS#7 padding under a fresh random IV. A session belongs to the bus
//! connection that opened it; any other connection using its path gets `NoSession`.

use super::{Front, SecretError};
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use num_bigint::BigUint;
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// The `plain` algorithm.
pub const PLAIN: &str = "plain";
/// The Diffie-Hellman algorithm.
pub const DH: &str = "dh-ietf1024-sha256-aes128-cbc-pkcs7";

/// RFC 2409's second Oakley group (1024-bit MODP), big-endian.
const PRIME: [u8; 128] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x37, 0xED, 0x6B, 0x0B, 0xFF, 0x5C, 0xB6, 0xF4, 0x06, 0xB7, 0xED,
    0xEE, 0x38, 0x6B, 0xFB, 0x5A, 0x89, 0x9F, 0xA5, 0xAE, 0x9F, 0x24, 0x11, 0x7C, 0x4B, 0x1F, 0xE6,
    0x49, 0x28, 0x66, 0x51, 0xEC, 0xE6, 0x53, 0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

/// A session's key: `None` for `plain`.
#[derive(Clone)]
pub struct Keys {
    aes: Option<[u8; 16]>,
}

impl Drop for Keys {
    fn drop(&mut self) {
        if let Some(k) = self.aes.as_mut() {
            k.fill(0);
        }
    }
}

/// The secret as a D-Bus `(oayays)`: session, parameters (the IV), value, content type.
pub type Secret = (OwnedObjectPath, Vec<u8>, Vec<u8>, String);

/// Why a session cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// An algorithm the broker does not speak.
    Unsupported(String),
    /// A public key out of range or of the wrong type.
    BadKey,
}

/// Opens the server side of `algorithm` with the client's `input`: the keys and the output to
/// send back (empty for plain, the server's public key for DH).
pub fn open(algorithm: &str, input: Option<Vec<u8>>) -> Result<(Keys, Option<Vec<u8>>), OpenError> {
    match algorithm {
        PLAIN => Ok((Keys { aes: None }, None)),
        DH => {
            let client = input.ok_or(OpenError::BadKey)?;
            let (key, public) = exchange(&client)?;
            Ok((Keys { aes: Some(key) }, Some(public)))
        }
        other => Err(OpenError::Unsupported(other.to_string())),
    }
}

/// The server half of the exchange: the AES key and the server's public key.
fn exchange(client_public: &[u8]) -> Result<([u8; 16], Vec<u8>), OpenError> {
    let p = BigUint::from_bytes_be(&PRIME);
    let y = BigUint::from_bytes_be(client_public);
    let one = BigUint::from(1u8);
    // 1 < y < p - 1: anything else forces the shared secret to a known value.
    if client_public.len() > PRIME.len() || y <= one || y >= &p - &one {
        return Err(OpenError::BadKey);
    }
    let mut private = [0u8; 128];
    getrandom::fill(&mut private).map_err(|_| OpenError::BadKey)?;
    let x = BigUint::from_bytes_be(&private);
    private.fill(0);
    let public = BigUint::from(2u8).modpow(&x, &p).to_bytes_be();
    let shared = y.modpow(&x, &p).to_bytes_be();
    let mut ikm = vec![0u8; PRIME.len() - shared.len()];
    ikm.extend_from_slice(&shared);
    let mut key = [0u8; 16];
    let (_, hk) = hkdf::Hkdf::<sha2::Sha256>::extract(None, &ikm);
    hk.expand(&[], &mut key).map_err(|_| OpenError::BadKey)?;
    ikm.fill(0);
    Ok((key, public))
}

impl Keys {
    /// `value` as sent in a secret: the IV (empty for plain) and the bytes.
    pub fn seal(&self, value: &[u8]) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let Some(key) = &self.aes else {
            return Ok((Vec::new(), value.to_vec()));
        };
        let mut iv = [0u8; 16];
        getrandom::fill(&mut iv).map_err(|e| SecretError::Failed(format!("no randomness: {e}")))?;
        let enc = Enc::new_from_slices(key, &iv)
            .map_err(|_| SecretError::Failed("bad session key".into()))?;
        Ok((iv.to_vec(), enc.encrypt_padded_vec::<Pkcs7>(value)))
    }

    /// The bytes of a secret a client sent.
    pub fn open(&self, iv: &[u8], value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let Some(key) = &self.aes else {
            return Ok(value.to_vec());
        };
        let dec = Dec::new_from_slices(key, iv).map_err(|_| {
            SecretError::InvalidArgs("the secret's parameters are not a 16-byte IV".into())
        })?;
        dec.decrypt_padded_vec::<Pkcs7>(value)
            .map_err(|_| SecretError::InvalidArgs("the secret does not decrypt".into()))
    }
}

/// The `org.freedesktop.Secret.Session` object.
pub struct SessionObject {
    /// The front end.
    pub front: Arc<Front>,
}

#[zbus::interface(name = "org.freedesktop.Secret.Session")]
impl SessionObject {
    /// Closes the session (only its owner may).
    async fn close(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<(), SecretError> {
        let path = hdr
            .path()
            .map(|p| OwnedObjectPath::from(p.clone()))
            .ok_or_else(|| SecretError::NoSession("no session path".into()))?;
        let sender = hdr.sender().map(ToString::to_string).unwrap_or_default();
        if self.front.close_session(&path, &sender) {
            let _ = server
                .remove::<SessionObject, _>(ObjectPath::from(&path))
                .await;
            Ok(())
        } else {
            Err(SecretError::NoSession(format!(
                "{} is not your session",
                path.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side as libsecret and secretstorage compute it.
    fn client_key(private: &BigUint, server_public: &[u8]) -> [u8; 16] {
        let p = BigUint::from_bytes_be(&PRIME);
        let shared = BigUint::from_bytes_be(server_public)
            .modpow(private, &p)
            .to_bytes_be();
        let mut ikm = vec![0u8; 128 - shared.len()];
        ikm.extend_from_slice(&shared);
        let mut key = [0u8; 16];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &ikm)
            .expand(&[], &mut key)
            .unwrap();
        key
    }

    #[test]
    fn dh_agrees_with_a_client_and_secrets_round_trip() {
        let p = BigUint::from_bytes_be(&PRIME);
        let private = BigUint::from_bytes_be(&[7u8; 64]);
        let public = BigUint::from(2u8).modpow(&private, &p).to_bytes_be();
        let (keys, out) = open(DH, Some(public)).unwrap();
        let server_public = out.unwrap();
        let key = client_key(&private, &server_public);
        assert_eq!(keys.aes, Some(key));
        let (iv, sealed) = keys.seal(b"hunter2").unwrap();
        assert_eq!(iv.len(), 16);
        assert_ne!(&sealed[..], b"hunter2");
        assert_eq!(sealed.len() % 16, 0);
        let client = Keys { aes: Some(key) };
        assert_eq!(client.open(&iv, &sealed).unwrap(), b"hunter2");
        assert!(client.open(&iv, &sealed[..15]).is_err());
    }

    #[test]
    fn degenerate_keys_and_unknown_algorithms_are_refused() {
        for bad in [vec![], vec![1], PRIME.to_vec(), vec![0xFF; 129]] {
            assert_eq!(open(DH, Some(bad)).err(), Some(OpenError::BadKey));
        }
        assert!(matches!(
            open("dh-ietf2048", None),
            Err(OpenError::Unsupported(_))
        ));
        let (plain, out) = open(PLAIN, None).unwrap();
        assert!(out.is_none());
        assert_eq!(plain.seal(b"v").unwrap(), (vec![], b"v".to_vec()));
    }
}
