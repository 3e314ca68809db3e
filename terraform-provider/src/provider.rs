//! The provider: its configuration and the list of resources and data sources.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description, Schema};
use tf_provider::value::{ValueEmpty, ValueString};
use tf_provider::{map, AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::api_token::ApiTokenResource;
use crate::client::{read_ca_file, Client, SharedClient};
use crate::managed::ManagedResource;
use crate::org::{Org, OrgDataSource};
use crate::param_set::ParamSet;
use crate::repo::{Repo, RepoDataSource};
use crate::schedule::Schedule;
use crate::ssh_key::SshKey;
use crate::webhook::Webhook;

/// The `provider "monkeyci" { ... }` block.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderConfig<'a> {
    #[serde(borrow = "'a")]
    pub endpoint: ValueString<'a>,
    #[serde(borrow = "'a")]
    pub token: ValueString<'a>,
    #[serde(borrow = "'a")]
    pub ca_file: ValueString<'a>,
}

/// Serves `monkeyci_*` resources and data sources.
#[derive(Debug, Default)]
pub struct MonkeyCiProvider {
    client: SharedClient,
}

/// A string attribute of the provider block.
fn optional_string(description: &str, sensitive: bool) -> Attribute {
    Attribute {
        attr_type: AttributeType::String,
        description: Description::plain(description),
        constraint: AttributeConstraint::Optional,
        sensitive,
        ..Default::default()
    }
}

/// The configured value, else the environment variable `env`; `None` when neither is set.
fn setting(value: &ValueString<'_>, env: &str) -> Option<String> {
    value
        .as_ref_option()
        .map(|v| v.to_string())
        .or_else(|| std::env::var(env).ok())
        .filter(|v| !v.is_empty())
}

#[async_trait]
impl Provider for MonkeyCiProvider {
    type Config<'a> = ProviderConfig<'a>;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::plain("MonkeyCI, through its GraphQL API."),
                attributes: map! {
                    "endpoint" => optional_string(
                        "Base URL of the MonkeyCI server, e.g. `http://127.0.0.1:8080` or `https://ci.example.com`. Defaults to the environment variable MONKEYCI_ENDPOINT.",
                        false,
                    ),
                    "token" => optional_string(
                        "API token sent as `Authorization: Bearer`. Defaults to the environment variable MONKEYCI_TOKEN.",
                        true,
                    ),
                    "ca_file" => optional_string(
                        "Path to a PEM file of CA certificates to trust for an `https://` endpoint, besides the system's roots (e.g. a private CA). Defaults to the environment variable MONKEYCI_CA_FILE.",
                        false,
                    ),
                },
                ..Default::default()
            },
        })
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _terraform_version: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let endpoint = setting(&config.endpoint, "MONKEYCI_ENDPOINT");
        let token = setting(&config.token, "MONKEYCI_TOKEN");
        if endpoint.is_none() {
            diags.error(
                "No MonkeyCI endpoint",
                "Set `endpoint` in the provider block or the environment variable MONKEYCI_ENDPOINT, e.g. http://127.0.0.1:8080.",
                AttributePath::new("endpoint"),
            );
        }
        if token.is_none() {
            diags.error(
                "No MonkeyCI token",
                "Set `token` in the provider block or the environment variable MONKEYCI_TOKEN.",
                AttributePath::new("token"),
            );
        }
        let extra_roots = match setting(&config.ca_file, "MONKEYCI_CA_FILE") {
            Some(path) => match read_ca_file(Path::new(&path)) {
                Ok(certificates) => certificates,
                Err(e) => {
                    diags.error(
                        "Cannot use the CA file",
                        format!("{e:#}"),
                        AttributePath::new("ca_file"),
                    );
                    return None;
                }
            },
            None => Vec::new(),
        };
        let (endpoint, token) = (endpoint?, token?);
        match Client::new(&endpoint, &token, extra_roots) {
            Ok(client) => {
                self.client.set(client);
                Some(())
            }
            Err(e) => {
                diags.root_error("Cannot create the HTTP client", format!("{e:#}"));
                None
            }
        }
    }

    fn get_resources(&self, _diags: &mut Diagnostics) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(map! {
            "org" => ManagedResource::<Org>::new(self.client.clone()),
            "repo" => ManagedResource::<Repo>::new(self.client.clone()),
            "webhook" => ManagedResource::<Webhook>::new(self.client.clone()),
            "schedule" => ManagedResource::<Schedule>::new(self.client.clone()),
            "param_set" => ManagedResource::<ParamSet>::new(self.client.clone()),
            "ssh_key" => ManagedResource::<SshKey>::new(self.client.clone()),
            "api_token" => ManagedResource::<ApiTokenResource>::new(self.client.clone()),
        })
    }

    fn get_data_sources(&self, _diags: &mut Diagnostics) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(map! {
            "org" => OrgDataSource::new(self.client.clone()),
            "repo" => RepoDataSource::new(self.client.clone()),
        })
    }
}
