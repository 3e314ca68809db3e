//! The Terraform provider, driven by the real `terraform` binary against the real `monkeyci`
//! server: create, no-op plan, in-place rename, slug replacement, drift, deletion outside
//! Terraform, import, the data source and destroy.

use std::path::Path;
use std::process::Stdio;

use monkeyci_tests::{monkeyci_binary, terraform_provider_dir, ServerProcess};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::process::Command;

const ADMIN_TOKEN: &str = "an-admin-token-for-terraform";

/// A `monkeyci server` on its own database, and a Terraform working directory using the
/// provider built from this workspace.
struct Setup {
    server: ServerProcess,
    base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    pool: PgPool,
    database: String,
}

impl Setup {
    async fn start(pool: PgPool) -> Self {
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

    /// Replaces the Terraform configuration (`main.tf`) with the provider block plus `body`.
    fn config(&self, body: &str) {
        std::fs::write(
            self.dir.path().join("main.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    monkeyci = {{ source = \"monkeyci/monkeyci\" }}\n  }}\n}}\n\nprovider \"monkeyci\" {{}}\n\n{body}\n"
            ),
        )
        .expect("write main.tf");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `terraform <args>` in the working directory; returns the exit code and the output.
    async fn terraform(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new("terraform")
            .args(args)
            .current_dir(self.path())
            .env("TF_CLI_CONFIG_FILE", self.path().join("terraform.rc"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("MONKEYCI_ENDPOINT", &self.base)
            .env("MONKEYCI_TOKEN", ADMIN_TOKEN)
            .env_remove("TF_LOG")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run terraform");
        let text = format!(
            "$ terraform {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    async fn apply(&self) -> String {
        let (code, out) = self
            .terraform(&["apply", "-input=false", "-no-color", "-auto-approve"])
            .await;
        assert_eq!(code, 0, "{out}");
        out
    }

    /// `terraform plan -detailed-exitcode`: 0 without changes, 2 with changes.
    async fn plan(&self) -> (i32, String) {
        self.terraform(&["plan", "-input=false", "-no-color", "-detailed-exitcode"])
            .await
    }

    /// A value of the Terraform state, by resource address and attribute.
    async fn state(&self, address: &str, attribute: &str) -> Value {
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

    async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response: Value = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(response.get("errors").is_none(), "{response}");
        response["data"].clone()
    }

    /// Every org the API knows: `(id, name, slug)`.
    async fn orgs(&self) -> Vec<(String, String, String)> {
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

    async fn create_org(&self, name: &str, slug: &str) -> String {
        let data = self
            .graphql(
                "mutation($input: CreateOrgInput!) { createOrg(input: $input) }",
                json!({ "input": { "name": name, "slug": slug } }),
            )
            .await;
        data["createOrg"].as_str().expect("id").to_owned()
    }

    async fn stop(self) {
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
}

fn org_config(name: &str, slug: &str) -> String {
    format!("resource \"monkeyci_org\" \"acme\" {{\n  name = {name:?}\n  slug = {slug:?}\n}}\n")
}

#[sqlx::test(migrations = false)]
async fn an_org_is_created_updated_replaced_reconciled_and_destroyed(pool: PgPool) {
    let tf = Setup::start(pool).await;

    // Create.
    tf.config(&org_config("Acme", "acme"));
    tf.apply().await;
    let orgs = tf.orgs().await;
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    let (id, name, slug) = orgs[0].clone();
    assert_eq!((name.as_str(), slug.as_str()), ("Acme", "acme"));
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, json!(id));

    // Nothing to do right after.
    let (code, out) = tf.plan().await;
    assert_eq!(code, 0, "no changes expected:\n{out}");

    // A new name is an in-place rename of the same org.
    tf.config(&org_config("Acme Corp", "acme"));
    let (code, out) = tf.plan().await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("updated in-place"), "{out}");
    assert!(out.contains("0 to add, 1 to change, 0 to destroy"), "{out}");
    tf.apply().await;
    assert_eq!(
        tf.orgs().await,
        vec![(id.clone(), "Acme Corp".to_owned(), "acme".to_owned())]
    );
    let (code, out) = tf.plan().await;
    assert_eq!(code, 0, "no changes expected:\n{out}");

    // A new slug replaces the org.
    tf.config(&org_config("Acme Corp", "acme-corp"));
    let (code, out) = tf.plan().await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("must be replaced"), "{out}");
    assert!(out.contains("1 to add, 0 to change, 1 to destroy"), "{out}");
    tf.apply().await;
    let orgs = tf.orgs().await;
    assert_eq!(orgs.len(), 1, "the old org is deleted: {orgs:?}");
    let (new_id, name, slug) = orgs[0].clone();
    assert_ne!(new_id, id, "a replacement is a new org");
    assert_eq!((name.as_str(), slug.as_str()), ("Acme Corp", "acme-corp"));
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, json!(new_id));

    // A rename outside Terraform is drift, and apply puts the configured name back.
    tf.graphql(
        "mutation($input: RenameOrgInput!) { renameOrg(input: $input) }",
        json!({ "input": { "id": new_id, "name": "Renamed by hand" } }),
    )
    .await;
    let (code, out) = tf.plan().await;
    assert_eq!(code, 2, "drift expected:\n{out}");
    assert!(out.contains("\"Renamed by hand\" -> \"Acme Corp\""), "{out}");
    tf.apply().await;
    assert_eq!(tf.orgs().await[0].1, "Acme Corp");

    // An org deleted outside Terraform is planned for creation again, and apply recreates it.
    tf.graphql(
        "mutation($input: DeleteOrgInput!) { deleteOrg(input: $input) }",
        json!({ "input": { "id": new_id } }),
    )
    .await;
    assert!(tf.orgs().await.is_empty());
    let (code, out) = tf.plan().await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("will be created"), "{out}");
    assert!(out.contains("1 to add, 0 to change, 0 to destroy"), "{out}");
    tf.apply().await;
    let orgs = tf.orgs().await;
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_ne!(orgs[0].0, new_id);
    assert_eq!((orgs[0].1.as_str(), orgs[0].2.as_str()), ("Acme Corp", "acme-corp"));
    let (code, out) = tf.plan().await;
    assert_eq!(code, 0, "no changes expected:\n{out}");

    // Destroy leaves no org behind.
    let (code, out) = tf
        .terraform(&["destroy", "-input=false", "-no-color", "-auto-approve"])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(tf.orgs().await.is_empty());

    tf.stop().await;
}

#[sqlx::test(migrations = false)]
async fn an_org_made_through_the_api_is_imported_and_read_by_the_data_source(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let id = tf.create_org("Imported", "imported").await;

    tf.config(&format!(
        "{}\ndata \"monkeyci_org\" \"by_slug\" {{\n  slug = \"imported\"\n}}\n\noutput \"by_slug\" {{\n  value = data.monkeyci_org.by_slug\n}}\n\ndata \"monkeyci_org\" \"by_id\" {{\n  id = monkeyci_org.acme.id\n}}\n\noutput \"by_id\" {{\n  value = data.monkeyci_org.by_id\n}}\n",
        org_config("Imported", "imported")
    ));
    let (code, out) = tf
        .terraform(&["import", "-input=false", "-no-color", "monkeyci_org.acme", &id])
        .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, json!(id));
    assert_eq!(tf.state("monkeyci_org.acme", "name").await, json!("Imported"));
    assert_eq!(tf.state("monkeyci_org.acme", "slug").await, json!("imported"));

    // The imported org matches the configuration: nothing to change.
    let (code, out) = tf.plan().await;
    assert_eq!(code, 0, "no changes expected:\n{out}");
    tf.apply().await;
    let (code, out) = tf.terraform(&["output", "-json", "-no-color", "by_slug"]).await;
    assert_eq!(code, 0, "{out}");
    let json_start = out.find('{').expect("JSON in the output");
    let json_end = out.rfind('}').expect("JSON in the output");
    let by_slug: Value = serde_json::from_str(&out[json_start..=json_end]).expect("output JSON");
    assert_eq!(by_slug, json!({ "id": id, "name": "Imported", "slug": "imported" }));
    let (code, out) = tf.terraform(&["output", "-json", "-no-color", "by_id"]).await;
    assert_eq!(code, 0, "{out}");
    let json_start = out.find('{').expect("JSON in the output");
    let json_end = out.rfind('}').expect("JSON in the output");
    let by_id: Value = serde_json::from_str(&out[json_start..=json_end]).expect("output JSON");
    assert_eq!(by_id, by_slug, "the same org by id and by slug");
    assert_eq!(tf.orgs().await.len(), 1, "import and apply created nothing");

    // An unknown slug is an error that names it.
    tf.config("data \"monkeyci_org\" \"missing\" {\n  slug = \"no-such-org\"\n}\n");
    let (code, out) = tf.plan().await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no-such-org"), "{out}");

    tf.stop().await;
}

#[sqlx::test(migrations = false)]
async fn api_errors_and_missing_settings_become_terraform_diagnostics(pool: PgPool) {
    let tf = Setup::start(pool).await;
    tf.create_org("Taken", "taken").await;

    // The API refuses a second org with the same slug: apply fails with its message and code.
    tf.config(&org_config("Mine", "taken"));
    let (code, out) = tf
        .terraform(&["apply", "-input=false", "-no-color", "-auto-approve"])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Cannot create the org"), "{out}");
    assert!(out.contains("(CONFLICT)"), "{out}");
    assert_eq!(tf.orgs().await.len(), 1, "nothing was created");
    assert_eq!(
        tf.state("monkeyci_org.acme", "id").await,
        Value::Null,
        "nothing in the state"
    );

    // Importing an id that names no org fails instead of importing nothing.
    let (code, out) = tf
        .terraform(&[
            "import",
            "-input=false",
            "-no-color",
            "monkeyci_org.acme",
            "not-an-org-id",
        ])
        .await;
    assert_eq!(code, 1, "{out}");

    // Without endpoint and token (neither configured nor in the environment) the provider says so.
    let output = Command::new("terraform")
        .args(["plan", "-input=false", "-no-color"])
        .current_dir(tf.path())
        .env("TF_CLI_CONFIG_FILE", tf.path().join("terraform.rc"))
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("MONKEYCI_ENDPOINT")
        .env_remove("MONKEYCI_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run terraform");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(
        out.contains("No MonkeyCI endpoint") && out.contains("MONKEYCI_ENDPOINT"),
        "{out}"
    );
    assert!(
        out.contains("No MonkeyCI token") && out.contains("MONKEYCI_TOKEN"),
        "{out}"
    );

    tf.stop().await;
}
