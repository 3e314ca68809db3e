//! `BlobKey`: the validated name of an object.

use std::fmt;
use std::str::FromStr;

use crate::StorageError;

/// The longest key accepted, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// The suffix of the temporary files a store writes before renaming them into place. No segment
/// of a key may end with it, so that a half-written file is never mistaken for an object.
pub(crate) const TEMP_SUFFIX: &str = ".monkeyci-tmp";

/// The name of an object: a relative, `/`-separated path such as `builds/0190…/logs/test.log`.
///
/// Every segment is non-empty, is neither `.` nor `..`, and holds no backslash and no control
/// character; the whole key is at most [`MAX_KEY_LEN`] bytes. A key is therefore always a safe
/// relative path below a store's root or prefix, whatever the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// Checks `key` and wraps it.
    pub fn new(key: impl Into<String>) -> Result<BlobKey, StorageError> {
        let key = key.into();
        match check(&key) {
            Ok(()) => Ok(BlobKey(key)),
            Err(reason) => Err(StorageError::InvalidKey { key, reason }),
        }
    }

    /// The key as written, e.g. `builds/42/logs/test.log`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key followed by `/` and `segment`; `segment` may itself hold several segments.
    pub fn join(&self, segment: &str) -> Result<BlobKey, StorageError> {
        BlobKey::new(format!("{}/{segment}", self.0))
    }

    /// The segments of the key, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// The reason `key` is not a valid key, if it is not.
fn check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("it is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("it is {} bytes long; the limit is {MAX_KEY_LEN}", key.len()));
    }
    if key.starts_with('/') {
        return Err("it starts with '/' (keys are relative)".into());
    }
    for segment in key.split('/') {
        check_segment(segment)?;
    }
    Ok(())
}

pub(crate) fn check_segment(segment: &str) -> Result<(), String> {
    match segment {
        "" => Err("it has an empty segment (\"//\" or a trailing '/')".into()),
        "." | ".." => Err(format!("it has a {segment:?} segment")),
        _ if segment.contains('\\') => Err("it contains a backslash".into()),
        _ if segment.chars().any(char::is_control) => Err("it contains a control character".into()),
        _ if segment.ends_with(TEMP_SUFFIX) => Err(format!(
            "a segment ends with {TEMP_SUFFIX:?}, which is reserved for temporary files"
        )),
        _ => Ok(()),
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BlobKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for BlobKey {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BlobKey::new(s)
    }
}

impl TryFrom<String> for BlobKey {
    type Error = StorageError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        BlobKey::new(value)
    }
}

impl From<BlobKey> for String {
    fn from(key: BlobKey) -> String {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(key: &str) -> String {
        match BlobKey::new(key) {
            Err(StorageError::InvalidKey { key: k, reason }) => {
                assert_eq!(k, key);
                reason
            }
            other => panic!("{key:?} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn accepts_relative_slash_separated_keys() {
        for key in [
            "a",
            "builds/42/logs/test.log",
            ".cache/x",
            "a..b/c.d",
            "ünïcode/ключ",
            "a b/c",
        ] {
            let parsed = BlobKey::new(key).expect("valid key");
            assert_eq!(parsed.as_str(), key);
            assert_eq!(parsed.to_string(), key);
        }
    }

    #[test]
    fn refuses_unsafe_or_malformed_keys() {
        assert_eq!(reason(""), "it is empty");
        assert!(reason("/etc/passwd").contains("starts with '/'"));
        assert!(reason("a//b").contains("empty segment"));
        assert!(reason("a/").contains("empty segment"));
        assert!(reason("a/../b").contains("\"..\" segment"));
        assert!(reason("..").contains("\"..\" segment"));
        assert!(reason("./a").contains("\".\" segment"));
        assert!(reason("a\\b").contains("backslash"));
        assert!(reason("a\0b").contains("control character"));
        assert!(reason("a\nb").contains("control character"));
        assert!(reason("a/b.monkeyci-tmp").contains("reserved"));
    }

    #[test]
    fn limits_keys_to_1024_bytes() {
        assert!(BlobKey::new("x".repeat(MAX_KEY_LEN)).is_ok());
        assert!(reason(&"x".repeat(MAX_KEY_LEN + 1)).contains("1025 bytes"));
    }

    #[test]
    fn join_appends_checked_segments() {
        let base = BlobKey::new("builds/42").expect("valid key");
        assert_eq!(base.join("logs/a.log").expect("valid").as_str(), "builds/42/logs/a.log");
        assert!(base.join("../43").is_err());
        assert!(base.join("").is_err());
        assert_eq!(base.segments().collect::<Vec<_>>(), ["builds", "42"]);
    }
}
