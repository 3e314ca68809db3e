use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use aes_gcm::{Aes256Gcm, Key};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{b64, random, CryptoError};

/// Length of every key in this crate: AES-256.
pub const KEY_LEN: usize = 32;

/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// AAD of every wrapped data key: keeps a master key's ciphertexts apart from any other use of it.
const WRAP_AAD: &[u8] = b"monkeyci/data-key/v1";

/// 32 bytes of key material on the heap, so that moving a key copies a pointer rather than the bytes,
/// zeroed when dropped.
struct KeyBytes(Box<Zeroizing<[u8; KEY_LEN]>>);

impl KeyBytes {
    fn zeroed() -> Self {
        Self(Box::new(Zeroizing::new([0; KEY_LEN])))
    }

    fn random() -> Result<Self, CryptoError> {
        let mut key = Self::zeroed();
        random::fill(&mut key.0[..])?;
        Ok(key)
    }

    fn cipher(&self) -> Aes256Gcm {
        let key: &Key<Aes256Gcm> = (&**self.0).into();
        Aes256Gcm::new(key)
    }
}

/// Encrypts `plaintext` under `cipher` with a fresh random nonce.
fn encrypt(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let mut nonce = [0; NONCE_LEN];
    random::fill(&mut nonce)?;
    let ciphertext = cipher
        .encrypt(&Nonce::<Aes256Gcm>::from(nonce), Payload { msg: plaintext, aad })
        .map_err(|_| CryptoError::Encrypt)?;
    Ok((nonce, ciphertext))
}

/// Decrypts and authenticates; `None` if the key, the AAD or the data is wrong.
fn decrypt(cipher: &Aes256Gcm, nonce: &[u8; NONCE_LEN], ciphertext: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    cipher
        .decrypt(&Nonce::<Aes256Gcm>::from(*nonce), Payload { msg: ciphertext, aad })
        .ok()
        .map(Zeroizing::new)
}

/// A key-encryption key from the server's configuration: it wraps [`DataKey`]s and nothing else.
///
/// Its id is recorded in every [`WrappedKey`] so that, during a rotation, the keyring knows which key
/// unwraps what. `Debug` shows only the id; the bytes are zeroed when the key is dropped.
pub struct MasterKey {
    id: String,
    bytes: KeyBytes,
}

