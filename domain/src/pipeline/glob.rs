//! Glob patterns for branch, tag and path conditions.

use std::fmt;

use crate::error::ValidationError;

/// A glob pattern: `*` matches any run of characters within one `/`-separated segment, `**`
/// any run across segments, `**/` zero or more whole leading segments (so `**/*.rs` also
/// matches `main.rs`) and `?` one character other than `/`. Every other character matches
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    AnyDepth,
    /// `**/` at the start of a segment
    Segments,
}

impl Glob {
    /// Parses a pattern; it must not be empty or contain control characters.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("pattern", "must not be empty"));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "pattern",
                format!("{raw:?} must not contain control characters"),
            ));
        }
        let chars: Vec<char> = raw.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let token = match chars[i] {
                '?' => Token::One,
                '*' if chars.get(i + 1) == Some(&'*') => {
                    while chars.get(i + 1) == Some(&'*') {
                        i += 1;
                    }
                    let segment_start = tokens.is_empty() || tokens.last() == Some(&Token::Literal('/'));
                    if segment_start && chars.get(i + 1) == Some(&'/') {
                        i += 1;
                        Token::Segments
                    } else {
                        Token::AnyDepth
                    }
                }
                '*' => Token::Star,
                c => Token::Literal(c),
            };
            tokens.push(token);
            i += 1;
        }
        Ok(Self {
            pattern: raw.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `text` matches the pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let mut memo = vec![None; (self.tokens.len() + 1) * (text.len() + 1)];
        Matcher {
            tokens: &self.tokens,
            text: &text,
            memo: &mut memo,
        }
        .at(0, 0)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Whether `tokens[t..]` matches `text[s..]`, memoised so that many stars stay polynomial.
struct Matcher<'a> {
    tokens: &'a [Token],
    text: &'a [char],
    memo: &'a mut [Option<bool>],
}

impl Matcher<'_> {
    fn at(&mut self, t: usize, s: usize) -> bool {
        let key = t * (self.text.len() + 1) + s;
        if let Some(known) = self.memo[key] {
            return known;
        }
        let next = self.text.get(s).copied();
        let result = match self.tokens.get(t) {
            None => next.is_none(),
            Some(Token::Literal(c)) => next == Some(*c) && self.at(t + 1, s + 1),
            Some(Token::One) => next.is_some_and(|c| c != '/') && self.at(t + 1, s + 1),
            Some(Token::Star) => self.at(t + 1, s) || (next.is_some_and(|c| c != '/') && self.at(t, s + 1)),
            Some(Token::AnyDepth) => self.at(t + 1, s) || (next.is_some() && self.at(t, s + 1)),
            Some(Token::Segments) => {
                self.at(t + 1, s) || (s..self.text.len()).any(|i| self.text[i] == '/' && self.at(t + 1, i + 1))
            }
        };
        self.memo[key] = Some(result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Glob::parse(pattern).expect("valid pattern").matches(text)
    }

    #[test]
    fn literals_match_only_themselves() {
        assert!(matches("main", "main"));
        assert!(!matches("main", "main2"));
        assert!(!matches("main", "mai"));
        assert!(!matches("main", ""));
        assert!(matches("v1.0", "v1.0"));
        assert!(!matches("v1.0", "v1x0"));
    }

    #[test]
    fn a_star_stays_within_one_segment() {
        assert!(matches("release/*", "release/1.0"));
        assert!(matches("release/*", "release/"));
        assert!(!matches("release/*", "release/1.0/hotfix"));
        assert!(!matches("release/*", "release"));
        assert!(matches("v*", "v1.2.3"));
        assert!(matches("*", "main"));
        assert!(!matches("*", "feature/x"));
        assert!(matches("*.md", "README.md"));
        assert!(!matches("*.md", "docs/README.md"));
        assert!(matches("f*e*x", "feature-x"));
    }

    #[test]
    fn a_double_star_crosses_segments() {
        assert!(matches("release/**", "release/1.0/hotfix"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**", ""));
        assert!(matches("src/**/*.rs", "src/main.rs"));
        assert!(matches("src/**/*.rs", "src/a/b/lib.rs"));
        assert!(!matches("src/**/*.rs", "src/a/b/lib.rsx"));
        assert!(!matches("src/**/*.rs", "srcx/main.rs"));
        assert!(matches("**/*.rs", "main.rs"));
        assert!(matches("**/*.rs", "a/b/main.rs"));
        assert!(matches("docs/**", "docs/a.md"));
        assert!(!matches("docs/**", "doc/a.md"));
        assert!(matches("a**b", "a/x/b"));
    }

    #[test]
    fn a_question_mark_is_one_character_but_not_a_slash() {
        assert!(matches("v?", "v1"));
        assert!(!matches("v?", "v12"));
        assert!(!matches("v?", "v"));
        assert!(!matches("a?b", "a/b"));
        assert!(matches("ä?", "äö"));
    }

    #[test]
    fn many_stars_do_not_explode() {
        let text = "a".repeat(200);
        assert!(!matches(&format!("{}b", "*a".repeat(30)), &text));
        assert!(matches(&"**a".repeat(30), &text));
    }

    #[test]
    fn empty_patterns_are_refused() {
        assert_eq!(
            Glob::parse("").map_err(|e| e.to_string()),
            Err("invalid pattern: must not be empty".to_owned())
        );
        assert!(Glob::parse("a\tb").is_err());
        assert_eq!(
            Glob::parse("release/*").map(|g| g.to_string()),
            Ok("release/*".to_owned())
        );
    }
}
