use thiserror::Error;

/// Everything that can go wrong in this crate.
///
/// Messages name key ids and lengths at most: never key bytes, plaintext or the text that failed to parse
/// (a misconfigured master key or token may be the secret itself).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The master key was not standard base64 (with padding).
    #[error("invalid master key: not standard base64 (expected 44 characters, e.g. from `openssl rand -base64 32`)")]
    MasterKeyNotBase64,
    /// The master key decoded to the wrong number of bytes.
    #[error("invalid master key: decodes to {len} bytes, expected 32")]
    MasterKeyLength {
        /// The decoded length.
        len: usize,
    },
    /// A configured master key id was empty, too long or had characters outside `A-Za-z0-9._-`.
    #[error("invalid master key id: use 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidKeyId,
    /// Two master keys of one keyring have the same id.
    #[error("master key id `{id}` is configured twice")]
    DuplicateKeyId {
        /// The id used twice.
        id: String,
    },
    /// A wrapped data key names a master key that is not in the keyring.
    #[error("data key was wrapped by master key `{id}`, which is not configured")]
    UnknownMasterKey {
        /// The id recorded in the wrapped key.
        id: String,
    },
    /// A wrapped data key did not decrypt under the master key it names.
    #[error("cannot unwrap data key with master key `{id}`: wrong key or tampered data")]
    Unwrap {
        /// The id recorded in the wrapped key.
        id: String,
    },
    /// A sealed value did not decrypt: another data key, another context (AAD), or tampered data.
    #[error("cannot open sealed value: wrong data key, wrong context or tampered data")]
    Open,
    /// A sealed value decrypted but is not UTF-8 text.
    #[error("sealed value is not UTF-8 text")]
    NotUtf8,
    /// Encryption refused its input (AES-GCM takes at most 64 GiB).
    #[error("cannot encrypt: input too long")]
    Encrypt,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A token prefix was empty, too long or had characters outside `A-Za-z0-9_`.
    #[error("invalid token prefix: use 1 to 16 characters of A-Z, a-z, 0-9 and '_'")]
    InvalidTokenPrefix,
    /// A stored token hash was not 64 lowercase hex digits.
    #[error("invalid token hash: expected 64 lowercase hex digits")]
    InvalidTokenHash,
    /// The secrets given to a [`Masker`](crate::Masker) are too many or too long to search for.
    #[error("cannot build the log masker: {0}")]
    Masker(#[source] aho_corasick::BuildError),
}
