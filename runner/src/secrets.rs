//! The secrets a build gets: the values of its org's parameter sets and the ssh key whose scopes
//! reach it (label filters that choose its repo; protected ones only for the main branch and
//! tags), opened with their data keys, and a masker for every one of them.

use std::collections::BTreeMap;

use monkeyci_commands::{KeyStore, SSH_PRIVATE_KEY};
use monkeyci_crypto::{Masker, Zeroizing};
use monkeyci_domain::{GitRef, Labels, RefName};
use monkeyci_projections::{queries, ReadModels};
use uuid::Uuid;

/// What a build may use, in the clear, for as long as it runs.
#[derive(Default)]
pub struct BuildSecrets {
    /// Parameters of the chosen sets, by name; later sets override earlier ones.
    pub env: BTreeMap<String, String>,
    /// The private key of the first chosen ssh key.
    pub ssh_key: Option<Zeroizing<String>>,
    /// Replaces every value above with `***` in job output.
    pub masker: Option<Masker>,
}

impl std::fmt::Debug for BuildSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSecrets")
            .field("params", &self.env.keys().collect::<Vec<_>>())
            .field("ssh_key", &self.ssh_key.is_some())
            .finish()
    }
}

/// What decides which secrets a build gets.
pub struct BuildScope<'a> {
    pub org_id: Uuid,
    /// The repo's labels.
    pub labels: &'a Labels,
    /// The repo's main branch.
    pub main_branch: &'a RefName,
    /// The ref the build checks out.
    pub git_ref: &'a GitRef,
}

/// Opens the parameter sets and ssh key of the build's org whose scopes reach the build.
pub async fn load(read: &ReadModels, keys: Option<&KeyStore>, build: BuildScope<'_>) -> Result<BuildSecrets, String> {
    let reaches =
        |scope: monkeyci_domain::secrets::SecretScope| scope.reaches(build.labels, build.git_ref, build.main_branch);
    let sets: Vec<_> = queries::param_sets_of_org(read, build.org_id)
        .await
        .map_err(|e| format!("reading the org's parameters failed: {e}"))?
        .into_iter()
        .filter(|s| reaches(s.scope()))
        .collect();
    let ssh_key = queries::ssh_keys_of_org(read, build.org_id)
        .await
        .map_err(|e| format!("reading the org's ssh keys failed: {e}"))?
        .into_iter()
        .find(|k| reaches(k.scope()));
    if sets.is_empty() && ssh_key.is_none() {
        return Ok(BuildSecrets::default());
    }
    let keys = keys.ok_or("the org has parameters or ssh keys for this repo, but this runner has no master key")?;
    let mut secrets = BuildSecrets::default();
    let mut masked = Vec::new();
    for set in sets {
        let key = keys
            .get(set.id)
            .await
            .map_err(|e| format!("opening parameter set {:?} failed: {e}", set.name))?;
        for (name, sealed) in &set.params {
            let value = KeyStore::open_with(&key, set.id, name, sealed)
                .map_err(|e| format!("opening parameter {name} of set {:?} failed: {e}", set.name))?;
            masked.push(value.to_string());
            secrets.env.insert(name.clone(), value.to_string());
        }
    }
    if let Some(ssh) = ssh_key {
        let private = keys
            .open(ssh.id, SSH_PRIVATE_KEY, &ssh.private_key)
            .await
            .map_err(|e| format!("opening ssh key {:?} failed: {e}", ssh.description))?;
        masked.push(private.to_string());
        secrets.ssh_key = Some(private);
    }
    secrets.masker = Some(Masker::new(masked).map_err(|e| e.to_string())?);
    Ok(secrets)
}
