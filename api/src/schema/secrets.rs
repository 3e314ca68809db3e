//! An org's parameter sets and ssh keys. Values go in and never come out: queries show names,
//! scopes and public keys only. Managing them needs `owner`, and so does everything that decides
//! which repos and refs they reach (a repo's labels, git URL and main branch; see `mutation.rs`).

use std::collections::BTreeMap;

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use monkeyci_commands::{
    AddSshKey, CreateParamSet, DeleteParamSet, DeleteSshKey, ParamSetContent, ReplaceParamSet, SecretText,
};
use monkeyci_domain::access::Role;
use monkeyci_domain::secrets::LabelFilter;
use monkeyci_domain::{OrgId, ParamSetId, SshKeyId};
use monkeyci_projections::queries::{self, Owned};
use monkeyci_projections::{ParamSetRow, SshKeyRow};

use super::mutation::{allow, context, finish, PairInput, Target};
use super::triggers::DeleteInput;
use super::types::Org;
use super::{api, projection_error};
use crate::errors;
use crate::ids::{self, Kind};

/// One rule of a label filter: every `label = value` pair must hold.
#[derive(SimpleObject, Debug, Clone)]
pub struct LabelRule {
    pub labels: Vec<LabelPair>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct LabelPair {
    pub name: String,
    pub value: String,
}

fn rules(filter: &LabelFilter) -> Vec<LabelRule> {
    filter
        .rules()
        .iter()
        .map(|rule| LabelRule {
            labels: rule
                .iter()
                .map(|(name, value)| LabelPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        })
        .collect()
}

/// A parameter set; its values are never shown.
#[derive(Debug)]
pub struct ParamSet(pub ParamSetRow);

#[Object]
impl ParamSet {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        ids::encode(Kind::ParamSet, self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The repos it applies to: those whose labels satisfy one rule. No rules: every repo.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn filter(&self) -> Vec<LabelRule> {
        rules(&self.0.filter)
    }
    /// Only builds of protected refs get it: the repo's main branch and tags.
    async fn protected(&self) -> bool {
        self.0.protected
    }
    /// The names of its parameters (environment variables of the jobs).
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn parameter_names(&self) -> Vec<String> {
        self.0.params.keys().cloned().collect()
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The org that owns the parameter set.
    async fn org(&self, ctx: &Context<'_>) -> Result<Option<Org>> {
        org_row(ctx, self.0.org_id).await
    }
}

/// An ssh key used to check out the code of the repos it applies to.
#[derive(Debug)]
pub struct SshKey(pub SshKeyRow);

#[Object]
impl SshKey {
    /// The global id.
    pub(crate) async fn id(&self) -> ID {
        ids::encode(Kind::SshKey, self.0.id)
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// The public half, to register at the git host.
    async fn public_key(&self) -> &str {
        &self.0.public_key
    }
    /// The repos it applies to: those whose labels satisfy one rule. No rules: every repo.
    #[graphql(complexity = "super::cost::list(super::cost::SMALL_LIST, child_complexity)")]
    async fn filter(&self) -> Vec<LabelRule> {
        rules(&self.0.filter)
    }
    /// Only builds of protected refs use it: the repo's main branch and tags.
    async fn protected(&self) -> bool {
        self.0.protected
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The org that owns the ssh key.
    async fn org(&self, ctx: &Context<'_>) -> Result<Option<Org>> {
        org_row(ctx, self.0.org_id).await
    }
}

/// The org of a parameter set or ssh key, unless deleted.
async fn org_row(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Option<Org>> {
    let row = queries::org(&api(ctx).read, id).await.map_err(projection_error)?;
    Ok(row.map(Org))
}

/// An org's parameter sets and ssh keys (fields of `Org`).
pub(crate) async fn param_sets_of(ctx: &Context<'_>, org: uuid::Uuid) -> Result<Vec<ParamSet>> {
    let rows = queries::param_sets_of_org(&api(ctx).read, org)
        .await
        .map_err(projection_error)?;
    Ok(rows.into_iter().map(ParamSet).collect())
}

pub(crate) async fn ssh_keys_of(ctx: &Context<'_>, org: uuid::Uuid) -> Result<Vec<SshKey>> {
    let rows = queries::ssh_keys_of_org(&api(ctx).read, org)
        .await
        .map_err(projection_error)?;
    Ok(rows.into_iter().map(SshKey).collect())
}

/// A rule of a label filter, as input.
#[derive(InputObject, Debug)]
pub struct LabelRuleInput {
    pub labels: Vec<PairInput>,
}

fn filter_input(filter: Option<Vec<LabelRuleInput>>) -> Vec<Vec<(String, String)>> {
    filter
        .unwrap_or_default()
        .into_iter()
        .map(|rule| rule.labels.into_iter().map(|p| (p.name, p.value)).collect())
        .collect()
}

/// A parameter's value, as input.
#[derive(InputObject)]
pub struct ParamInput {
    pub name: String,
    #[graphql(secret)]
    pub value: String,
}

impl std::fmt::Debug for ParamInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParamInput {{ name: {:?}, value: *** }}", self.name)
    }
}

#[derive(InputObject, Debug)]
pub struct CreateParamSetInput {
    pub org_id: ID,
    pub name: String,
    /// The repos it applies to; none: every repo of the org.
    pub filter: Option<Vec<LabelRuleInput>>,
    /// Only builds of protected refs get it: the repo's main branch and tags (default false).
    pub protected: Option<bool>,
    pub parameters: Vec<ParamInput>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct UpdateParamSetInput {
    pub id: ID,
    pub name: String,
    pub filter: Option<Vec<LabelRuleInput>>,
    /// Only builds of protected refs get it: the repo's main branch and tags (default false).
    pub protected: Option<bool>,
    /// The whole new list of parameters (values are not kept from before: they cannot be read).
    pub parameters: Vec<ParamInput>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct AddSshKeyInput {
    pub org_id: ID,
    pub description: String,
    /// The repos it applies to; none: every repo of the org.
    pub filter: Option<Vec<LabelRuleInput>>,
    /// Only builds of protected refs use it: the repo's main branch and tags (default false).
    pub protected: Option<bool>,
    /// The private key, PEM or OpenSSH format, without a passphrase.
    #[graphql(secret)]
    pub private_key: String,
    pub public_key: String,
    pub idempotency_key: Option<String>,
}

impl std::fmt::Debug for AddSshKeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AddSshKeyInput {{ description: {:?}, private_key: *** }}",
            self.description
        )
    }
}

fn content(
    name: String,
    filter: Option<Vec<LabelRuleInput>>,
    protected: Option<bool>,
    parameters: Vec<ParamInput>,
) -> Result<ParamSetContent> {
    let mut values = BTreeMap::new();
    for p in parameters {
        if values.insert(p.name.clone(), SecretText::new(p.value)).is_some() {
            return Err(errors::bad_input(format!("parameter {:?} is given twice", p.name)));
        }
    }
    Ok(ParamSetContent::new(
        name,
        filter_input(filter),
        protected.unwrap_or(false),
        values,
    ))
}

/// Mutations of parameter sets and ssh keys.
#[derive(Debug, Default)]
pub struct SecretsMutation;

#[Object]
impl SecretsMutation {
    /// Creates a parameter set: its values become environment variables of the jobs of the repos
    /// its filter chooses (with `protected`, only in builds of their main branch and tags), are
    /// stored encrypted, and are masked as `***` in job output.
    async fn create_param_set(&self, ctx: &Context<'_>, input: CreateParamSetInput) -> Result<ID> {
        let org_id = ids::decode_as(&input.org_id, Kind::Org)?;
        allow(ctx, Target::Org(org_id), Role::Owner).await?;
        let command = CreateParamSet {
            org_id: OrgId::from_uuid(org_id),
            content: content(input.name, input.filter, input.protected, input.parameters)?,
        };
        let result = api(ctx)
            .commands
            .create_param_set(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "createParamSet", result, |id| {
            ids::encode(Kind::ParamSet, id.as_uuid())
        })
    }

    /// Replaces a parameter set's name, filter, protection and parameters.
    async fn update_param_set(&self, ctx: &Context<'_>, input: UpdateParamSetInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::ParamSet)?;
        let org = super::owner_of(ctx, Owned::ParamSet, id, "parameter set").await?;
        allow(ctx, Target::Org(org), Role::Owner).await?;
        let command = ReplaceParamSet {
            param_set_id: ParamSetId::from_uuid(id),
            content: content(input.name, input.filter, input.protected, input.parameters)?,
        };
        let result = api(ctx)
            .commands
            .replace_param_set(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "updateParamSet", result, |id| {
            ids::encode(Kind::ParamSet, id.as_uuid())
        })
    }

    /// Deletes a parameter set and destroys its key: its values cannot be read again anywhere.
    async fn delete_param_set(&self, ctx: &Context<'_>, input: DeleteInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::ParamSet)?;
        let org = super::owner_of(ctx, Owned::ParamSet, id, "parameter set").await?;
        allow(ctx, Target::Org(org), Role::Owner).await?;
        let command = DeleteParamSet {
            param_set_id: ParamSetId::from_uuid(id),
        };
        let result = api(ctx)
            .commands
            .delete_param_set(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "deleteParamSet", result, |id| {
            ids::encode(Kind::ParamSet, id.as_uuid())
        })
    }

    /// Adds an ssh key that checks out the code of the repos its filter chooses.
    async fn add_ssh_key(&self, ctx: &Context<'_>, input: AddSshKeyInput) -> Result<ID> {
        let org_id = ids::decode_as(&input.org_id, Kind::Org)?;
        allow(ctx, Target::Org(org_id), Role::Owner).await?;
        let command = AddSshKey {
            org_id: OrgId::from_uuid(org_id),
            description: input.description,
            filter: filter_input(input.filter),
            protected: input.protected.unwrap_or(false),
            public_key: input.public_key,
            private_key: SecretText::new(input.private_key),
        };
        let result = api(ctx)
            .commands
            .add_ssh_key(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "addSshKey", result, |id| ids::encode(Kind::SshKey, id.as_uuid()))
    }

    /// Deletes an ssh key and destroys its data key.
    async fn delete_ssh_key(&self, ctx: &Context<'_>, input: DeleteInput) -> Result<ID> {
        let id = ids::decode_as(&input.id, Kind::SshKey)?;
        let org = super::owner_of(ctx, Owned::SshKey, id, "ssh key").await?;
        allow(ctx, Target::Org(org), Role::Owner).await?;
        let command = DeleteSshKey {
            ssh_key_id: SshKeyId::from_uuid(id),
        };
        let result = api(ctx)
            .commands
            .delete_ssh_key(&context(ctx, input.idempotency_key)?, command)
            .await;
        finish(ctx, "deleteSshKey", result, |id| {
            ids::encode(Kind::SshKey, id.as_uuid())
        })
    }
}
