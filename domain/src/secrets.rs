//! An org's secrets: parameter sets (name = value pairs that become environment variables of
//! jobs) and ssh keys (used to check out code), each applying to the org's repos that a label
//! filter chooses and, when protected, only to builds of those repos' protected refs.
//!
//! Values are sealed by the caller (with a data key of the aggregate's own, kept outside the log);
//! the domain sees and stores only ciphertext, and the parameter names.

use std::collections::BTreeMap;

use monkeyci_crypto::Sealed;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::error::{DomainError, ValidationError};
use crate::event::DomainEvent;
use crate::ids::{OrgId, ParamSetId, SshKeyId};
use crate::org::Org;
use crate::values::{GitRef, Labels, Name, RefName};

/// Chooses repos by their labels: a repo is chosen when all `label = value` pairs of at least one
/// rule hold for it. No rules choose every repo of the org.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelFilter(Vec<BTreeMap<String, String>>);

impl LabelFilter {
    /// Validates the rules: at most 32, each with 1 to 32 distinct labels named as repo labels are.
    pub fn parse(rules: Vec<Vec<(String, String)>>) -> Result<Self, ValidationError> {
        if rules.len() > 32 {
            return Err(ValidationError::new("filter", "at most 32 rules are allowed"));
        }
        let mut parsed = Vec::with_capacity(rules.len());
        for rule in rules {
            if rule.is_empty() || rule.len() > 32 {
                return Err(ValidationError::new(
                    "filter",
                    "each rule needs 1 to 32 label conditions",
                ));
            }
            // The same checks as repo labels: names, values, duplicates.
            let labels = Labels::parse(rule).map_err(|e| ValidationError::new("filter", e.reason))?;
            parsed.push(labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
        }
        Ok(Self(parsed))
    }

    /// Whether a repo with `labels` is chosen.
    pub fn matches(&self, labels: &Labels) -> bool {
        let map = labels.as_map();
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|rule| rule.iter().all(|(k, v)| map.get(k) == Some(v)))
    }

    /// The rules, each a map of label to value.
    pub fn rules(&self) -> &[BTreeMap<String, String>] {
        &self.0
    }
}

/// Which builds a parameter set or ssh key reaches: those of the repos its filter chooses and,
/// when `protected`, only builds of their protected refs (the repo's main branch and tags), so
/// that a branch anybody with push access made never receives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretScope {
    pub filter: LabelFilter,
    pub protected: bool,
}

impl SecretScope {
    /// Whether a build of `git_ref` of a repo with `labels` and `main_branch` gets the secret.
    pub fn reaches(&self, labels: &Labels, git_ref: &GitRef, main_branch: &RefName) -> bool {
        self.filter.matches(labels) && (!self.protected || is_protected_ref(git_ref, main_branch))
    }
}

/// Protected refs: the repo's main branch and every tag. Which commits they hold is the git
/// host's to guard (branch and tag protection there); a build of a given commit of a ref checks
/// that the commit is in the ref's history.
pub fn is_protected_ref(git_ref: &GitRef, main_branch: &RefName) -> bool {
    match git_ref {
        GitRef::Branch(name) => name == main_branch,
        GitRef::Tag(_) => true,
    }
}

/// Checks a parameter name: what a shell accepts as an environment variable, up to 128 bytes.
pub fn validate_param_name(name: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let valid = (1..=128).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ValidationError::new(
            "parameters",
            format!("{name:?} is not a valid name: use letters, digits and '_', not starting with a digit"),
        ))
    }
}

/// What happened to a parameter set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ParamSetEvent {
    /// Created with its values, sealed, by parameter name.
    ParamSetCreated {
        org_id: OrgId,
        name: Name,
        filter: LabelFilter,
        /// Only for builds of protected refs (absent in events from before it existed: false).
        #[serde(default)]
        protected: bool,
        values: BTreeMap<String, Sealed>,
    },
    /// Its name, scope and values were replaced.
    ParamSetReplaced {
        name: Name,
        filter: LabelFilter,
        #[serde(default)]
        protected: bool,
        values: BTreeMap<String, Sealed>,
    },
    /// Deleted; its data key is destroyed with it.
    ParamSetDeleted,
}

