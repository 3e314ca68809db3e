use std::fmt;
use std::str::FromStr;

/// A git host that delivers webhooks, named by the URL segment `/webhooks/{host}/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    GitHub,
    GitLab,
    /// Bitbucket Cloud and Bitbucket Data Center (Server): one signature scheme, told apart by event.
    Bitbucket,
    Gitea,
    Forgejo,
}

/// A URL segment that names no supported host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown git host {0:?}: expected github, gitlab, bitbucket, gitea or forgejo")]
pub struct UnknownHost(pub String);

impl Host {
    /// Every host, in a fixed order.
    pub const ALL: [Host; 5] = [Host::GitHub, Host::GitLab, Host::Bitbucket, Host::Gitea, Host::Forgejo];

    /// The host named by a URL segment; only the lower-case names of [`Host::as_str`] are accepted.
    pub fn parse(segment: &str) -> Result<Host, UnknownHost> {
        Host::ALL
            .into_iter()
            .find(|host| host.as_str() == segment)
            .ok_or_else(|| UnknownHost(segment.to_owned()))
    }

    /// The URL segment for this host.
    pub fn as_str(self) -> &'static str {
        match self {
            Host::GitHub => "github",
            Host::GitLab => "gitlab",
            Host::Bitbucket => "bitbucket",
            Host::Gitea => "gitea",
            Host::Forgejo => "forgejo",
        }
    }
}

impl FromStr for Host {
    type Err = UnknownHost;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Host::parse(s)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_round_trips_through_its_url_segment() {
        for host in Host::ALL {
            assert_eq!(Host::parse(host.as_str()), Ok(host));
            assert_eq!(host.to_string().parse::<Host>(), Ok(host));
        }
    }

    #[test]
    fn unknown_and_differently_cased_segments_are_refused() {
        assert_eq!(Host::parse("gogs"), Err(UnknownHost("gogs".into())));
        assert!(Host::parse("GitHub").is_err());
        assert!(Host::parse("").is_err());
    }
}
