/// Request headers as the HTTP layer hands them over.
///
/// Implemented for slices and vectors of `(name, value)` pairs of anything string-like, so
/// `&[(String, String)]` and `vec![("x-github-event", "push")]` both work. Header values that are
/// not UTF-8 can be left out: no header this crate reads carries anything else. For an
/// `http::HeaderMap`:
/// `map.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect::<Vec<_>>()`.
pub trait Headers {
    /// The first value of the header `name`, compared ASCII case-insensitively.
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// The first of `names` present with a value that is not blank, trimmed.
pub(crate) fn first_present<'h, H: Headers + ?Sized>(headers: &'h H, names: &[&str]) -> Option<&'h str> {
    names
        .iter()
        .filter_map(|name| headers.header(name))
        .map(str::trim)
        .find(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively_and_the_first_value_wins() {
        let headers = vec![("X-GitHub-Event", "push"), ("x-github-event", "ping")];
        assert_eq!(headers.header("x-github-event"), Some("push"));
        assert_eq!(headers.header("X-GITHUB-EVENT"), Some("push"));
        assert_eq!(headers.header("x-github-delivery"), None);
    }

    #[test]
    fn first_present_skips_blank_values() {
        let headers = [
            (String::from("a"), String::from("  ")),
            (String::from("b"), String::from(" x ")),
        ];
        assert_eq!(first_present(&headers[..], &["a", "b"]), Some("x"));
        assert_eq!(first_present(&headers[..], &["c"]), None);
    }
}