impl DomainEvent for ParamSetEvent {}

/// A parameter set, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet {
    pub org_id: Option<OrgId>,
    pub deleted: bool,
}

impl Aggregate for ParamSet {
    type Event = ParamSetEvent;
    const CATEGORY: &'static str = "paramset";

    fn apply(&mut self, event: &ParamSetEvent) {
        match event {
            ParamSetEvent::ParamSetCreated { org_id, .. } => self.org_id = Some(*org_id),
            ParamSetEvent::ParamSetReplaced { .. } => {}
            ParamSetEvent::ParamSetDeleted => self.deleted = true,
        }
    }
}

/// At most this many parameters in one set.
pub const MAX_PARAMS: usize = 256;

fn check_values(values: &BTreeMap<String, Sealed>) -> Result<(), DomainError> {
    if values.len() > MAX_PARAMS {
        let reason = format!("at most {MAX_PARAMS} parameters are allowed");
        return Err(ValidationError::new("parameters", reason).into());
    }
    for name in values.keys() {
        validate_param_name(name)?;
    }
    Ok(())
}

impl ParamSet {
    /// Fails unless the set exists and was not deleted; returns its org.
    pub fn existing(&self, id: ParamSetId) -> Result<OrgId, DomainError> {
        match (self.org_id, self.deleted) {
            (Some(org_id), false) => Ok(org_id),
            _ => Err(DomainError::NotFound {
                kind: "parameter set",
                id: id.to_string(),
            }),
        }
    }

    /// Creates the set in an active org.
    pub fn create(
        &self,
        id: ParamSetId,
        (org_id, org): (OrgId, &Org),
        name: Name,
        scope: SecretScope,
        values: BTreeMap<String, Sealed>,
    ) -> Result<Vec<ParamSetEvent>, DomainError> {
        org.ensure_active(org_id)?;
        if self.org_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "parameter set",
                id: id.to_string(),
            });
        }
        check_values(&values)?;
        Ok(vec![ParamSetEvent::ParamSetCreated {
            org_id,
            name,
            filter: scope.filter,
            protected: scope.protected,
            values,
        }])
    }

    /// Replaces name, scope and values.
    pub fn replace(
        &self,
        id: ParamSetId,
        name: Name,
        scope: SecretScope,
        values: BTreeMap<String, Sealed>,
    ) -> Result<Vec<ParamSetEvent>, DomainError> {
        self.existing(id)?;
        check_values(&values)?;
        Ok(vec![ParamSetEvent::ParamSetReplaced {
            name,
            filter: scope.filter,
            protected: scope.protected,
            values,
        }])
    }

    /// Deletes the set; deleting it again finds nothing.
    pub fn delete(&self, id: ParamSetId) -> Result<Vec<ParamSetEvent>, DomainError> {
        self.existing(id)?;
        Ok(vec![ParamSetEvent::ParamSetDeleted])
    }
}

/// What happened to an ssh key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SshKeyEvent {
    /// Added: the private key sealed, the public key in the clear (to show which key it is).
    SshKeyAdded {
        org_id: OrgId,
        description: Name,
        filter: LabelFilter,
        /// Only for builds of protected refs (absent in events from before it existed: false).
        #[serde(default)]
        protected: bool,
        private_key: Sealed,
        public_key: String,
    },
    /// Deleted; its data key is destroyed with it.
    SshKeyDeleted,
}

impl DomainEvent for SshKeyEvent {}

/// An ssh key, folded from its stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshKey {
    pub org_id: Option<OrgId>,
    pub deleted: bool,
}

