use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use aho_corasick::AhoCorasick;
use zeroize::Zeroizing;

use crate::CryptoError;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Secrets (or lines of secrets) shorter than this many characters are not masked.
pub const MIN_MASKED_CHARS: usize = 3;

/// Replaces the secrets of a build wherever they appear in its log lines.
///
/// Masking catches accidents (`echo $TOKEN`, `set -x`); it is no barrier against a job that means to
/// reveal a secret, which can print it encoded, reversed or one character at a time.
///
/// Each line of each secret is searched for, trimmed of surrounding whitespace, because logs arrive a
/// line at a time and a multi-line secret (an ssh key) is printed over several. Values and lines shorter
/// than [`MIN_MASKED_CHARS`] are skipped: masking every `a` or `1` would make logs unreadable and would
/// itself tell where the value occurs. The risk: a secret that short is printed in clear, but a value of
/// one or two characters is guessed at once anyway.
///
/// Every byte that is part of any occurrence of any secret is masked: overlapping or adjacent occurrences
/// become one [`MASK`], so neither of two overlapping secrets shows through (`abcd` and `cdef` in
/// `abcdef` give `***`, where leftmost-longest matching would leave `ef`).
///
/// `Debug` shows how many strings are searched for, not what they are. The secrets stay in memory, in
/// the search automaton, for as long as the masker lives, and that memory is not zeroed.
#[derive(Clone, Default)]
pub struct Masker {
    automaton: Option<AhoCorasick>,
    patterns: usize,
}

impl Masker {
    /// A masker for `secrets`; the strings passed in are zeroed once the automaton is built.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Result<Self, CryptoError> {
        let secrets: Vec<Zeroizing<String>> = secrets.into_iter().map(Zeroizing::new).collect();
        let patterns: BTreeSet<&str> = secrets
            .iter()
            .flat_map(|secret| secret.lines())
            .map(str::trim)
            .filter(|line| line.chars().count() >= MIN_MASKED_CHARS)
            .collect();
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let automaton = AhoCorasick::new(&patterns).map_err(CryptoError::Masker)?;
        Ok(Self {
            automaton: Some(automaton),
            patterns: patterns.len(),
        })
    }

    /// `line` with every occurrence of a secret replaced by [`MASK`]; borrowed when there is none.
    pub fn mask<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let Some(automaton) = &self.automaton else {
            return Cow::Borrowed(line);
        };
        let mut found: Vec<(usize, usize)> = automaton
            .find_overlapping_iter(line)
            .map(|m| (m.start(), m.end()))
            .collect();
        if found.is_empty() {
            return Cow::Borrowed(line);
        }
        // Overlapping matches come in order of their ends; merging needs them by start.
        found.sort_unstable();
        let mut masked = String::with_capacity(line.len());
        let mut copied = 0;
        let mut current = found[0];
        for &(start, end) in &found[1..] {
            if start <= current.1 {
                current.1 = current.1.max(end);
            } else {
                masked.push_str(&line[copied..current.0]);
                masked.push_str(MASK);
                copied = current.1;
                current = (start, end);
            }
        }
        masked.push_str(&line[copied..current.0]);
        masked.push_str(MASK);
        masked.push_str(&line[current.1..]);
        Cow::Owned(masked)
    }
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker").field("patterns", &self.patterns).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(secrets.iter().map(|s| s.to_string())).expect("masker")
    }

    #[test]
    fn a_secret_is_masked_wherever_it_appears() {
        let masker = masker(&["hunter2"]);
        assert_eq!(masker.mask("password=hunter2"), "password=***");
        assert_eq!(masker.mask("hunter2 and hunter2!"), "*** and ***!");
        assert_eq!(masker.mask("hunter2"), "***");
    }

    #[test]
    fn a_line_without_secrets_is_borrowed() {
        let masker = masker(&["hunter2"]);
        assert!(matches!(
            masker.mask("nothing to see, hunter1"),
            Cow::Borrowed("nothing to see, hunter1")
        ));
        assert!(matches!(Masker::default().mask("hunter2"), Cow::Borrowed("hunter2")));
        assert!(matches!(self::masker(&[]).mask("anything"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_secret_inside_another_is_masked_with_the_longer_one() {
        let masker = masker(&["abc", "abcdef"]);
        assert_eq!(masker.mask("x abcdef y"), "x *** y");
        assert_eq!(masker.mask("x abc y abcdefg"), "x *** y ***g");
        let reversed = self::masker(&["abcdef", "abc"]);
        assert_eq!(reversed.mask("x abcdef y"), "x *** y");
        let middle = self::masker(&["bcd", "abcdef"]);
        assert_eq!(middle.mask("abcdef"), "***");
    }

    #[test]
    fn partly_overlapping_secrets_are_masked_together() {
        let masker = masker(&["abcd", "cdef"]);
        assert_eq!(masker.mask("abcdef"), "***");
        assert_eq!(masker.mask("xabcdefx cdef"), "x***x ***");
        let chain = self::masker(&["aaa"]);
        assert_eq!(chain.mask("aaaaa b aa"), "*** b aa");
    }

    #[test]
    fn adjacent_secrets_become_one_mask() {
        let masker = masker(&["abc", "xyz"]);
        assert_eq!(masker.mask("abcxyz abc"), "*** ***");
    }

    #[test]
    fn a_multi_line_secret_is_masked_line_by_line() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\r\n\
                   b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz\r\n\
                   c2gtZWQyNTUxOQAAACDx\r\n\
                   -----END OPENSSH PRIVATE KEY-----\n";
        let masker = masker(&[key]);
        assert_eq!(masker.mask("-----BEGIN OPENSSH PRIVATE KEY-----"), "***");
        assert_eq!(
            masker.mask("+ echo b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz"),
            "+ echo ***"
        );
        assert_eq!(masker.mask("    c2gtZWQyNTUxOQAAACDx"), "    ***");
        assert_eq!(masker.mask("key: c2gtZWQyNTUxOQAAACDx."), "key: ***.");
        assert_eq!(format!("{masker:?}"), "Masker { patterns: 4 }");
    }

    #[test]
    fn values_shorter_than_three_characters_are_not_masked() {
        let masker = masker(&["", "a", "on", "  x  ", "xyz"]);
        assert!(matches!(masker.mask("a long line, turned on"), Cow::Borrowed(_)));
        assert_eq!(masker.mask("xyz on"), "*** on");
        // Characters, not bytes: three non-ASCII characters are masked, two are not.
        let masker = self::masker(&["äö", "äöü"]);
        assert_eq!(masker.mask("äö äöü"), "äö ***");
    }

    #[test]
    fn masking_keeps_other_text_intact_around_multibyte_characters() {
        let masker = masker(&["gehëim"]);
        assert_eq!(masker.mask("→gehëim←"), "→***←");
    }

    #[test]
    fn debug_shows_no_secret() {
        let printed = format!("{:?}", masker(&["hunter2", "abcdef"]));
        assert_eq!(printed, "Masker { patterns: 2 }");
    }
}
