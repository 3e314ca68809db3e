//! Container image references, checked strictly because the reference becomes an argument of
//! `podman run`.

use crate::error::ValidationError;

const FIELD: &str = "image";
const MAX_LENGTH: usize = 255;
const MAX_TAG_LENGTH: usize = 128;
const MIN_DIGEST_HEX: usize = 32;
const HOST_RULE: &str = "labels of letters, digits and '-' separated by '.', with an optional :port";
const PATH_RULE: &str = "lowercase letters and digits, joined by '.', '_', '__' or '-'";
const TAG_RULE: &str = "up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'";

/// Checks an OCI (Docker) image reference, `[host[:port]/]path[:tag][@digest]`:
///
/// * `host`: labels of letters, digits and `-` separated by `.`, with an optional `:port`; the
///   first `/`-separated component is the host only if it has a `.` or a `:` or is `localhost`
///   (as Docker reads it: `team/app` is a path on the default registry);
/// * `path`: components of lowercase letters and digits joined by `.`, `_`, `__` or any number
///   of `-`, separated by `/`;
/// * `tag`: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`;
/// * `digest`: `algorithm:hex`, such as `sha256:` and 64 hex digits;
///
/// and at most 255 characters in all.
pub(super) fn check_image(raw: &str) -> Result<(), ValidationError> {
    if raw.is_empty() {
        return Err(ValidationError::new(FIELD, "must not be empty"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            FIELD,
            "must not contain whitespace or control characters",
        ));
    }
    if raw.starts_with('-') {
        return Err(ValidationError::new(FIELD, "must not start with '-'"));
    }
    if raw.len() > MAX_LENGTH {
        return Err(ValidationError::new(
            FIELD,
            format!("must be at most {MAX_LENGTH} characters long"),
        ));
    }
    let (name, digest) = match raw.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (raw, None),
    };
    // A `:` after the last `/` starts the tag; one before it separates the host's port.
    let (name, tag) = match name.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name, None),
    };
    let path = match name.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => {
            if !is_host(host) {
                return Err(ValidationError::new(
                    FIELD,
                    format!("{host:?} is not a registry host: {HOST_RULE}"),
                ));
            }
            path
        }
        _ => name,
    };
    if let Some(component) = path.split('/').find(|c| !is_path_component(c)) {
        return Err(ValidationError::new(
            FIELD,
            format!("{component:?} is not a path component: {PATH_RULE}"),
        ));
    }
    if let Some(tag) = tag.filter(|tag| !is_tag(tag)) {
        return Err(ValidationError::new(FIELD, format!("{tag:?} is not a tag: {TAG_RULE}")));
    }
    if let Some(digest) = digest.filter(|digest| !is_digest(digest)) {
        return Err(ValidationError::new(
            FIELD,
            format!("{digest:?} is not a digest such as sha256:<64 hex digits>"),
        ));
    }
    Ok(())
}

fn is_host(host: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let is_label = |label: &str| {
        label.starts_with(|c: char| c.is_ascii_alphanumeric())
            && label.ends_with(|c: char| c.is_ascii_alphanumeric())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    name.split('.').all(is_label)
        && port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(component: &str) -> bool {
    is_joined(
        component,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |separator| matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-'),
    )
}

fn is_tag(tag: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    tag.len() <= MAX_TAG_LENGTH
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(allowed)
}

/// `algorithm:hex`: the algorithm `[a-z0-9]+` runs joined by one of `+._-`, the hex at least 32
/// digits.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = is_joined(
        algorithm,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |separator| matches!(separator, "+" | "." | "_" | "-"),
    );
    algorithm_ok && hex.len() >= MIN_DIGEST_HEX && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `text` is runs of `word` characters, at least one, with a `separator` between
/// each two runs.
fn is_joined(text: &str, word: fn(char) -> bool, separator: fn(&str) -> bool) -> bool {
    text.starts_with(word) && text.ends_with(word) && text.split(word).all(|gap| gap.is_empty() || separator(gap))
}
