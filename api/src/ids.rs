//! Relay global ids: `base64url("<Type>:<id>")`, so an id alone says what it names.

use async_graphql::{Error, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use crate::errors::bad_input;

/// The kinds of objects with global ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Org,
    Repo,
    Build,
    Job,
    User,
    Token,
    Webhook,
    Schedule,
    ParamSet,
    SshKey,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Org => "Org",
            Self::Repo => "Repo",
            Self::Build => "Build",
            Self::Job => "Job",
            Self::User => "User",
            Self::Token => "Token",
            Self::Webhook => "Webhook",
            Self::Schedule => "Schedule",
            Self::ParamSet => "ParamSet",
            Self::SshKey => "SshKey",
        }
    }
}

/// The global id of an org, repo or build.
pub fn encode(kind: Kind, id: Uuid) -> ID {
    ID(monkeyci_domain::global_id(kind.as_str(), id))
}

/// The global id of a job: its build and its pipeline id.
pub fn encode_job(build_id: Uuid, job_id: &str) -> ID {
    ID(monkeyci_domain::global_id("Job", format_args!("{build_id}:{job_id}")))
}

/// What a global id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Org(Uuid),
    Repo(Uuid),
    Build(Uuid),
    Job(Uuid, String),
    User(Uuid),
    Token(Uuid),
    Webhook(Uuid),
    Schedule(Uuid),
    ParamSet(Uuid),
    SshKey(Uuid),
}

/// The object a URL path segment names: its global id of `kind` (as the API returns it) or its
/// raw UUID (as jobs get it in `MONKEYCI_BUILD_ID` and webhook paths show it).
pub fn decode_path(segment: &str, kind: Kind) -> Option<Uuid> {
    Uuid::parse_str(segment)
        .ok()
        .or_else(|| decode_as(&ID(segment.to_owned()), kind).ok())
}

/// Decodes any global id.
pub fn decode(id: &ID) -> Result<Decoded, Error> {
    let invalid = || bad_input(format!("{:?} is not a valid id", id.as_str()));
    let raw = URL_SAFE_NO_PAD.decode(id.as_bytes()).map_err(|_| invalid())?;
    let text = String::from_utf8(raw).map_err(|_| invalid())?;
    let (kind, rest) = text.split_once(':').ok_or_else(invalid)?;
    let uuid = |s: &str| Uuid::parse_str(s).map_err(|_| invalid());
    Ok(match kind {
        "Org" => Decoded::Org(uuid(rest)?),
        "Repo" => Decoded::Repo(uuid(rest)?),
        "Build" => Decoded::Build(uuid(rest)?),
        "User" => Decoded::User(uuid(rest)?),
        "Token" => Decoded::Token(uuid(rest)?),
        "Webhook" => Decoded::Webhook(uuid(rest)?),
        "Schedule" => Decoded::Schedule(uuid(rest)?),
        "ParamSet" => Decoded::ParamSet(uuid(rest)?),
        "SshKey" => Decoded::SshKey(uuid(rest)?),
        "Job" => {
            let (build, job) = rest.split_once(':').ok_or_else(invalid)?;
            if job.is_empty() {
                return Err(invalid());
            }
            Decoded::Job(uuid(build)?, job.to_owned())
        }
        _ => return Err(invalid()),
    })
}

/// Decodes a global id that must name a `kind` (not a job).
pub fn decode_as(id: &ID, kind: Kind) -> Result<Uuid, Error> {
    match (decode(id)?, kind) {
        (Decoded::Org(u), Kind::Org)
        | (Decoded::Repo(u), Kind::Repo)
        | (Decoded::Build(u), Kind::Build)
        | (Decoded::User(u), Kind::User)
        | (Decoded::Token(u), Kind::Token)
        | (Decoded::Webhook(u), Kind::Webhook)
        | (Decoded::Schedule(u), Kind::Schedule)
        | (Decoded::ParamSet(u), Kind::ParamSet)
        | (Decoded::SshKey(u), Kind::SshKey) => Ok(u),
        _ => Err(bad_input(format!(
            "{:?} is not the id of a {}",
            id.as_str(),
            kind.as_str()
        ))),
    }
}

/// Decodes a job's global id.
pub fn decode_job(id: &ID) -> Result<(Uuid, String), Error> {
    match decode(id)? {
        Decoded::Job(build, job) => Ok((build, job)),
        _ => Err(bad_input(format!("{:?} is not the id of a Job", id.as_str()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_say_what_they_name() {
        let u = Uuid::now_v7();
        assert_eq!(decode(&encode(Kind::Repo, u)).ok(), Some(Decoded::Repo(u)));
        assert_eq!(
            decode_job(&encode_job(u, "test.unit")).ok(),
            Some((u, "test.unit".to_owned()))
        );
        assert!(decode_as(&encode(Kind::Repo, u), Kind::Org).is_err());
        for bad in ["", "!!", "T3Jn", "Zm9vOmJhcg"] {
            assert!(decode(&ID(bad.into())).is_err(), "{bad:?} was accepted");
        }
    }
}
