use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The global id the API gives an object: `<Kind>:<key>` in unpadded URL-safe base64, e.g.
/// `global_id("Build", uuid)`. Kept here so that whoever hands ids to users (the API, the
/// runner's `MONKEYCI_BUILD_GLOBAL_ID`) writes the same ones.
pub fn global_id(kind: &str, key: impl fmt::Display) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{key}"))
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing uuid.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying uuid.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// Identifies an organisation.
    OrgId
);
uuid_id!(
    /// Identifies a repository.
    RepoId
);
uuid_id!(
    /// Identifies one build.
    BuildId
);
uuid_id!(
    /// Identifies a user.
    UserId
);
uuid_id!(
    /// Identifies an API token.
    TokenId
);
uuid_id!(
    /// Identifies a repo's webhook.
    WebhookId
);
uuid_id!(
    /// Identifies a repo's cron schedule.
    ScheduleId
);
uuid_id!(
    /// Identifies an org's parameter set.
    ParamSetId
);
uuid_id!(
    /// Identifies an org's ssh key.
    SshKeyId
);
