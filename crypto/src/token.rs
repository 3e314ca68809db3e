use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{random, CryptoError};

/// Random bytes in a token: 256 bits, written as 43 base64url characters after the prefix.
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// Base64url characters of a 16-byte id.
const ID_CHARS: usize = 22;

/// An API token in clear: shown to its owner once, when it is made, and never stored.
///
/// `Debug` shows nothing of it; the text is zeroed when it is dropped.
pub struct Token(Zeroizing<String>);

impl Token {
    /// A new token, `prefix` followed by 32 random bytes in unpadded base64url (e.g. `mci_` + 43
    /// characters), and the hash to store in its place.
    ///
    /// The prefix (1 to 16 characters of `A-Za-z0-9_`) lets people and secret scanners recognise a token.
    pub fn generate(prefix: &str) -> Result<(Token, TokenHash), CryptoError> {
        let valid = (1..=16).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(CryptoError::InvalidTokenPrefix);
        }
        let mut bytes = Zeroizing::new([0; TOKEN_RANDOM_BYTES]);
        random::fill(&mut bytes[..])?;
        let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 43));
        text.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut text);
        let hash = TokenHash::of(&text);
        Ok((Token(text), hash))
    }

    /// A new token that names its record: `prefix`, the 16 bytes of `id` (22 base64url
    /// characters), then 32 random bytes (43 characters), and the hash to store.
    ///
    /// A server finds such a token's record by the id it carries ([`Token::embedded_id`]) and
    /// refuses one with an unknown id after that single lookup; the hash decides the rest.
    pub fn generate_with_id(prefix: &str, id: [u8; 16]) -> Result<(Token, TokenHash), CryptoError> {
        let (random, _) = Self::generate(prefix)?;
        let mut text = Zeroizing::new(String::with_capacity(prefix.len() + ID_CHARS + 43));
        text.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(id, &mut text);
        text.push_str(&random.0[prefix.len()..]);
        let hash = TokenHash::of(&text);
        Ok((Token(text), hash))
    }

    /// The id in a token made by [`Token::generate_with_id`] with `prefix`; `None` for any other
    /// text (another prefix, another length, not base64url).
    pub fn embedded_id(text: &str, prefix: &str) -> Option<[u8; 16]> {
        let rest = text.strip_prefix(prefix)?;
        if rest.len() != ID_CHARS + 43 || !rest.is_char_boundary(ID_CHARS) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(&rest[..ID_CHARS]).ok()?;
        bytes.try_into().ok()
    }

    /// The token's text, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// What is stored of a token: the lowercase hex SHA-256 of its whole text, prefix included.
///
/// A token is looked up by this hash (a unique column); there is no separate lookup id. A database
/// comparison that takes longer for a longer common prefix reveals something about the hash, which
/// does not help to find a token that hashes to it.
///
/// A fast hash is right here, unlike for passwords: a token has 256 random bits, so a stolen hash
/// cannot be reversed by trying candidates, however fast each try is; a slow or salted hash would
/// only make every request pay for a lookup that could no longer use an index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TokenHash(String);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// A stored hash: 64 lowercase hex digits.
    pub fn parse(hash: &str) -> Result<Self, CryptoError> {
        let valid = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(hash.to_owned()))
        } else {
            Err(CryptoError::InvalidTokenHash)
        }
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `token` hashes to this hash, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        Self::of(token).0.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TokenHash {
    type Error = CryptoError;

    fn try_from(hash: String) -> Result<Self, CryptoError> {
        Self::parse(&hash)
    }
}

impl From<TokenHash> for String {
    fn from(hash: TokenHash) -> String {
        hash.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate() -> (Token, TokenHash) {
        Token::generate("mci_").expect("token")
    }

    #[test]
    fn a_generated_token_matches_its_hash_and_another_does_not() {
        let (token, hash) = generate();
        assert!(hash.matches(token.expose()));
        assert_eq!(hash, TokenHash::of(token.expose()));

        let (other, other_hash) = generate();
        assert!(!hash.matches(other.expose()));
        assert_ne!(hash, other_hash);
        assert!(!hash.matches(""));
        assert!(!hash.matches(&token.expose()[..token.expose().len() - 1]));
    }

    #[test]
    fn tokens_are_the_prefix_and_43_base64url_characters() {
        let (token, _) = generate();
        let text = token.expose();
        assert_eq!(text.len(), 4 + 43);
        let random = text.strip_prefix("mci_").expect("prefix");
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(
            URL_SAFE_NO_PAD.decode(random).expect("base64url").len(),
            TOKEN_RANDOM_BYTES
        );
        assert_ne!(generate().0.expose(), text);
    }

    #[test]
    fn a_token_with_an_id_carries_it_and_nothing_else_reads_as_one() {
        let id = *b"0123456789abcdef";
        let (token, hash) = Token::generate_with_id("mci_", id).expect("token");
        let text = token.expose();
        assert_eq!(text.len(), 4 + 22 + 43);
        assert!(hash.matches(text));
        assert_eq!(Token::embedded_id(text, "mci_"), Some(id));
        let (again, _) = Token::generate_with_id("mci_", id).expect("token");
        assert_ne!(again.expose(), text, "the random part differs");
        assert_eq!(Token::embedded_id(text, "mci_admin_"), None);
        assert_eq!(Token::embedded_id(generate().0.expose(), "mci_"), None, "no id");
        assert_eq!(Token::embedded_id(&text[..text.len() - 1], "mci_"), None);
        let not_base64 = format!("mci_{}{}", "!".repeat(22), &text[26..]);
        assert_eq!(Token::embedded_id(&not_base64, "mci_"), None);
        let multibyte = format!("mci_{}é{}", "a".repeat(21), &text[27..]);
        assert_eq!(Token::embedded_id(&multibyte, "mci_"), None);
    }

    #[test]
    fn token_hashes_are_sha256_hex_of_the_whole_token() {
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for prefix in ["", "has space", "mci-", &"x".repeat(17)] {
            assert!(
                matches!(Token::generate(prefix), Err(CryptoError::InvalidTokenPrefix)),
                "{prefix:?}"
            );
        }
    }

    #[test]
    fn token_debug_shows_nothing_of_the_token() {
        let (token, _) = generate();
        let printed = format!("{token:?} {token:#?}");
        assert_eq!(printed, "Token(..) Token(..)");
    }

    #[test]
    fn stored_hashes_are_parsed_and_round_trip_through_json() {
        let hash = TokenHash::of("mci_x");
        assert_eq!(TokenHash::parse(hash.as_str()).expect("valid"), hash);
        let json = serde_json::to_string(&hash).expect("serialise");
        assert_eq!(json, format!("\"{hash}\""));
        assert_eq!(serde_json::from_str::<TokenHash>(&json).expect("deserialise"), hash);

        let upper = hash.as_str().to_uppercase();
        for bad in ["", "abc", upper.as_str(), &hash.as_str()[1..]] {
            assert!(
                matches!(TokenHash::parse(bad), Err(CryptoError::InvalidTokenHash)),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<TokenHash>("\"abc\"").is_err());
    }
}
