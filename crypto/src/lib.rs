//! Secrets at rest, API tokens and log masking for MonkeyCI: pure functions and small types, no IO
//! beyond the operating system's random number generator.
//!
//! # What is encrypted with what
//!
//! Envelope encryption with AES-256-GCM, so that events and read models hold only ciphertext:
//!
//! - A **[`MasterKey`]** (32 bytes, base64 in the server's configuration) never leaves the server's
//!   memory and never encrypts a secret itself: it only wraps data keys. Its short id (the first 8 hex
//!   digits of the SHA-256 of the key, or an id from the configuration) is recorded beside everything
//!   it wraps. [`MasterKeys`] is the keyring: one current key that wraps, older keys that only unwrap.
//! - A **[`DataKey`]** (32 random bytes) belongs to one secret-holding aggregate: one parameter set,
//!   one ssh key, one webhook. It is stored only as a [`WrappedKey`] (encrypted under the current
//!   master key), outside the event log (MonkeyCI keeps it in the `data_keys` table).
//! - Each secret value is a **[`Sealed`]**: encrypted with its aggregate's data key under a fresh random
//!   96-bit nonce, and bound by its associated data (AAD, e.g. `paramset:<id>:<name>`) to the place it
//!   belongs, so a value copied to another parameter or parameter set does not open.
//!
//! Both [`WrappedKey`] and [`Sealed`] serialise to JSON with base64 strings, to go into events as they are.
//!
//! One data key per aggregate makes crypto-shredding possible: destroying an aggregate's wrapped key
//! makes its values unreadable wherever copies of the ciphertext remain, without touching other
//! aggregates. It also keeps each key's message count far below the 2³² that random nonces allow.
//! The event log is append-only, so a wrapped key recorded in an event could not be destroyed
//! there; that is why wrapped data keys live in a table of their own, whose row is deleted with the
//! aggregate.
//!
//! ```
//! use monkeyci_crypto::{DataKey, MasterKey, MasterKeys};
//!
//! # fn main() -> Result<(), monkeyci_crypto::CryptoError> {
//! let master = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
//! let keys = MasterKeys::new(master, [])?;
//!
//! // Creating a parameter set: a data key of its own, stored wrapped.
//! let data_key = DataKey::generate()?;
//! let wrapped = keys.wrap(&data_key)?;
//! let value = data_key.seal(b"hunter2", b"paramset:7f3e:DB_PASSWORD")?;
//!
//! // Using it later: unwrap, then open with the same context.
//! let data_key = keys.unwrap(&wrapped)?;
//! assert_eq!(&*data_key.open(&value, b"paramset:7f3e:DB_PASSWORD")?, b"hunter2");
//! assert!(data_key.open(&value, b"paramset:7f3e:OTHER").is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Rotating the master key
//!
//! 1. Configure the new key as current and keep the old one as previous: `MasterKeys::new(new, [old])`.
//!    New data keys are wrapped under the new key; old wrapped keys still unwrap.
//! 2. For every stored wrapped key with [`MasterKeys::needs_rewrap`], store the result of
//!    [`MasterKeys::rewrap`] in its place. Secret values are not touched: their data keys do not
//!    change.
//! 3. When nothing needs a rewrap any more, remove the old key from the configuration.
//!
//! # API tokens
//!
//! [`Token::generate`] makes `prefix` + 43 base64url characters (256 random bits);
//! [`Token::generate_with_id`] puts the 16 bytes of the token's record id (22 characters) between
//! them, so that a server finds the record by id and refuses an unknown one at once. Only the
//! [`TokenHash`], the SHA-256 of the whole token in hex, is stored.
//! SHA-256 is fast, and that is right for tokens: with 256 random bits there is nothing to guess, so a
//! stolen hash is useless; password hashes are slow and salted because passwords are guessable.
//!
//! # Masking
//!
//! [`Masker`] replaces a build's secret values (each line of them, at least 3 characters) in log lines
//! with `***`.
//!
//! # Errors
//!
//! [`CryptoError`] messages name key ids and lengths at most: never key material or plaintext. Key
//! types print only their ids in `Debug` and zero their bytes when dropped.

mod b64;
mod error;
mod keys;
mod mask;
mod random;
mod token;

pub use error::CryptoError;
pub use keys::{DataKey, MasterKey, MasterKeys, Sealed, WrappedKey, KEY_LEN, NONCE_LEN};
pub use mask::{Masker, MASK, MIN_MASKED_CHARS};
pub use token::{Token, TokenHash, TOKEN_RANDOM_BYTES};
pub use zeroize::Zeroizing;
