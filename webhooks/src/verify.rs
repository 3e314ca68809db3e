use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::headers::Headers;
use crate::Host;

type HmacSha256 = Hmac<Sha256>;

const GITHUB_SIGNATURE: &str = "X-Hub-Signature-256";
const BITBUCKET_SIGNATURE: &str = "X-Hub-Signature";
const GITEA_SIGNATURE: &str = "X-Gitea-Signature";
const FORGEJO_SIGNATURE: &str = "X-Forgejo-Signature";
const GITLAB_TOKEN: &str = "X-Gitlab-Token";
const SHA256_PREFIX: &str = "sha256=";

/// Why a delivery was not accepted as coming from the host. No variant carries the secret, the
/// expected signature or the one received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The webhook has no secret, so anyone could sign for it.
    #[error("the webhook has no secret configured, so no delivery can be verified")]
    EmptySecret,
    /// The header that should carry the signature (or GitLab's token) is absent or blank.
    #[error("the delivery has no {header} header")]
    MissingSignature { header: &'static str },
    /// The header is there but cannot be a signature of the expected kind.
    #[error("the {header} header is malformed: {reason}")]
    Malformed { header: &'static str, reason: &'static str },
    /// A well-formed signature or token that does not match the body and the secret.
    #[error("the {header} header does not match this body and the webhook's secret")]
    Mismatch { header: &'static str },
}

/// Checks that `body` was sent by `host` for a webhook whose secret is `secret`, the way the host
/// documents it (see the table in the crate docs). The comparison is constant-time; run it over
/// the exact bytes received, before parsing them.
///
/// Forgejo sends its signature under both its own and Gitea's header name: `X-Forgejo-Signature`
/// is checked when present (a bad one is not rescued by a good `X-Gitea-Signature`), otherwise
/// `X-Gitea-Signature`.
pub fn verify<H: Headers + ?Sized>(host: Host, headers: &H, body: &[u8], secret: &[u8]) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::EmptySecret);
    }
    match host {
        Host::GitHub => verify_hmac(headers, GITHUB_SIGNATURE, Some(SHA256_PREFIX), body, secret),
        Host::Bitbucket => verify_hmac(headers, BITBUCKET_SIGNATURE, Some(SHA256_PREFIX), body, secret),
        Host::Gitea => verify_hmac(headers, GITEA_SIGNATURE, None, body, secret),
        Host::Forgejo => {
            let header = if signature_value(headers, FORGEJO_SIGNATURE).is_err()
                && signature_value(headers, GITEA_SIGNATURE).is_ok()
            {
                GITEA_SIGNATURE
            } else {
                FORGEJO_SIGNATURE
            };
            verify_hmac(headers, header, None, body, secret)
        }
        Host::GitLab => verify_token(headers, secret),
    }
}

/// The signature header and value `host` sends with `body` for a webhook whose secret is
/// `secret` (for GitLab, the token header with the secret itself): for tests, and for sending a
/// test delivery to one's own endpoint.
pub fn sign(host: Host, body: &[u8], secret: &[u8]) -> (&'static str, String) {
    let hex_mac = || hex::encode(keyed(secret).chain_update(body).finalize().into_bytes());
    match host {
        Host::GitHub => (GITHUB_SIGNATURE, format!("{SHA256_PREFIX}{}", hex_mac())),
        Host::Bitbucket => (BITBUCKET_SIGNATURE, format!("{SHA256_PREFIX}{}", hex_mac())),
        Host::Gitea => (GITEA_SIGNATURE, hex_mac()),
        Host::Forgejo => (FORGEJO_SIGNATURE, hex_mac()),
        Host::GitLab => (GITLAB_TOKEN, String::from_utf8_lossy(secret).into_owned()),
    }
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// The header's value, trimmed; blank counts as absent (Gitea sends an empty signature when the
/// hook has no secret).
fn signature_value<'h, H: Headers + ?Sized>(headers: &'h H, header: &'static str) -> Result<&'h str, VerifyError> {
    headers
        .header(header)
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::MissingSignature { header })
}

fn verify_hmac<H: Headers + ?Sized>(
    headers: &H,
    header: &'static str,
    prefix: Option<&str>,
    body: &[u8],
    secret: &[u8],
) -> Result<(), VerifyError> {
    let value = signature_value(headers, header)?;
    let digest_hex = match prefix {
        Some(prefix) => value.strip_prefix(prefix).ok_or(VerifyError::Malformed {
            header,
            reason: "expected the sha256= prefix",
        })?,
        None => value,
    };
    let received = hex::decode(digest_hex).map_err(|_| VerifyError::Malformed {
        header,
        reason: "the signature is not an even number of hex digits",
    })?;
    // `verify_slice` compares in constant time. A signature of the wrong length is a mismatch like
    // any other; the length of a SHA-256 MAC is no secret.
    keyed(secret)
        .chain_update(body)
        .verify_slice(&received)
        .map_err(|_| VerifyError::Mismatch { header })
}