impl MasterKey {
    /// Parses a key from standard base64 (44 characters with padding; surrounding whitespace is ignored).
    ///
    /// Its id is the first 8 hex digits of the SHA-256 of the key bytes; see [`MasterKey::with_id`].
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim().as_bytes())
                .map_err(|_| CryptoError::MasterKeyNotBase64)?,
        );
        if decoded.len() != KEY_LEN {
            return Err(CryptoError::MasterKeyLength { len: decoded.len() });
        }
        let mut bytes = KeyBytes::zeroed();
        bytes.0.copy_from_slice(&decoded);
        let id = hex::encode(&Sha256::digest(&bytes.0[..])[..4]);
        Ok(Self { id, bytes })
    }

    /// A new random key in standard base64, as [`MasterKey::from_base64`] reads it.
    pub fn generate_base64() -> Result<String, CryptoError> {
        let mut bytes = KeyBytes::zeroed();
        crate::random::fill(&mut bytes.0[..])?;
        Ok(STANDARD.encode(&bytes.0[..]))
    }

    /// Replaces the derived id with a configured one (1 to 64 characters of `A-Za-z0-9._-`).
    pub fn with_id(mut self, id: &str) -> Result<Self, CryptoError> {
        let valid = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(CryptoError::InvalidKeyId);
        }
        self.id = id.to_owned();
        Ok(self)
    }

    /// The id recorded in the keys this key wraps.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for MasterKey {
    type Err = CryptoError;

    fn from_str(text: &str) -> Result<Self, CryptoError> {
        Self::from_base64(text)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The server's master keys: the current one, which wraps, and older ones, which only unwrap.
///
/// Rotation: configure the new key as current and the old one as previous, [`rewrap`](Self::rewrap)
/// every stored [`WrappedKey`] for which [`needs_rewrap`](Self::needs_rewrap) holds, then drop the old key.
#[derive(Debug)]
pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// A keyring that wraps with `current` and also unwraps with `previous`; ids must be distinct.
    pub fn new(current: MasterKey, previous: impl IntoIterator<Item = MasterKey>) -> Result<Self, CryptoError> {
        let previous: Vec<MasterKey> = previous.into_iter().collect();
        for (i, key) in previous.iter().enumerate() {
            if key.id == current.id || previous[..i].iter().any(|k| k.id == key.id) {
                return Err(CryptoError::DuplicateKeyId { id: key.id.clone() });
            }
        }
        Ok(Self { current, previous })
    }

    /// The id of the key that [`wrap`](Self::wrap) uses.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Whether `wrapped` is under an older key than the current one, and so due for [`rewrap`](Self::rewrap).
    pub fn needs_rewrap(&self, wrapped: &WrappedKey) -> bool {
        wrapped.master_key_id != self.current.id
    }

    /// Encrypts `key` under the current master key.
    pub fn wrap(&self, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        let (nonce, ciphertext) = encrypt(&self.current.bytes.cipher(), &key.bytes.0[..], WRAP_AAD)?;
        Ok(WrappedKey {
            master_key_id: self.current.id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a wrapped key with the master key it names.
    pub fn unwrap(&self, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
        let id = &wrapped.master_key_id;
        let master = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| &key.id == id)
            .ok_or_else(|| CryptoError::UnknownMasterKey { id: id.clone() })?;
        let plain = decrypt(&master.bytes.cipher(), &wrapped.nonce, &wrapped.ciphertext, WRAP_AAD)
            .filter(|plain| plain.len() == KEY_LEN)
            .ok_or_else(|| CryptoError::Unwrap { id: id.clone() })?;
        let mut bytes = KeyBytes::zeroed();
        bytes.0.copy_from_slice(&plain);
        Ok(DataKey { bytes })
    }

    /// Unwraps with whichever configured key wrapped it and wraps again under the current key.
    pub fn rewrap(&self, wrapped: &WrappedKey) -> Result<WrappedKey, CryptoError> {
        self.wrap(&self.unwrap(wrapped)?)
    }
}

/// A random key that encrypts the secrets of one aggregate (one parameter set, one ssh key).
///
/// It is stored only as a [`WrappedKey`]; forgetting the wrapped key makes everything sealed with it
/// unreadable, which is how deleting a parameter set destroys its values (crypto-shredding).
/// `Debug` shows nothing of it; the bytes are zeroed when it is dropped.
pub struct DataKey {
    bytes: KeyBytes,
}

impl DataKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self {
            bytes: KeyBytes::random()?,
        })
    }

    /// Encrypts `plaintext` with a fresh random nonce, bound to `aad`.
    ///
    /// `aad` names where the value belongs (e.g. `paramset:<id>:<name>`): it is not stored, and
    /// [`open`](Self::open) succeeds only with the same bytes, so a sealed value copied to another
    /// parameter does not open. Make it unambiguous: fixed fields first, at most one free-form field, last.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let (nonce, ciphertext) = encrypt(&self.bytes.cipher(), plaintext, aad)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Decrypts a value sealed by this key with the same `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        decrypt(&self.bytes.cipher(), &sealed.nonce, &sealed.ciphertext, aad).ok_or(CryptoError::Open)
    }

    /// [`open`](Self::open) for a value that was text.
    pub fn open_str(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<String>, CryptoError> {
        let mut bytes = self.open(sealed, aad)?;
        match String::from_utf8(std::mem::take(&mut *bytes)) {
            Ok(text) => Ok(Zeroizing::new(text)),
            Err(err) => {
                drop(Zeroizing::new(err.into_bytes()));
                Err(CryptoError::NotUtf8)
            }
        }
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").finish_non_exhaustive()
    }
}

/// A [`DataKey`] encrypted under a master key: safe to store in events and read models.
///
/// In JSON the byte fields are standard base64 strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    /// The id of the master key that wrapped it.
    pub master_key_id: String,
    /// The AES-GCM nonce.
    #[serde(with = "b64::array")]
    pub nonce: [u8; NONCE_LEN],
    /// The encrypted key followed by the 16-byte authentication tag.
    #[serde(with = "b64::vec")]
    pub ciphertext: Vec<u8>,
}

