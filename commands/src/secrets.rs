//! Commands on an org's parameter sets and ssh keys. Values arrive in the clear, are sealed with
//! the aggregate's data key before anything is appended, and never enter a fingerprint or a log.

use std::collections::BTreeMap;

use monkeyci_domain::org::Org;
use monkeyci_domain::secrets::{LabelFilter, ParamSet, SecretScope, SshKey};
use monkeyci_domain::{Name, OrgId, ParamSetId, SshKeyId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::CommandContext;
use crate::error::CommandError;
use crate::handler::{parse, CommandHandler, Decision};
use crate::keys::KeyStore;
use crate::triggers::SecretText;

/// The field name an ssh key's private key is sealed under.
pub const SSH_PRIVATE_KEY: &str = "private_key";

/// A parameter set's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSetContent {
    pub name: String,
    /// Rules of `label = value` pairs; a repo is chosen when all pairs of one rule hold.
    pub filter: Vec<Vec<(String, String)>>,
    /// Only for builds of protected refs (the repo's main branch, tags).
    pub protected: bool,
    /// Parameter names in the fingerprint; their values left out.
    pub names: Vec<String>,
    #[serde(skip)]
    pub values: BTreeMap<String, SecretText>,
}

impl ParamSetContent {
    /// Content with `values` by name; `names` follows from them.
    pub fn new(
        name: String,
        filter: Vec<Vec<(String, String)>>,
        protected: bool,
        values: BTreeMap<String, SecretText>,
    ) -> Self {
        Self {
            name,
            filter,
            protected,
            names: values.keys().cloned().collect(),
            values,
        }
    }
}

/// Creates a parameter set in an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateParamSet {
    pub org_id: OrgId,
    pub content: ParamSetContent,
}

/// Replaces a parameter set's name, filter and values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceParamSet {
    pub param_set_id: ParamSetId,
    pub content: ParamSetContent,
}

/// Deletes a parameter set and destroys its data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteParamSet {
    pub param_set_id: ParamSetId,
}

/// Adds an ssh key to an org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSshKey {
    pub org_id: OrgId,
    pub description: String,
    pub filter: Vec<Vec<(String, String)>>,
    /// Only for builds of protected refs (the repo's main branch, tags).
    pub protected: bool,
    pub public_key: String,
    #[serde(skip)]
    pub private_key: SecretText,
}

/// Deletes an ssh key and destroys its data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteSshKey {
    pub ssh_key_id: SshKeyId,
}

/// At most this many bytes in one value (a certificate fits; a file does not belong here).
const MAX_VALUE_BYTES: usize = 64 * 1024;

fn invalid(field: &'static str, reason: String) -> CommandError {
    CommandError::Domain(monkeyci_domain::DomainError::Invalid(
        monkeyci_domain::ValidationError { field, reason },
    ))
}

/// Validates a filter and protection into a scope.
fn scope(filter: &[Vec<(String, String)>], protected: bool) -> Result<SecretScope, CommandError> {
    Ok(SecretScope {
        filter: parse(LabelFilter::parse(filter.to_vec()))?,
        protected,
    })
}

/// Validates and seals a set's content with `id`'s data key.
async fn seal_content(
    keys: &KeyStore,
    id: Uuid,
    content: &ParamSetContent,
) -> Result<(Name, SecretScope, BTreeMap<String, monkeyci_crypto::Sealed>), CommandError> {
    let name = parse(Name::parse(&content.name))?;
    let scope = scope(&content.filter, content.protected)?;
    let mut sealed = BTreeMap::new();
    if content.values.values().any(|v| v.expose().len() > MAX_VALUE_BYTES) {
        let reason = format!("a parameter value may have at most {MAX_VALUE_BYTES} bytes");
        return Err(invalid("parameters", reason));
    }
    let key = keys.get_or_create(id).await?;
    for (param, value) in &content.values {
        sealed.insert(param.clone(), KeyStore::seal(&key, id, param, value.expose())?);
    }
    Ok((name, scope, sealed))
}

/// Removes the data key made for a new aggregate whose creation was refused, so that bad input
/// leaves nothing behind. The id was fresh: no other aggregate uses that key.
pub(crate) async fn forget_key_if_refused<T>(
    keys: &KeyStore,
    id: Uuid,
    result: Result<T, CommandError>,
) -> Result<T, CommandError> {
    if result.is_err() {
        if let Err(error) = keys.destroy(id).await {
            tracing::warn!(%id, %error, "could not remove the data key of a refused create");
        }
    }
    result
}

impl CommandHandler {
    /// Creates a parameter set; its values are sealed with a data key of its own.
    pub async fn create_param_set(
        &self,
        ctx: &CommandContext,
        input: CreateParamSet,
    ) -> Result<ParamSetId, CommandError> {
        let keys = self.key_store()?;
        let id = ParamSetId::from_uuid(Uuid::now_v7());
        let org_id = input.org_id;
        let content = &input.content;
        let created = self
            .execute(ctx, "createParamSet", &input, move || {
                Box::pin(async move {
                    let org = self.load::<Org>(org_id).await?;
                    let set = self.load::<ParamSet>(id).await?;
                    let (name, scope, values) = seal_content(keys, id.as_uuid(), content).await?;
                    let events = set.state.create(id, (org_id, &org.state), name, scope, values)?;
                    Ok(Decision::new(id, Some(org_id)).with(&set, events))
                })
            })
            .await;
        forget_key_if_refused(keys, id.as_uuid(), created).await
    }