impl Aggregate for SshKey {
    type Event = SshKeyEvent;
    const CATEGORY: &'static str = "sshkey";

    fn apply(&mut self, event: &SshKeyEvent) {
        match event {
            SshKeyEvent::SshKeyAdded { org_id, .. } => self.org_id = Some(*org_id),
            SshKeyEvent::SshKeyDeleted => self.deleted = true,
        }
    }
}

impl SshKey {
    /// Fails unless the key exists and was not deleted; returns its org.
    pub fn existing(&self, id: SshKeyId) -> Result<OrgId, DomainError> {
        match (self.org_id, self.deleted) {
            (Some(org_id), false) => Ok(org_id),
            _ => Err(DomainError::NotFound {
                kind: "ssh key",
                id: id.to_string(),
            }),
        }
    }

    /// Adds the key to an active org. `public_key` is one line of OpenSSH public key text.
    pub fn add(
        &self,
        id: SshKeyId,
        (org_id, org): (OrgId, &Org),
        description: Name,
        scope: SecretScope,
        private_key: Sealed,
        public_key: String,
    ) -> Result<Vec<SshKeyEvent>, DomainError> {
        org.ensure_active(org_id)?;
        if self.org_id.is_some() {
            return Err(DomainError::AlreadyExists {
                kind: "ssh key",
                id: id.to_string(),
            });
        }
        let public_key = public_key.trim().to_owned();
        if public_key.is_empty() || public_key.len() > 16 * 1024 || public_key.contains(['\n', '\r']) {
            return Err(ValidationError::new("publicKey", "must be one line of OpenSSH public key text").into());
        }
        Ok(vec![SshKeyEvent::SshKeyAdded {
            org_id,
            description,
            filter: scope.filter,
            protected: scope.protected,
            private_key,
            public_key,
        }])
    }