/// A value encrypted with a [`DataKey`]: safe to store in events and read models.
///
/// In JSON the byte fields are standard base64 strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The AES-GCM nonce.
    #[serde(with = "b64::array")]
    pub nonce: [u8; NONCE_LEN],
    /// The encrypted value followed by the 16-byte authentication tag.
    #[serde(with = "b64::vec")]
    pub ciphertext: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn key(text: &str) -> MasterKey {
        MasterKey::from_base64(text).expect("valid key")
    }

    fn keyring(text: &str) -> MasterKeys {
        MasterKeys::new(key(text), []).expect("one key")
    }

    fn data_key() -> DataKey {
        DataKey::generate().expect("random")
    }

    #[test]
    fn master_key_id_is_the_start_of_the_sha256_of_the_key() {
        let key = key(KEY_A);
        let digest = Sha256::digest((0..32).collect::<Vec<u8>>());
        assert_eq!(key.id(), hex::encode(&digest[..4]));
        assert_eq!(key.id().len(), 8);
    }

    #[test]
    fn master_key_parsing_accepts_surrounding_whitespace_and_from_str() {
        let key: MasterKey = format!("  {KEY_A}\n").parse().expect("valid");
        assert_eq!(key.id(), self::key(KEY_A).id());
    }

    #[test]
    fn master_key_parsing_refuses_invalid_base64_without_echoing_it() {
        let err = MasterKey::from_base64("not base64 at all!").expect_err("invalid");
        assert!(matches!(err, CryptoError::MasterKeyNotBase64));
        assert!(!err.to_string().contains("not base64 at all"));
    }

    #[test]
    fn master_key_parsing_refuses_wrong_lengths() {
        let short = STANDARD.encode([7u8; 16]);
        let err = MasterKey::from_base64(&short).expect_err("16 bytes");
        assert!(matches!(err, CryptoError::MasterKeyLength { len: 16 }));
        assert_eq!(err.to_string(), "invalid master key: decodes to 16 bytes, expected 32");

        let long = STANDARD.encode([7u8; 33]);
        assert!(matches!(
            MasterKey::from_base64(&long),
            Err(CryptoError::MasterKeyLength { len: 33 })
        ));
        assert!(matches!(
            MasterKey::from_base64(""),
            Err(CryptoError::MasterKeyLength { len: 0 })
        ));
    }

    #[test]
    fn master_key_parsing_refuses_unpadded_and_url_safe_base64() {
        let unpadded = KEY_A.trim_end_matches('=');
        assert!(matches!(
            MasterKey::from_base64(unpadded),
            Err(CryptoError::MasterKeyNotBase64)
        ));
        let url_safe = "-_8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(matches!(
            MasterKey::from_base64(url_safe),
            Err(CryptoError::MasterKeyNotBase64)
        ));
    }

    #[test]
    fn configured_ids_are_validated() {
        assert_eq!(
            key(KEY_A).with_id("2025-01.primary").expect("valid").id(),
            "2025-01.primary"
        );
        for bad in ["", "has space", "slash/", &"x".repeat(65)] {
            assert!(
                matches!(key(KEY_A).with_id(bad), Err(CryptoError::InvalidKeyId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_output_shows_no_key_bytes() {
        let master = key(KEY_A);
        let keys = MasterKeys::new(key(KEY_B), [key(KEY_A)]).expect("distinct");
        let data = data_key();
        let printed = format!("{master:?} {keys:?} {data:?} {master:#?} {data:#?}");
        assert!(printed.contains(master.id()), "{printed}");
        assert!(!printed.contains(KEY_A) && !printed.contains(KEY_B), "{printed}");
        // The bytes of KEY_A are 0, 1, 2, …: a byte list would show "1, 2, 3".
        assert!(!printed.contains("1, 2, 3"), "{printed}");
        let data_hex = hex::encode(&data.bytes.0[..]);
        let data_list = format!("{:?}", &data.bytes.0[..4]);
        assert!(!printed.contains(&data_hex) && !printed.contains(&data_list[1..data_list.len() - 1]));
    }

    #[test]
    fn keyring_refuses_duplicate_ids() {
        let err = MasterKeys::new(key(KEY_A), [key(KEY_A)]).expect_err("same key twice");
        assert!(matches!(&err, CryptoError::DuplicateKeyId { id } if id == key(KEY_A).id()));

        let b1 = key(KEY_B).with_id("b").expect("valid");
        let b2 = key(KEY_A).with_id("b").expect("valid");
        assert!(matches!(
            MasterKeys::new(key(KEY_A), [b1, b2]),
            Err(CryptoError::DuplicateKeyId { .. })
        ));
    }

    #[test]
    fn wrap_and_unwrap_round_trip() {
        let keys = keyring(KEY_A);
        let data = data_key();
        let wrapped = keys.wrap(&data).expect("wrap");
        assert_eq!(wrapped.master_key_id, keys.current_id());
        assert_eq!(wrapped.ciphertext.len(), KEY_LEN + 16);
        assert_ne!(&wrapped.ciphertext[..KEY_LEN], &data.bytes.0[..]);

        let unwrapped = keys.unwrap(&wrapped).expect("unwrap");
        assert_eq!(&unwrapped.bytes.0[..], &data.bytes.0[..]);
    }

    #[test]
    fn unwrap_with_another_master_key_fails() {
        let wrapped = keyring(KEY_A).wrap(&data_key()).expect("wrap");

        let err = keyring(KEY_B).unwrap(&wrapped).expect_err("unknown id");
        assert!(matches!(&err, CryptoError::UnknownMasterKey { id } if *id == wrapped.master_key_id));
        assert!(err.to_string().contains(&wrapped.master_key_id), "{err}");

        // Same id, other bytes: a misconfigured key is caught by authentication.
        let impostor =
            MasterKeys::new(key(KEY_B).with_id(&wrapped.master_key_id).expect("valid"), []).expect("one key");
        assert!(matches!(impostor.unwrap(&wrapped), Err(CryptoError::Unwrap { .. })));
    }

    #[test]
    fn tampered_wrapped_keys_fail() {
        let keys = keyring(KEY_A);
        let wrapped = keys.wrap(&data_key()).expect("wrap");

        let mut flipped = wrapped.clone();
        flipped.ciphertext[3] ^= 1;
        assert!(matches!(keys.unwrap(&flipped), Err(CryptoError::Unwrap { .. })));

        let mut renonced = wrapped.clone();
        renonced.nonce[0] ^= 1;
        assert!(matches!(keys.unwrap(&renonced), Err(CryptoError::Unwrap { .. })));

        let mut truncated = wrapped;
        truncated.ciphertext.truncate(20);
        assert!(matches!(keys.unwrap(&truncated), Err(CryptoError::Unwrap { .. })));
    }

    #[test]
    fn a_value_sealed_with_the_master_key_bytes_is_not_a_wrapped_key() {
        // Both are AES-256-GCM; the wrap AAD keeps one from passing for the other.
        let keys = keyring(KEY_A);
        let mut same_bytes = KeyBytes::zeroed();
        same_bytes.0.copy_from_slice(&keys.current.bytes.0[..]);
        let sealed = DataKey { bytes: same_bytes }.seal(&[0; KEY_LEN], b"").expect("seal");
        let forged = WrappedKey {
            master_key_id: keys.current_id().to_owned(),
            nonce: sealed.nonce,
            ciphertext: sealed.ciphertext,
        };
        assert!(matches!(keys.unwrap(&forged), Err(CryptoError::Unwrap { .. })));
    }

    #[test]
    fn rotation_rewraps_under_the_new_key_and_the_old_key_can_then_go() {
        let data = data_key();
        let old = keyring(KEY_A).wrap(&data).expect("wrap");
        let secret = data.seal(b"hunter2", b"paramset:1:password").expect("seal");

        let during = MasterKeys::new(key(KEY_B), [key(KEY_A)]).expect("distinct");
        assert!(during.needs_rewrap(&old));
        assert_eq!(
            during.unwrap(&old).expect("old key still unwraps").bytes.0[..],
            data.bytes.0[..]
        );
        let new = during.rewrap(&old).expect("rewrap");
        assert_eq!(new.master_key_id, key(KEY_B).id());
        assert!(!during.needs_rewrap(&new));

        let after = keyring(KEY_B);
        assert!(matches!(after.unwrap(&old), Err(CryptoError::UnknownMasterKey { .. })));
        let rewrapped = after.unwrap(&new).expect("new key unwraps");
        assert_eq!(
            &*rewrapped.open(&secret, b"paramset:1:password").expect("open"),
            b"hunter2"
        );
    }

    #[test]
    fn seal_and_open_round_trip() {
        let key = data_key();
        for plaintext in [&b""[..], b"x", b"hunter2", &[0xff; 1000]] {
            let sealed = key.seal(plaintext, b"paramset:1:password").expect("seal");
            assert_eq!(sealed.ciphertext.len(), plaintext.len() + 16);
            assert_eq!(&*key.open(&sealed, b"paramset:1:password").expect("open"), plaintext);
        }
    }

    #[test]
    fn open_str_returns_text_and_refuses_bytes_that_are_not_utf8() {
        let key = data_key();
        let text = key.seal("pässword".as_bytes(), b"ctx").expect("seal");
        assert_eq!(key.open_str(&text, b"ctx").expect("open").as_str(), "pässword");
        let bytes = key.seal(&[0xff, 0xfe], b"ctx").expect("seal");
        assert!(matches!(key.open_str(&bytes, b"ctx"), Err(CryptoError::NotUtf8)));
    }

    #[test]
    fn open_with_the_wrong_aad_fails() {
        let key = data_key();
        let sealed = key.seal(b"hunter2", b"paramset:1:password").expect("seal");
        for aad in [&b"paramset:1:token"[..], b"paramset:2:password", b""] {
            assert!(matches!(key.open(&sealed, aad), Err(CryptoError::Open)));
        }
    }

    #[test]
    fn open_with_another_data_key_fails() {
        let sealed = data_key().seal(b"hunter2", b"ctx").expect("seal");
        assert!(matches!(data_key().open(&sealed, b"ctx"), Err(CryptoError::Open)));
    }

    #[test]
    fn tampered_sealed_values_fail() {
        let key = data_key();
        let sealed = key.seal(b"hunter2", b"ctx").expect("seal");
        for i in 0..sealed.ciphertext.len() {
            let mut flipped = sealed.clone();
            flipped.ciphertext[i] ^= 0x80;
            assert!(matches!(key.open(&flipped, b"ctx"), Err(CryptoError::Open)), "byte {i}");
        }
        let mut renonced = sealed.clone();
        renonced.nonce[11] ^= 1;
        assert!(matches!(key.open(&renonced, b"ctx"), Err(CryptoError::Open)));
        let mut short = sealed;
        short.ciphertext.truncate(10);
        assert!(matches!(key.open(&short, b"ctx"), Err(CryptoError::Open)));
    }

    #[test]
    fn sealing_twice_uses_different_nonces() {
        let key = data_key();
        let first = key.seal(b"hunter2", b"ctx").expect("seal");
        let second = key.seal(b"hunter2", b"ctx").expect("seal");
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn wrapped_keys_and_sealed_values_round_trip_through_json_as_base64() {
        let keys = keyring(KEY_A);
        let data = data_key();
        let wrapped = keys.wrap(&data).expect("wrap");
        let json = serde_json::to_value(&wrapped).expect("serialise");
        assert_eq!(json["master_key_id"], keys.current_id());
        assert_eq!(json["nonce"], STANDARD.encode(wrapped.nonce));
        assert_eq!(json["ciphertext"], STANDARD.encode(&wrapped.ciphertext));
        let text = json.to_string();
        assert!(!text.contains(&STANDARD.encode(&data.bytes.0[..])) && !text.contains(KEY_A));
        assert_eq!(serde_json::from_str::<WrappedKey>(&text).expect("deserialise"), wrapped);

        let plaintext = "correct horse battery staple";
        let sealed = data.seal(plaintext.as_bytes(), b"ctx").expect("seal");
        let text = serde_json::to_string(&sealed).expect("serialise");
        assert!(
            !text.contains(plaintext) && !text.contains(&STANDARD.encode(plaintext)),
            "{text}"
        );
        assert!(!text.contains("horse"), "{text}");
        let back: Sealed = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back, sealed);
        assert_eq!(&*data.open(&back, b"ctx").expect("open"), plaintext.as_bytes());
    }

    #[test]
    fn json_with_a_bad_nonce_or_base64_is_refused() {
        let short_nonce = format!(r#"{{"nonce":"{}","ciphertext":""}}"#, STANDARD.encode([0u8; 8]));
        let err = serde_json::from_str::<Sealed>(&short_nonce).expect_err("8-byte nonce");
        assert!(err.to_string().contains("expected 12 bytes, found 8"), "{err}");
        let not_base64 = r#"{"nonce":"AAAAAAAAAAAAAAAA","ciphertext":"***"}"#;
        assert!(serde_json::from_str::<Sealed>(not_base64).is_err());
    }
}