    /// Replaces a parameter set's content.
    pub async fn replace_param_set(
        &self,
        ctx: &CommandContext,
        input: ReplaceParamSet,
    ) -> Result<ParamSetId, CommandError> {
        let keys = self.key_store()?;
        let id = input.param_set_id;
        let content = &input.content;
        self.execute(ctx, "replaceParamSet", &input, move || {
            Box::pin(async move {
                let set = self.load::<ParamSet>(id).await?;
                let org_id = set.state.existing(id)?;
                let (name, scope, values) = seal_content(keys, id.as_uuid(), content).await?;
                let events = set.state.replace(id, name, scope, values)?;
                Ok(Decision::new(id, Some(org_id)).with(&set, events))
            })
        })
        .await
    }

    /// Deletes a parameter set, then destroys its data key.
    pub async fn delete_param_set(
        &self,
        ctx: &CommandContext,
        input: DeleteParamSet,
    ) -> Result<ParamSetId, CommandError> {
        let id = input.param_set_id;
        let deleted = self
            .execute(ctx, "deleteParamSet", &input, move || {
                Box::pin(async move {
                    let set = self.load::<ParamSet>(id).await?;
                    let org_id = set.state.existing(id)?;
                    let events = set.state.delete(id)?;
                    Ok(Decision::new(id, Some(org_id)).with(&set, events))
                })
            })
            .await?;
        if let Some(keys) = self.keys() {
            keys.destroy(id.as_uuid()).await?;
        }
        Ok(deleted)
    }

    /// Adds an ssh key; its private key is sealed with a data key of its own.
    pub async fn add_ssh_key(&self, ctx: &CommandContext, input: AddSshKey) -> Result<SshKeyId, CommandError> {
        let keys = self.key_store()?;
        let id = SshKeyId::from_uuid(Uuid::now_v7());
        let description = &parse(Name::parse(&input.description))?;
        let scope = &scope(&input.filter, input.protected)?;
        let private_key = input.private_key.expose();
        if !private_key.contains("PRIVATE KEY") || private_key.len() > MAX_VALUE_BYTES {
            let reason = "must be a private key in PEM or OpenSSH format (-----BEGIN … PRIVATE KEY-----)";
            return Err(invalid("privateKey", reason.into()));
        }
        let (org_id, public_key) = (input.org_id, &input.public_key);
        let added = self
            .execute(ctx, "addSshKey", &input, move || {
                Box::pin(async move {
                    let org = self.load::<Org>(org_id).await?;
                    let ssh_key = self.load::<SshKey>(id).await?;
                    let key = keys.get_or_create(id.as_uuid()).await?;
                    let sealed = KeyStore::seal(&key, id.as_uuid(), SSH_PRIVATE_KEY, private_key)?;
                    let events = ssh_key.state.add(
                        id,
                        (org_id, &org.state),
                        description.clone(),
                        scope.clone(),
                        sealed,
                        public_key.clone(),
                    )?;
                    Ok(Decision::new(id, Some(org_id)).with(&ssh_key, events))
                })
            })
            .await;
        forget_key_if_refused(keys, id.as_uuid(), added).await
    }

    /// Deletes an ssh key, then destroys its data key.
    pub async fn delete_ssh_key(&self, ctx: &CommandContext, input: DeleteSshKey) -> Result<SshKeyId, CommandError> {
        let id = input.ssh_key_id;
        let deleted = self
            .execute(ctx, "deleteSshKey", &input, move || {
                Box::pin(async move {
                    let ssh_key = self.load::<SshKey>(id).await?;
                    let org_id = ssh_key.state.existing(id)?;
                    let events = ssh_key.state.delete(id)?;
                    Ok(Decision::new(id, Some(org_id)).with(&ssh_key, events))
                })
            })
            .await?;
        if let Some(keys) = self.keys() {
            keys.destroy(id.as_uuid()).await?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::{CreateWebhook, RotateWebhookSecret};
    use monkeyci_domain::{RepoId, WebhookId};

    /// Commands are logged with `Debug` and fingerprinted with `Serialize`: neither shows a value.
    #[test]
    fn secret_values_stay_out_of_debug_output_and_fingerprints() {
        let value = "hunter2-and-more";
        let values = BTreeMap::from([("DB_PASSWORD".to_owned(), SecretText::new(value.into()))]);
        let set = CreateParamSet {
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            content: ParamSetContent::new("deploy".into(), vec![], true, values),
        };
        let key = AddSshKey {
            org_id: OrgId::from_uuid(Uuid::now_v7()),
            description: "deploy key".into(),
            filter: vec![],
            protected: false,
            public_key: "ssh-ed25519 AAAA".into(),
            private_key: SecretText::new(value.into()),
        };
        let webhook = CreateWebhook {
            repo_id: RepoId::from_uuid(Uuid::now_v7()),
            host: "github".into(),
            secret: Some(SecretText::new(value.into())),
        };
        let rotate = RotateWebhookSecret {
            webhook_id: WebhookId::from_uuid(Uuid::now_v7()),
            secret: Some(SecretText::new(value.into())),
        };
        let shown = [
            format!("{set:?}"),
            format!("{key:?}"),
            format!("{webhook:?}"),
            format!("{rotate:?}"),
            serde_json::to_string(&set).expect("json"),
            serde_json::to_string(&key).expect("json"),
            serde_json::to_string(&webhook).expect("json"),
            serde_json::to_string(&rotate).expect("json"),
        ];
        for text in shown {
            assert!(!text.contains(value), "{text}");
        }
        assert!(format!("{set:?}").contains("DB_PASSWORD"), "names are not secret");
    }
}
