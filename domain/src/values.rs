//! Validated values: once constructed they are known to be well-formed ("parse, don't validate").

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_value!(
    /// A display name of an org or repo: trimmed, 1–100 characters, no control characters.
    Name
);
string_value!(
    /// The URL-safe handle of an org: 2–63 of `a-z`, `0-9` and `-`, starting and ending with a
    /// letter or digit.
    OrgSlug
);
string_value!(
    /// A git remote: `https://`, `http://`, `ssh://`, `git://`, `file://` or scp-like `user@host:path`.
    GitUrl
);
string_value!(
    /// A branch or tag name, valid by git's `check-ref-format` rules.
    RefName
);
string_value!(
    /// A commit hash: 7 to 64 hexadecimal digits, stored in lower case.
    CommitSha
);
string_value!(
    /// The id of a job within one build's pipeline: 1–100 of `A-Z a-z 0-9 _ . -`.
    JobId
);

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

impl Name {
    /// Parses a display name; surrounding whitespace is trimmed.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        let len = trimmed.chars().count();
        if len == 0 {
            return Err(ValidationError::new("name", "must not be empty"));
        }
        if len > 100 {
            return Err(ValidationError::new("name", "must be at most 100 characters"));
        }
        if has_control(trimmed) {
            return Err(ValidationError::new("name", "must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }
}

impl OrgSlug {
    /// Parses a slug.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "slug";
        if !(2..=63).contains(&raw.len()) {
            return Err(ValidationError::new(field, "must be 2 to 63 characters long"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ValidationError::new(
                field,
                "may contain only lower-case letters, digits and '-'",
            ));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(ValidationError::new(field, "must start and end with a letter or digit"));
        }
        Ok(Self(raw.to_owned()))
    }
}

impl GitUrl {
    /// Parses a git remote URL.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "gitUrl";
        if raw.is_empty() || raw.len() > 2048 {
            return Err(ValidationError::new(field, "must be 1 to 2048 characters long"));
        }
        if has_control(raw) || raw.contains(char::is_whitespace) {
            return Err(ValidationError::new(
                field,
                "must not contain whitespace or control characters",
            ));
        }
        let schemed = ["https://", "http://", "ssh://", "git://", "file://"]
            .iter()
            .find_map(|scheme| raw.strip_prefix(scheme));
        let ok = match schemed {
            Some(rest) => !rest.is_empty() && (raw.starts_with("file://") || !rest.starts_with('/')),
            None => is_scp_like(raw),
        };
        if !ok {
            return Err(ValidationError::new(
                field,
                "must be an https, http, ssh, git or file URL, or scp-like user@host:path",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

fn is_scp_like(raw: &str) -> bool {
    match raw.split_once(':') {
        Some((host, path)) => {
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            // `scheme://…` is a URL (of an unsupported scheme when we get here), never scp-like.
            !host.is_empty() && !host.contains('/') && !path.is_empty() && !path.starts_with("//")
        }
        None => false,
    }
}

impl RefName {
    /// Parses a branch or tag name (without `refs/heads/` or `refs/tags/`).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "ref";
        let bad = raw.is_empty()
            || raw.len() > 255
            || raw.starts_with(['-', '/', '.'])
            || raw.ends_with(['/', '.'])
            || raw.ends_with(".lock")
            || raw.contains("..")
            || raw.contains("//")
            || raw.contains("@{")
            || raw == "@"
            || raw
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
        if bad {
            return Err(ValidationError::new(
                field,
                format!("{raw:?} is not a valid git branch or tag name"),
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

impl CommitSha {
    /// Parses a full or abbreviated commit hash.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if !(7..=64).contains(&raw.len()) || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::new("commit", "must be 7 to 64 hexadecimal digits"));
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }
}

impl JobId {
    /// Parses a job id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > 100 {
            return Err(ValidationError::new("jobId", "must be 1 to 100 characters long"));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
            return Err(ValidationError::new(
                "jobId",
                "may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// What a build checks out: a branch or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum GitRef {
    /// A branch, e.g. `main`.
    Branch(RefName),
    /// A tag, e.g. `v1.2.0`.
    Tag(RefName),
}

impl GitRef {
    /// `branch` or `tag`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Branch(_) => "branch",
            Self::Tag(_) => "tag",
        }
    }

    /// The branch or tag name.
    pub fn name(&self) -> &RefName {
        match self {
            Self::Branch(n) | Self::Tag(n) => n,
        }
    }
}

fn validate_key(field: &'static str, key: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.len() > 128 {
        return Err(ValidationError::new(field, "names must be 1 to 128 characters long"));
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b)) {
        return Err(ValidationError::new(
            field,
            format!("name {key:?} may contain only letters, digits, '_', '.', '-' and '/'"),
        ));
    }
    Ok(())
}

fn validate_value(field: &'static str, key: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("value of {key:?} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// Labels on a repo (`name = value`), used to select the parameters and keys that apply to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Validates label names (1–128 of `A-Z a-z 0-9 _ . - /`) and values (at most 256 bytes).
    pub fn parse(raw: impl IntoIterator<Item = (String, String)>) -> Result<Self, ValidationError> {
        let mut labels = BTreeMap::new();
        for (k, v) in raw {
            validate_key("labels", &k)?;
            if has_control(&v) {
                return Err(ValidationError::new(
                    "labels",
                    format!("value of {k:?} contains control characters"),
                ));
            }
            validate_value("labels", &k, &v, 256)?;
            if labels.insert(k.clone(), v).is_some() {
                return Err(ValidationError::new("labels", format!("{k:?} is given twice")));
            }
        }
        if labels.len() > 64 {
            return Err(ValidationError::new("labels", "at most 64 labels are allowed"));
        }
        Ok(Self(labels))
    }

    /// The labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// Build parameters given at trigger time; they become environment variables of the jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Validates parameter names (1–128 of `A-Z a-z 0-9 _ . - /`) and values (at most 64 KiB).
    pub fn parse(raw: impl IntoIterator<Item = (String, String)>) -> Result<Self, ValidationError> {
        let mut params = BTreeMap::new();
        for (k, v) in raw {
            validate_key("params", &k)?;
            validate_value("params", &k, &v, 64 * 1024)?;
            if params.insert(k.clone(), v).is_some() {
                return Err(ValidationError::new("params", format!("{k:?} is given twice")));
            }
        }
        if params.len() > 256 {
            return Err(ValidationError::new("params", "at most 256 parameters are allowed"));
        }
        Ok(Self(params))
    }

    /// The parameters in name order.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words_joined_by_dashes() {
        assert!(OrgSlug::parse("acme-corp-2").is_ok());
        for bad in ["", "a", "Acme", "-acme", "acme-", "ac me", "acmé", &"a".repeat(64)] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(Name::parse("  Acme  ").map(|n| n.to_string()), Ok("Acme".to_owned()));
        assert!(Name::parse("   ").is_err());
        assert!(Name::parse(&"x".repeat(101)).is_err());
        assert!(Name::parse("a\u{0}b").is_err());
    }

    #[test]
    fn git_urls_of_every_supported_form_are_accepted() {
        for good in [
            "https://github.com/monkeyci/app.git",
            "http://git.local/x",
            "ssh://git@github.com/monkeyci/app.git",
            "git://example.org/x.git",
            "file:///tmp/repo",
            "git@github.com:monkeyci/app.git",
        ] {
            assert!(GitUrl::parse(good).is_ok(), "{good:?} was refused");
        }
        for bad in ["", "github.com/x", "https://", "ftp://x/y", "https://a b", "/tmp/repo"] {
            assert!(GitUrl::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ref_names_follow_git_rules() {
        for good in ["main", "feature/x-1", "v1.2.0", "release_2026"] {
            assert!(RefName::parse(good).is_ok(), "{good:?} was refused");
        }
        for bad in ["", "-x", "a..b", "a b", "x.lock", "x/", "a:b", "a~1", "@", "a//b", ".x"] {
            assert!(RefName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn commits_are_hex_and_lower_cased() {
        assert_eq!(
            CommitSha::parse("ABCDEF1").map(|c| c.to_string()),
            Ok("abcdef1".to_owned())
        );
        assert!(CommitSha::parse("abc").is_err());
        assert!(CommitSha::parse("xyzxyzx").is_err());
    }

    #[test]
    fn labels_and_params_refuse_bad_names_and_duplicates() {
        assert!(Labels::parse([("team".into(), "core".into())]).is_ok());
        assert!(Labels::parse([("".into(), "x".into())]).is_err());
        assert!(Labels::parse([("a b".into(), "x".into())]).is_err());
        assert!(Params::parse([("X".into(), "1".into()), ("X".into(), "2".into())]).is_err());
        assert!(Params::parse([("X".into(), "y".repeat(70_000))]).is_err());
    }
}