/// GitLab sends the secret itself. Both sides are hashed first, so the comparison is between two
/// 32-byte values and neither the time taken nor an early exit tells how long the secret is.
fn verify_token<H: Headers + ?Sized>(headers: &H, secret: &[u8]) -> Result<(), VerifyError> {
    let header = GITLAB_TOKEN;
    let token = headers
        .header(header)
        .filter(|value| !value.is_empty())
        .ok_or(VerifyError::MissingSignature { header })?;
    let received = Sha256::digest(token.as_bytes());
    let expected = Sha256::digest(secret);
    if bool::from(received.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch { header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cr3t-webhook-key";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"0123456789abcdef0123456789abcdef01234567"}"#;

    fn signed(host: Host, body: &[u8], secret: &[u8]) -> Vec<(String, String)> {
        let (name, value) = sign(host, body, secret);
        vec![(name.to_ascii_lowercase(), value)]
    }

    fn flipped(body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body[10] ^= 0x01;
        body
    }

    #[test]
    fn github_signature_matches_the_example_in_githubs_docs() {
        let headers = [(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )];
        assert_eq!(
            verify(
                Host::GitHub,
                &headers[..],
                b"Hello, World!",
                b"It's a Secret to Everybody"
            ),
            Ok(())
        );
    }

    #[test]
    fn gitea_signature_is_bare_hex_hmac_sha256_per_rfc_4231() {
        let (name, value) = sign(Host::Gitea, b"what do ya want for nothing?", b"Jefe");
        assert_eq!(name, "X-Gitea-Signature");
        assert_eq!(
            value,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_host_accepts_its_own_valid_signature() {
        for host in Host::ALL {
            assert_eq!(
                verify(host, &signed(host, BODY, SECRET), BODY, SECRET),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn every_hmac_host_rejects_a_body_with_one_flipped_bit() {
        for host in [Host::GitHub, Host::Bitbucket, Host::Gitea, Host::Forgejo] {
            let headers = signed(host, BODY, SECRET);
            let err = verify(host, &headers, &flipped(BODY), SECRET).expect_err("should be refused");
            assert!(matches!(err, VerifyError::Mismatch { .. }), "{host}: {err:?}");
        }
    }

    #[test]
    fn every_host_rejects_a_wrong_secret() {
        for host in Host::ALL {
            let headers = signed(host, BODY, b"some-other-secret");
            let err = verify(host, &headers, BODY, SECRET).expect_err("should be refused");
            assert!(matches!(err, VerifyError::Mismatch { .. }), "{host}: {err:?}");
        }
    }

    #[test]
    fn every_host_rejects_a_missing_or_blank_header_naming_it() {
        let expected = [
            (Host::GitHub, "X-Hub-Signature-256"),
            (Host::GitLab, "X-Gitlab-Token"),
            (Host::Bitbucket, "X-Hub-Signature"),
            (Host::Gitea, "X-Gitea-Signature"),
            (Host::Forgejo, "X-Forgejo-Signature"),
        ];
        for (host, header) in expected {
            let none = [("x-github-event", "push")];
            assert_eq!(
                verify(host, &none[..], BODY, SECRET),
                Err(VerifyError::MissingSignature { header })
            );
            let blank = [(header, "")];
            assert_eq!(
                verify(host, &blank[..], BODY, SECRET),
                Err(VerifyError::MissingSignature { header })
            );
        }
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        for host in Host::ALL {
            let headers = signed(host, BODY, b"");
            assert_eq!(
                verify(host, &headers, BODY, b""),
                Err(VerifyError::EmptySecret),
                "{host}"
            );
        }
    }

    #[test]
    fn github_refuses_the_legacy_sha1_header_and_prefix() {
        let sha1_header = [("x-hub-signature", "sha1=0123456789abcdef0123456789abcdef01234567")];
        assert_eq!(
            verify(Host::GitHub, &sha1_header[..], BODY, SECRET),
            Err(VerifyError::MissingSignature {
                header: "X-Hub-Signature-256"
            })
        );
        let (_, good) = sign(Host::GitHub, BODY, SECRET);
        let sha1_prefix = [("x-hub-signature-256", good.replacen("sha256=", "sha1=", 1))];
        let err = verify(Host::GitHub, &sha1_prefix[..], BODY, SECRET).expect_err("should be refused");
        assert!(
            matches!(
                err,
                VerifyError::Malformed {
                    header: "X-Hub-Signature-256",
                    ..
                }
            ),
            "{err:?}"
        );
        let no_prefix = [("x-hub-signature-256", good.trim_start_matches("sha256=").to_owned())];
        let err = verify(Host::GitHub, &no_prefix[..], BODY, SECRET).expect_err("should be refused");
        assert!(matches!(err, VerifyError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn non_hex_signatures_are_malformed() {
        let bad = "sha256=zz".to_owned() + &"0".repeat(62);
        for (host, value) in [
            (Host::GitHub, bad.as_str()),
            (Host::Bitbucket, bad.as_str()),
            (Host::Bitbucket, "0123abcd"),
            (Host::Gitea, "sha256=0123abcd"),
            (Host::Forgejo, "0123abc"),
        ] {
            let (name, _) = sign(host, BODY, SECRET);
            let headers = [(name, value)];
            let err = verify(host, &headers[..], BODY, SECRET).expect_err("should be refused");
            assert!(matches!(err, VerifyError::Malformed { .. }), "{host} {value}: {err:?}");
        }
    }

    #[test]
    fn signatures_of_the_wrong_length_are_mismatches_not_panics() {
        let (_, good) = sign(Host::Gitea, BODY, SECRET);
        // One byte short, one byte long, empty, and far too long: all go through the same
        // constant-time comparison and come out as a mismatch.
        let candidates = [
            good[..62].to_owned(),
            format!("{good}00"),
            String::new(),
            "ab".repeat(4096),
        ];
        for candidate in candidates {
            let gitea = [("x-gitea-signature", candidate.clone())];
            let github = [("x-hub-signature-256", format!("sha256={candidate}"))];
            if candidate.is_empty() {
                assert!(matches!(
                    verify(Host::Gitea, &gitea[..], BODY, SECRET),
                    Err(VerifyError::MissingSignature { .. })
                ));
            } else {
                assert_eq!(
                    verify(Host::Gitea, &gitea[..], BODY, SECRET),
                    Err(VerifyError::Mismatch {
                        header: "X-Gitea-Signature"
                    })
                );
            }
            assert_eq!(
                verify(Host::GitHub, &github[..], BODY, SECRET),
                Err(VerifyError::Mismatch {
                    header: "X-Hub-Signature-256"
                })
            );
        }
    }

    #[test]
    fn gitlab_compares_tokens_of_any_length_without_panicking() {
        for token in ["s", "s3cr3t-webhook-ke", "s3cr3t-webhook-key ", "S3CR3T-WEBHOOK-KEY"] {
            let headers = [("x-gitlab-token", token)];
            assert_eq!(
                verify(Host::GitLab, &headers[..], BODY, SECRET),
                Err(VerifyError::Mismatch {
                    header: "X-Gitlab-Token"
                }),
                "{token:?}"
            );
        }
    }

    #[test]
    fn gitlab_ignores_the_body() {
        let headers = signed(Host::GitLab, BODY, SECRET);
        assert_eq!(verify(Host::GitLab, &headers, &flipped(BODY), SECRET), Ok(()));
    }

    #[test]
    fn forgejo_accepts_giteas_header_and_prefers_its_own() {
        let (_, good) = sign(Host::Forgejo, BODY, SECRET);
        let gitea_only = [("x-gitea-signature", good.as_str())];
        assert_eq!(verify(Host::Forgejo, &gitea_only[..], BODY, SECRET), Ok(()));

        let (_, wrong) = sign(Host::Forgejo, BODY, b"another secret");
        let both = [
            ("x-forgejo-signature", wrong.as_str()),
            ("x-gitea-signature", good.as_str()),
        ];
        assert_eq!(
            verify(Host::Forgejo, &both[..], BODY, SECRET),
            Err(VerifyError::Mismatch {
                header: "X-Forgejo-Signature"
            })
        );
    }

    #[test]
    fn gitea_does_not_read_forgejos_header() {
        let (_, good) = sign(Host::Forgejo, BODY, SECRET);
        let headers = [("x-forgejo-signature", good)];
        assert!(matches!(
            verify(Host::Gitea, &headers[..], BODY, SECRET),
            Err(VerifyError::MissingSignature { .. })
        ));
    }

    #[test]
    fn error_messages_never_contain_the_secret_or_a_signature() {
        let (_, expected) = sign(Host::GitHub, BODY, SECRET);
        let (_, received) = sign(Host::GitHub, BODY, b"guess");
        let secret = String::from_utf8_lossy(SECRET).into_owned();
        let errors = [
            verify(
                Host::GitHub,
                &[("x-hub-signature-256", received.as_str())][..],
                BODY,
                SECRET,
            ),
            verify(Host::GitHub, &[("x-hub-signature-256", "sha256=xyz")][..], BODY, SECRET),
            verify(Host::GitLab, &[("x-gitlab-token", "guess")][..], BODY, SECRET),
            verify(Host::GitLab, &[("x-hub-signature", "guess")][..], BODY, SECRET),
        ];
        for err in errors {
            let err = err.expect_err("should be refused");
            let text = format!("{err} {err:?}");
            assert!(!text.contains(&secret), "{text}");
            assert!(!text.contains(expected.trim_start_matches("sha256=")), "{text}");
            assert!(!text.contains(received.trim_start_matches("sha256=")), "{text}");
            assert!(!text.contains("guess"), "{text}");
        }
    }
}
