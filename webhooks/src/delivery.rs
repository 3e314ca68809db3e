use crate::headers::{first_present, Headers};
use crate::Host;

/// The longest delivery id accepted; hosts send UUIDs (36 characters).
const MAX_DELIVERY_ID_LEN: usize = 128;

/// The id the host gave this delivery, for recognising a redelivery; `None` when the host sent
/// none, or sent something that is not 1–128 visible ASCII characters.
///
/// GitHub keeps `X-GitHub-Delivery` when a delivery is redelivered. GitLab documents
/// `Idempotency-Key` (17.4 and later) as the id that stays the same across retries, so it comes
/// first; `X-Gitlab-Event-UUID` is shared by webhooks triggered recursively by an earlier one, and
/// `X-Gitlab-Webhook-UUID` names the single request. Bitbucket Cloud sends `X-Request-UUID`,
/// Bitbucket Data Center `X-Request-Id`. Forgejo sends its own header and Gitea's.
///
/// The id is only unique per host (and, for a retry, per webhook): key deduplication on host,
/// webhook and id together.
pub fn delivery_id<H: Headers + ?Sized>(host: Host, headers: &H) -> Option<String> {
    let names: &[&str] = match host {
        Host::GitHub => &["x-github-delivery"],
        Host::GitLab => &["idempotency-key", "x-gitlab-event-uuid", "x-gitlab-webhook-uuid"],
        Host::Bitbucket => &["x-request-uuid", "x-request-id"],
        Host::Gitea => &["x-gitea-delivery"],
        Host::Forgejo => &["x-forgejo-delivery", "x-gitea-delivery"],
    };
    first_present(headers, names)
        .filter(|id| id.len() <= MAX_DELIVERY_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7e1c2a4e-9f1b-4c8e-8a55-0d6f3b2e1a90";

    #[test]
    fn each_host_reads_its_own_delivery_header() {
        let cases = [
            (Host::GitHub, "X-GitHub-Delivery"),
            (Host::GitLab, "X-Gitlab-Event-UUID"),
            (Host::GitLab, "X-Gitlab-Webhook-UUID"),
            (Host::GitLab, "Idempotency-Key"),
            (Host::Bitbucket, "X-Request-UUID"),
            (Host::Bitbucket, "X-Request-Id"),
            (Host::Gitea, "X-Gitea-Delivery"),
            (Host::Forgejo, "X-Forgejo-Delivery"),
            (Host::Forgejo, "X-Gitea-Delivery"),
        ];
        for (host, header) in cases {
            assert_eq!(
                delivery_id(host, &[(header, ID)][..]),
                Some(ID.to_owned()),
                "{host} {header}"
            );
        }
    }

    #[test]
    fn another_hosts_header_is_not_read() {
        assert_eq!(delivery_id(Host::GitHub, &[("x-gitea-delivery", ID)][..]), None);
        assert_eq!(delivery_id(Host::Gitea, &[("x-forgejo-delivery", ID)][..]), None);
        assert_eq!(delivery_id(Host::Bitbucket, &[("x-hook-uuid", ID)][..]), None);
    }

    #[test]
    fn the_preferred_header_wins() {
        let gitlab = [
            ("x-gitlab-webhook-uuid", "request"),
            ("x-gitlab-event-uuid", "event"),
            ("idempotency-key", "retry"),
        ];
        assert_eq!(delivery_id(Host::GitLab, &gitlab[..]).as_deref(), Some("retry"));
        let forgejo = [("x-gitea-delivery", "gitea"), ("x-forgejo-delivery", "forgejo")];
        assert_eq!(delivery_id(Host::Forgejo, &forgejo[..]).as_deref(), Some("forgejo"));
        let bitbucket = [("x-request-id", "server"), ("x-request-uuid", "cloud")];
        assert_eq!(delivery_id(Host::Bitbucket, &bitbucket[..]).as_deref(), Some("cloud"));
    }

    #[test]
    fn blank_oversized_or_unprintable_ids_are_none() {
        assert_eq!(delivery_id(Host::GitHub, &[("x-github-delivery", "  ")][..]), None);
        let long = "a".repeat(MAX_DELIVERY_ID_LEN + 1);
        assert_eq!(
            delivery_id(Host::GitHub, &[("x-github-delivery", long.as_str())][..]),
            None
        );
        assert_eq!(delivery_id(Host::GitHub, &[("x-github-delivery", "a b")][..]), None);
        assert_eq!(delivery_id(Host::GitHub, &[("x-github-delivery", "é")][..]), None);
        assert_eq!(delivery_id(Host::GitHub, &Vec::<(String, String)>::new()), None);
    }
}