    /// Deletes the key; deleting it again finds nothing.
    pub fn delete(&self, id: SshKeyId) -> Result<Vec<SshKeyEvent>, DomainError> {
        self.existing(id)?;
        Ok(vec![SshKeyEvent::SshKeyDeleted])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::OrgEvent;
    use crate::testing::given;
    use crate::OrgSlug;
    use uuid::Uuid;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::parse(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("test setup")
    }

    fn rule(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn org() -> (OrgId, Org) {
        let mut org = Org::default();
        org.apply(&OrgEvent::OrgCreated {
            name: Name::parse("Acme").expect("test setup"),
            slug: OrgSlug::parse("acme").expect("test setup"),
        });
        (OrgId::from_uuid(Uuid::now_v7()), org)
    }

    fn sealed() -> Sealed {
        Sealed {
            nonce: [1; 12],
            ciphertext: vec![9, 9],
        }
    }

    #[test]
    fn a_filter_is_an_or_of_ands() {
        let filter = LabelFilter::parse(vec![
            rule(&[("team", "web"), ("env", "prod")]),
            rule(&[("team", "ops")]),
        ])
        .expect("test setup");
        assert!(filter.matches(&labels(&[("team", "web"), ("env", "prod"), ("lang", "rust")])));
        assert!(filter.matches(&labels(&[("team", "ops")])));
        assert!(!filter.matches(&labels(&[("team", "web"), ("env", "test")])));
        assert!(!filter.matches(&labels(&[])));
        assert!(
            LabelFilter::default().matches(&labels(&[])),
            "no rules choose every repo"
        );
        assert!(
            LabelFilter::parse(vec![vec![]]).is_err(),
            "an empty rule would choose every repo"
        );
        assert!(LabelFilter::parse(vec![rule(&[("bad name!", "x")])]).is_err());
    }

    #[test]
    fn a_protected_secret_reaches_only_the_main_branch_and_tags_of_chosen_repos() {
        let main = RefName::parse("main").expect("test setup");
        let branch = |n: &str| GitRef::Branch(RefName::parse(n).expect("test setup"));
        let tag = GitRef::Tag(RefName::parse("v1.0").expect("test setup"));
        let prod = SecretScope {
            filter: LabelFilter::parse(vec![rule(&[("env", "prod")])]).expect("test setup"),
            protected: true,
        };
        let chosen = labels(&[("env", "prod")]);
        assert!(prod.reaches(&chosen, &branch("main"), &main));
        assert!(prod.reaches(&chosen, &tag, &main));
        assert!(!prod.reaches(&chosen, &branch("feature/x"), &main));
        assert!(!prod.reaches(&chosen, &branch("main"), &RefName::parse("trunk").expect("test setup")));
        assert!(!prod.reaches(&labels(&[("env", "test")]), &branch("main"), &main));
        let open = SecretScope {
            protected: false,
            ..prod
        };
        assert!(open.reaches(&chosen, &branch("feature/x"), &main));
    }

    #[test]
    fn events_from_before_protected_existed_are_unprotected() {
        let old = serde_json::json!({
            "type": "SshKeyAdded", "org_id": Uuid::now_v7(), "description": "deploy", "filter": [],
            "private_key": sealed(), "public_key": "ssh-ed25519 AAAA"
        });
        let event: SshKeyEvent = serde_json::from_value(old).expect("decodes");
        assert!(matches!(event, SshKeyEvent::SshKeyAdded { protected: false, .. }));
    }

    #[test]
    fn parameter_names_are_environment_variable_names() {
        for good in ["DB_PASSWORD", "_x", "a1"] {
            assert!(validate_param_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "Ä"] {
            assert!(validate_param_name(bad).is_err(), "{bad:?}");
        }
        let (org_id, org) = org();
        let values = BTreeMap::from([("NOT-OK".to_owned(), sealed())]);
        let id = ParamSetId::from_uuid(Uuid::now_v7());
        let name = Name::parse("deploy").expect("test setup");
        let error = ParamSet::default()
            .create(id, (org_id, &org), name, SecretScope::default(), values)
            .expect_err("must be refused");
        assert!(error.to_string().contains("NOT-OK"), "{error}");
    }

    #[test]
    fn a_deleted_set_or_key_is_gone() {
        let id = ParamSetId::from_uuid(Uuid::now_v7());
        let created = ParamSetEvent::ParamSetCreated {
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            name: Name::parse("deploy").expect("test setup"),
            filter: LabelFilter::default(),
            protected: false,
            values: BTreeMap::new(),
        };
        let gone = DomainError::NotFound {
            kind: "parameter set",
            id: id.to_string(),
        };
        given::<ParamSet>([created.clone(), ParamSetEvent::ParamSetDeleted])
            .when(|p| p.delete(id))
            .then_err(gone.clone());
        given::<ParamSet>([created, ParamSetEvent::ParamSetDeleted])
            .when(|p| {
                p.replace(
                    id,
                    Name::parse("x").expect("test setup"),
                    SecretScope::default(),
                    BTreeMap::new(),
                )
            })
            .then_err(gone);
        let key = SshKeyId::from_uuid(Uuid::now_v7());
        given::<SshKey>([])
            .when(|k| k.delete(key))
            .then_err(DomainError::NotFound {
                kind: "ssh key",
                id: key.to_string(),
            });
    }

    #[test]
    fn an_ssh_public_key_is_one_line() {
        let (org_id, org) = org();
        let id = SshKeyId::from_uuid(Uuid::now_v7());
        let add = |public: &str| {
            SshKey::default().add(
                id,
                (org_id, &org),
                Name::parse("deploy key").expect("test setup"),
                SecretScope::default(),
                sealed(),
                public.to_owned(),
            )
        };
        assert!(add("ssh-ed25519 AAAAC3Nza... ci@acme\n").is_ok());
        assert!(add("ssh-ed25519 AAAA\nssh-rsa BBBB").is_err());
        assert!(add("  ").is_err());
    }
}
