//! The Terraform provider, driven by the real `terraform` binary against the real `monkeyci`
//! server: create, no-op plan, in-place change, replacement, drift, deletion outside Terraform,
//! import, the data sources and destroy. `org` covers `monkeyci_org`, `resources` every other
//! resource, `tls` an `https://` endpoint.

mod org;
mod resources;
mod tls;

use std::path::Path;
use std::process::Stdio;

use monkeyci_tests::{monkeyci_binary, terraform_provider_dir, ServerProcess};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::process::Command;

pub(crate) const ADMIN_TOKEN: &str = "an-admin-token-for-terraform";

/// A `monkeyci server` on its own database, and a Terraform working directory using the
/// provider built from this workspace.
pub(crate) struct Setup {
    server: ServerProcess,
    pub(crate) base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    pool: PgPool,
    database: String,
}

impl Setup {
    pub(crate) async fn start(pool: PgPool) -> Self {
        let options = pool.connect_options();
        let database = format!("monkeyci_tf_{}", uuid::Uuid::now_v7().simple());
        let url = format!(
            "postgres://{}@{}:{}/{database}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        let migrated = Command::new(monkeyci_binary().expect("binary"))
            .arg("migrate")
            .env("MONKEYCI_DATABASE_URL", &url)
            .output()
            .await
            .expect("run monkeyci migrate");
        assert!(
            migrated.status.success(),
            "{}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        let server = ServerProcess::spawn(&url, ADMIN_TOKEN).await.expect("server");
        let base = server.base.clone();

        let dir = tempfile::tempdir().expect("terraform dir");
        let provider = terraform_provider_dir().expect("provider");
        std::fs::write(
            dir.path().join("terraform.rc"),
            format!(
                "disable_checkpoint = true\nprovider_installation {{\n  dev_overrides {{\n    \"registry.terraform.io/monkeyci/monkeyci\" = {:?}\n  }}\n  direct {{}}\n}}\n",
                provider.display().to_string()
            ),
        )
        .expect("write terraform.rc");
        Self {
            server,
            base,
            http: reqwest::Client::new(),
            dir,
            pool,
            database,
        }
    }

    /// Replaces the Terraform configuration (`main.tf`) with an empty provider block plus `body`.
    pub(crate) fn config(&self, body: &str) {
        self.config_with_provider("", body);
    }

    /// Replaces the Terraform configuration with a provider block holding `provider` plus `body`.
    pub(crate) fn config_with_provider(&self, provider: &str, body: &str) {
        std::fs::write(
            self.dir.path().join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    monkeyci = {{ source = \"monkeyci/monkeyci\" }}\n  }}\n}}\n\nprovider \"monkeyci\" {{\n{provider}}}\n\n{body}\n"
            ),
        )
        .expect("write main.tf");
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `terraform <args>` in the working directory; returns the exit code and the output.
    pub(crate) async fn terraform(&self, args: &[&str]) -> (i32, String) {
        self.terraform_via(&self.base, args).await
    }

    /// Like [`Setup::terraform`], with the provider talking to the API at `endpoint`.
    pub(crate) async fn terraform_via(&self, endpoint: &str, args: &[&str]) -> (i32, String) {
        self.terraform_with(endpoint, None, args).await
    }

    /// Like [`Setup::terraform_via`], with `MONKEYCI_CA_FILE` set to `ca_file` (else unset).
    pub(crate) async fn terraform_with(&self, endpoint: &str, ca_file: Option<&Path>, args: &[&str]) -> (i32, String) {
        let mut command = Command::new("terraform");
        command
            .args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", self.path().join("terraform.rc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("MONKEYCI_ENDPOINT", endpoint)
            .env("MONKEYCI_TOKEN", ADMIN_TOKEN)
            .env_remove("MONKEYCI_CA_FILE")
            .env_remove("TF_LOG")
            .stdin(Stdio::null());
        if let Some(ca_file) = ca_file {
            command.env("MONKEYCI_CA_FILE", ca_file);
        }
        let output = command.output().await.expect("run terraform");
        let text = format!(
            "$ terraform {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    pub(crate) async fn apply(&self) -> String {
        let (code, out) = self
            .terraform(&["apply", "-input=false", "-no-color", "-auto-approve"])
            .await;
        assert_eq!(code, 0, "{out}");
        out
    }

    /// `terraform plan -detailed-exitcode`: 0 without changes, 2 with changes.
    pub(crate) async fn plan(&self) -> (i32, String) {
        self.terraform(&["plan", "-input=false", "-no-color", "-detailed-exitcode"])
            .await
    }

    /// A value of the Terraform state, by resource address and attribute.
    pub(crate) async fn state(&self, address: &str, attribute: &str) -> Value {
        let (code, out) = self.terraform(&["show", "-json", "-no-color"]).await;
        assert_eq!(code, 0, "{out}");
        let json_start = out.find('{').expect("JSON in the output");
        let json_end = out.rfind('}').expect("JSON in the output");
        let shown: Value = serde_json::from_str(&out[json_start..=json_end]).expect("state JSON");
        let resources = shown["values"]["root_module"]["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        resources
            .iter()
            .find(|r| r["address"] == address)
            .map(|r| r["values"][attribute].clone())
            .unwrap_or(Value::Null)
    }

    /// The whole answer (data and errors) to a GraphQL request sent with `token`.
    pub(crate) async fn graphql_as(&self, token: &str, query: &str, variables: Value) -> Value {
        self.http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }

    /// The data of a GraphQL request sent as the admin, which must succeed.
    pub(crate) async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self.graphql_as(ADMIN_TOKEN, query, variables).await;
        assert!(response.get("errors").is_none(), "{response}");
        response["data"].clone()
    }

    /// Every org the API knows: `(id, name, slug)`.
    pub(crate) async fn orgs(&self) -> Vec<(String, String, String)> {
        let data = self
            .graphql("{ orgs(first: 100) { edges { node { id name slug } } } }", json!({}))
            .await;
        data["orgs"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| {
                let node = &e["node"];
                let text = |f: &str| node[f].as_str().expect("string field").to_owned();
                (text("id"), text("name"), text("slug"))
            })
            .collect()
    }

    pub(crate) async fn create_org(&self, name: &str, slug: &str) -> String {
        let data = self
            .graphql(
                "mutation($input: CreateOrgInput!) { createOrg(input: $input) }",
                json!({ "input": { "name": name, "slug": slug } }),
            )
            .await;
        data["createOrg"].as_str().expect("id").to_owned()
    }

    pub(crate) async fn stop(self) {
        let Self {
            mut server,
            pool,
            database,
            ..
        } = self;
        server.child.kill().await.expect("kill server");
        sqlx::query(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
            .execute(&pool)
            .await
            .expect("drop");
    }

    /// The value of a Terraform output, as JSON.
    pub(crate) async fn output(&self, name: &str) -> Value {
        let (code, out) = self.terraform(&["output", "-json", "-no-color", name]).await;
        assert_eq!(code, 0, "{out}");
        let start = out.find(['{', '[', '"']).expect("JSON in the output");
        serde_json::from_str(out[start..].trim()).expect("output JSON")
    }
}
