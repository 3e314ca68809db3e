//! `monkeyci_repo`, `monkeyci_webhook`, `monkeyci_schedule`, `monkeyci_param_set`,
//! `monkeyci_ssh_key`, `monkeyci_api_token` and the data source `monkeyci_repo`.

use std::path::Path;

use serde_json::{json, Value};
use sqlx::PgPool;

use super::Setup;

/// An ed25519 key pair made by the real ssh-keygen: `(private, public)`.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    let private = std::fs::read_to_string(&path).expect("private key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (private, public.trim().to_owned())
}

/// What the configuration below sets; each test changes some of it.
struct Config {
    repo_name: &'static str,
    labels: &'static str,
    webhook_secret: Option<&'static str>,
    cron: &'static str,
    set_name: &'static str,
    password: &'static str,
    /// Whether the set and the key go only to protected refs; `None` leaves the attribute out.
    set_protected: Option<bool>,
    key_description: &'static str,
    key_protected: Option<bool>,
    token_role: &'static str,
    private_key: String,
    public_key: String,
}

impl Config {
    fn new(keys: &Path) -> Self {
        let (private_key, public_key) = keygen(keys, "deploy");
        Self {
            repo_name: "app",
            labels: "{ env = \"prod\" }",
            webhook_secret: None,
            cron: "0 3 * * *",
            set_name: "prod-secrets",
            password: "first-password",
            set_protected: None,
            key_description: "deploy key",
            key_protected: None,
            token_role: "member",
            private_key,
            public_key,
        }
    }

    fn render(&self) -> String {
        let secret = self
            .webhook_secret
            .map(|s| format!("  secret  = {s:?}\n"))
            .unwrap_or_default();
        let protected = |flag: Option<bool>| flag.map(|p| format!("  protected  = {p}\n")).unwrap_or_default();
        let (set_protected, key_protected) = (protected(self.set_protected), protected(self.key_protected));
        format!(
            r#"
resource "monkeyci_org" "acme" {{
  name = "Acme"
  slug = "acme"
}}

resource "monkeyci_repo" "app" {{
  org_id  = monkeyci_org.acme.id
  name    = {repo_name:?}
  git_url = "https://git.example.com/acme/app.git"
  labels  = {labels}
}}

resource "monkeyci_webhook" "push" {{
  repo_id = monkeyci_repo.app.id
  host    = "github"
{secret}}}

resource "monkeyci_schedule" "nightly" {{
  repo_id = monkeyci_repo.app.id
  cron    = {cron:?}
}}

resource "monkeyci_param_set" "prod" {{
  org_id     = monkeyci_org.acme.id
  name       = {set_name:?}
  filter     = [{{ env = "prod" }}]
  parameters = {{ PASSWORD = {password:?}, REGION = "eu" }}
{set_protected}}}

resource "monkeyci_ssh_key" "deploy" {{
  org_id      = monkeyci_org.acme.id
  description = {key_description:?}
  filter      = [{{ env = "prod" }}]
  private_key = {private_key:?}
  public_key  = {public_key:?}
{key_protected}}}

resource "monkeyci_api_token" "ci" {{
  org_id = monkeyci_org.acme.id
  name   = "ci"
  role   = {token_role:?}
}}

data "monkeyci_repo" "by_name" {{
  org_id = monkeyci_org.acme.id
  name   = monkeyci_repo.app.name
}}

output "repo_by_name" {{
  value = data.monkeyci_repo.by_name
}}
"#,
            repo_name = self.repo_name,
            labels = self.labels,
            cron = self.cron,
            set_name = self.set_name,
            password = self.password,
            key_description = self.key_description,
            token_role = self.token_role,
            private_key = self.private_key,
            public_key = self.public_key,
        )
    }
}

impl Setup {
    /// `node(id)` with the fields of `... on <type_name>`; `Value::Null` when there is none.
    pub(crate) async fn node(&self, id: &Value, type_name: &str, fields: &str) -> Value {
        let query = format!("query($id: ID!) {{ node(id: $id) {{ ... on {type_name} {{ {fields} }} }} }}");
        self.graphql(&query, json!({ "id": id })).await["node"].clone()
    }

    /// Sends a mutation as the admin and returns its answer.
    pub(crate) async fn mutation(&self, name: &str, input_type: &str, input: Value) -> Value {
        let query = format!("mutation($input: {input_type}!) {{ {name}(input: $input) }}");
        self.graphql(&query, json!({ "input": input })).await[name].clone()
    }

    /// Whether `token` may read org `org` (an API token at work).
    pub(crate) async fn token_reads_org(&self, token: &str, org: &Value) -> bool {
        let response = self
            .graphql_as(token, "query($id: ID!) { org(id: $id) { id } }", json!({ "id": org }))
            .await;
        response["data"]["org"]["id"] == *org
    }

    /// Plans and asserts the summary line, e.g. "0 to add, 1 to change, 0 to destroy".
    pub(crate) async fn plan_says(&self, summary: &str) -> String {
        let (code, out) = self.plan().await;
        assert_eq!(code, 2, "changes expected:\n{out}");
        assert!(out.contains(summary), "expected {summary:?}:\n{out}");
        out
    }

    pub(crate) async fn plan_is_clean(&self) {
        let (code, out) = self.plan().await;
        assert_eq!(code, 0, "no changes expected:\n{out}");
    }
}

#[sqlx::test(migrations = false)]
async fn every_resource_is_created_changed_replaced_reconciled_and_destroyed(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let keys = tempfile::tempdir().expect("keys");
    let mut config = Config::new(keys.path());

    // Create everything.
    tf.config(&config.render());
    tf.apply().await;
    let org = tf.state("monkeyci_org.acme", "id").await;
    let repo = tf.state("monkeyci_repo.app", "id").await;
    let webhook = tf.state("monkeyci_webhook.push", "id").await;
    let schedule = tf.state("monkeyci_schedule.nightly", "id").await;
    let set = tf.state("monkeyci_param_set.prod", "id").await;
    let key = tf.state("monkeyci_ssh_key.deploy", "id").await;
    let token_id = tf.state("monkeyci_api_token.ci", "id").await;
    let token = tf.state("monkeyci_api_token.ci", "token").await;

    let api_repo = tf
        .node(&repo, "Repo", "name gitUrl mainBranch labels { name value } org { id }")
        .await;
    assert_eq!(
        api_repo,
        json!({ "name": "app", "gitUrl": "https://git.example.com/acme/app.git", "mainBranch": "main",
                "labels": [{ "name": "env", "value": "prod" }], "org": { "id": org } })
    );
    assert_eq!(tf.state("monkeyci_repo.app", "main_branch").await, json!("main"));
    let api_webhook = tf.node(&webhook, "Webhook", "host path repo { id }").await;
    assert_eq!(api_webhook["host"], json!("GITHUB"));
    assert_eq!(api_webhook["repo"]["id"], repo);
    let path = api_webhook["path"].as_str().expect("path");
    assert_eq!(tf.state("monkeyci_webhook.push", "path").await, json!(path));
    assert_eq!(
        tf.state("monkeyci_webhook.push", "url").await,
        json!(format!("{}{path}", tf.base))
    );
    let first_secret = tf.state("monkeyci_webhook.push", "secret").await;
    assert!(
        first_secret.as_str().is_some_and(|s| s.len() >= 16),
        "a random secret: {first_secret}"
    );
    assert_eq!(
        tf.node(&schedule, "Schedule", "cron repo { id }").await,
        json!({ "cron": "0 3 * * *", "repo": { "id": repo } })
    );
    assert_eq!(
        tf.node(
            &set,
            "ParamSet",
            "name parameterNames filter { labels { name value } } protected"
        )
        .await,
        json!({ "name": "prod-secrets", "parameterNames": ["PASSWORD", "REGION"],
                "filter": [{ "labels": [{ "name": "env", "value": "prod" }] }], "protected": false })
    );
    assert_eq!(
        tf.node(&key, "SshKey", "description publicKey protected").await,
        json!({ "description": "deploy key", "publicKey": config.public_key, "protected": false })
    );
    assert_eq!(
        tf.node(&token_id, "ApiToken", "name role revoked").await,
        json!({ "name": "ci", "role": "member", "revoked": false })
    );
    let token = token.as_str().expect("token in the state").to_owned();
    assert!(tf.token_reads_org(&token, &org).await, "the token works");
    let by_name = tf.output("repo_by_name").await;
    assert_eq!(by_name["id"], repo);
    assert_eq!(by_name["labels"], json!({ "env": "prod" }));
    assert_eq!(by_name["archived"], json!(false));
    tf.plan_is_clean().await;

    // In place: repo name and labels, the webhook's secret (a rotation), the cron, the set's name,
    // a value and its protection.
    config.repo_name = "application";
    config.labels = "{ env = \"prod\", team = \"web\" }";
    config.webhook_secret = Some("a-configured-secret-0123");
    config.cron = "@hourly";
    config.set_name = "production";
    config.password = "second-password";
    config.set_protected = Some(true);
    tf.config(&config.render());
    let out = tf.plan_says("0 to add, 4 to change, 0 to destroy").await;
    assert!(
        !out.contains("second-password") && !out.contains("a-configured-secret"),
        "sensitive values are not shown:\n{out}"
    );
    tf.apply().await;
    assert_eq!(
        tf.node(&repo, "Repo", "name labels { name value }").await,
        json!({ "name": "application", "labels": [{ "name": "env", "value": "prod" }, { "name": "team", "value": "web" }] })
    );
    assert_eq!(
        tf.node(&schedule, "Schedule", "cron").await,
        json!({ "cron": "@hourly" })
    );
    assert_eq!(
        tf.node(&set, "ParamSet", "name protected").await,
        json!({ "name": "production", "protected": true })
    );
    let rotated = tf.node(&webhook, "Webhook", "rotatedAt").await["rotatedAt"].clone();
    assert!(rotated.is_string(), "the secret was rotated: {rotated}");
    assert_eq!(tf.state("monkeyci_webhook.push", "rotated_at").await, rotated);
    assert_eq!(
        tf.state("monkeyci_webhook.push", "secret").await,
        json!("a-configured-secret-0123")
    );
    assert_eq!(tf.state("monkeyci_webhook.push", "id").await, webhook, "same webhook");
    tf.plan_is_clean().await;

    // Replaced: the ssh key (no change in place: a new description and protection) and the token
    // (a new role).
    config.key_description = "deploy key, rotated";
    config.key_protected = Some(true);
    config.token_role = "viewer";
    tf.config(&config.render());
    let out = tf.plan_says("2 to add, 0 to change, 2 to destroy").await;
    assert!(out.contains("must be replaced"), "{out}");
    tf.apply().await;
    assert_eq!(
        tf.node(&key, "SshKey", "id").await,
        Value::Null,
        "the old key is deleted"
    );
    let new_key = tf.state("monkeyci_ssh_key.deploy", "id").await;
    assert_ne!(new_key, key);
    assert_eq!(
        tf.node(&new_key, "SshKey", "description protected").await,
        json!({ "description": "deploy key, rotated", "protected": true })
    );
    assert_eq!(
        tf.node(&token_id, "ApiToken", "revoked").await,
        json!({ "revoked": true })
    );
    assert!(!tf.token_reads_org(&token, &org).await, "the old token is revoked");
    let new_token = tf.state("monkeyci_api_token.ci", "token").await;
    let new_token = new_token.as_str().expect("token").to_owned();
    assert!(tf.token_reads_org(&new_token, &org).await, "the new token works");
    tf.plan_is_clean().await;

    // Drift: changes through the API outside Terraform show up in the plan, and apply puts the
    // configuration back (the set's update by hand also leaves it unprotected).
    tf.mutation(
        "updateRepo",
        "UpdateRepoInput",
        json!({ "id": repo, "name": "renamed by hand" }),
    )
    .await;
    tf.mutation(
        "updateSchedule",
        "UpdateScheduleInput",
        json!({ "id": schedule, "cron": "@daily" }),
    )
    .await;
    tf.graphql(
        "mutation($input: RotateWebhookSecretInput!) { rotateWebhookSecret(input: $input) { webhookId } }",
        json!({ "input": { "id": webhook } }),
    )
    .await;
    tf.mutation(
        "updateParamSet",
        "UpdateParamSetInput",
        json!({ "id": set, "name": "production", "filter": [{ "labels": [{ "name": "env", "value": "prod" }] }],
                "parameters": [{ "name": "PASSWORD", "value": "changed-by-hand" }, { "name": "REGION", "value": "eu" }] }),
    )
    .await;
    let out = tf.plan_says("0 to add, 4 to change, 0 to destroy").await;
    assert!(out.contains("\"renamed by hand\" -> \"application\""), "{out}");
    assert!(out.contains("\"@daily\" -> \"@hourly\""), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("protected") && l.contains("false -> true")),
        "{out}"
    );
    tf.apply().await;
    assert_eq!(
        tf.node(&set, "ParamSet", "protected").await,
        json!({ "protected": true }),
        "protected again"
    );
    assert_eq!(tf.node(&repo, "Repo", "name").await, json!({ "name": "application" }));
    assert_eq!(
        tf.node(&schedule, "Schedule", "cron").await,
        json!({ "cron": "@hourly" })
    );
    assert_eq!(
        tf.state("monkeyci_webhook.push", "secret").await,
        json!("a-configured-secret-0123"),
        "the configured secret is set again"
    );
    tf.plan_is_clean().await;

    // Deleted outside Terraform: dropped from the state and made again.
    tf.mutation("deleteSchedule", "DeleteInput", json!({ "id": schedule }))
        .await;
    tf.mutation("deleteParamSet", "DeleteInput", json!({ "id": set })).await;
    let new_token_id = tf.state("monkeyci_api_token.ci", "id").await;
    tf.mutation("revokeApiToken", "RevokeApiTokenInput", json!({ "id": new_token_id }))
        .await;
    let out = tf.plan_says("3 to add, 0 to change, 0 to destroy").await;
    assert!(out.contains("monkeyci_schedule.nightly will be created"), "{out}");
    tf.apply().await;
    let remade = tf.state("monkeyci_schedule.nightly", "id").await;
    assert_ne!(remade, schedule);
    assert_eq!(tf.node(&remade, "Schedule", "cron").await, json!({ "cron": "@hourly" }));
    tf.plan_is_clean().await;

    // Destroy leaves nothing behind: the org is deleted, the repo archived, the rest deleted or
    // revoked.
    let left = [
        (tf.state("monkeyci_webhook.push", "id").await, "Webhook"),
        (remade, "Schedule"),
        (tf.state("monkeyci_param_set.prod", "id").await, "ParamSet"),
        (new_key, "SshKey"),
    ];
    let last_token = tf.state("monkeyci_api_token.ci", "id").await;
    let (code, out) = tf
        .terraform(&["destroy", "-input=false", "-no-color", "-auto-approve"])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(tf.orgs().await.is_empty());
    assert_eq!(tf.node(&repo, "Repo", "archived").await, json!({ "archived": true }));
    for (id, type_name) in left {
        assert_eq!(tf.node(&id, type_name, "id").await, Value::Null, "{type_name} {id}");
    }
    assert_eq!(
        tf.node(&last_token, "ApiToken", "revoked").await,
        json!({ "revoked": true })
    );

    tf.stop().await;
}

#[sqlx::test(migrations = false)]
async fn objects_made_through_the_api_are_imported_by_id(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let keys = tempfile::tempdir().expect("keys");
    let config = Config::new(keys.path());

    let org = json!(tf.create_org("Acme", "acme").await);
    let repo = tf
        .mutation(
            "createRepo",
            "CreateRepoInput",
            json!({ "orgId": org, "name": "app", "gitUrl": "https://git.example.com/acme/app.git",
                    "labels": [{ "name": "env", "value": "prod" }] }),
        )
        .await;
    let webhook = tf
        .graphql(
            "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhookId } }",
            json!({ "input": { "repoId": repo, "host": "GITHUB" } }),
        )
        .await["createWebhook"]["webhookId"]
        .clone();
    let schedule = tf
        .mutation(
            "createSchedule",
            "CreateScheduleInput",
            json!({ "repoId": repo, "cron": "0 3 * * *" }),
        )
        .await;
    let set = tf
        .mutation(
            "createParamSet",
            "CreateParamSetInput",
            json!({ "orgId": org, "name": "prod-secrets", "filter": [{ "labels": [{ "name": "env", "value": "prod" }] }],
                    "parameters": [{ "name": "PASSWORD", "value": "first-password" }, { "name": "REGION", "value": "eu" }] }),
        )
        .await;
    let key = tf
        .mutation(
            "addSshKey",
            "AddSshKeyInput",
            json!({ "orgId": org, "description": "deploy key", "filter": [{ "labels": [{ "name": "env", "value": "prod" }] }],
                    "privateKey": config.private_key, "publicKey": config.public_key }),
        )
        .await;
    let token = tf
        .graphql(
            "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { id } }",
            json!({ "input": { "name": "ci", "orgId": org, "role": "member" } }),
        )
        .await["createApiToken"]["id"]
        .clone();

    tf.config(&config.render());
    for (address, id) in [
        ("monkeyci_org.acme", &org),
        ("monkeyci_repo.app", &repo),
        ("monkeyci_webhook.push", &webhook),
        ("monkeyci_schedule.nightly", &schedule),
        ("monkeyci_param_set.prod", &set),
        ("monkeyci_ssh_key.deploy", &key),
        ("monkeyci_api_token.ci", &token),
    ] {
        let id = id.as_str().expect("id");
        let (code, out) = tf
            .terraform(&["import", "-input=false", "-no-color", address, id])
            .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(tf.state(address, "id").await, json!(id));
    }
    assert_eq!(tf.state("monkeyci_repo.app", "org_id").await, org);
    assert_eq!(tf.state("monkeyci_webhook.push", "repo_id").await, repo);
    assert_eq!(tf.state("monkeyci_schedule.nightly", "cron").await, json!("0 3 * * *"));
    assert_eq!(tf.state("monkeyci_api_token.ci", "role").await, json!("member"));

    // What the API cannot show is written (the set's values) or taken from the configuration
    // (the ssh key's private half); nothing is made or replaced.
    let out = tf.plan_says("0 to add, 2 to change, 0 to destroy").await;
    assert!(
        out.contains("monkeyci_param_set.prod will be updated in-place"),
        "{out}"
    );
    assert!(
        out.contains("monkeyci_ssh_key.deploy will be updated in-place"),
        "{out}"
    );
    tf.apply().await;
    tf.plan_is_clean().await;
    assert_eq!(tf.state("monkeyci_ssh_key.deploy", "id").await, key, "the same key");
    assert_eq!(tf.orgs().await.len(), 1, "import and apply made no second org");

    // The data source by id.
    tf.config(&format!(
        "{}\ndata \"monkeyci_repo\" \"by_id\" {{\n  id = {repo}\n}}\n\noutput \"by_id\" {{\n  value = data.monkeyci_repo.by_id\n}}\n",
        config.render()
    ));
    tf.apply().await;
    assert_eq!(tf.output("by_id").await, tf.output("repo_by_name").await);
    assert_eq!(
        tf.output("by_id").await["git_url"],
        json!("https://git.example.com/acme/app.git")
    );

    tf.stop().await;
}

#[sqlx::test(migrations = false)]
async fn bad_configurations_and_ids_are_refused_with_the_reason(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let org = tf.create_org("Acme", "acme").await;

    // Checked before anything is planned.
    tf.config(&format!(
        "resource \"monkeyci_repo\" \"app\" {{\n  org_id = {org:?}\n  name = \"app\"\n  git_url = \"https://git.example.com/app.git\"\n}}\n\nresource \"monkeyci_webhook\" \"push\" {{\n  repo_id = monkeyci_repo.app.id\n  host = \"sourceforge\"\n  secret = \"short\"\n}}\n\nresource \"monkeyci_api_token\" \"ci\" {{\n  org_id = {org:?}\n  name = \"ci\"\n  role = \"admin\"\n  expires_in_days = 0\n}}\n"
    ));
    let (code, out) = tf.plan().await;
    assert_eq!(code, 1, "{out}");
    for expected in [
        "\"sourceforge\" is not one of github, gitlab, bitbucket, gitea, forgejo",
        "at least 16 characters",
        "\"admin\" is not one of owner, member, viewer",
        "between 1 and 3650",
    ] {
        assert!(out.contains(expected), "expected {expected:?}:\n{out}");
    }

    // Refused by the API at apply: its message, and nothing made.
    tf.config(&format!(
        "resource \"monkeyci_repo\" \"app\" {{\n  org_id = {org:?}\n  name = \"app\"\n  git_url = \"https://git.example.com/app.git\"\n}}\n\nresource \"monkeyci_schedule\" \"bad\" {{\n  repo_id = monkeyci_repo.app.id\n  cron = \"every tuesday\"\n}}\n"
    ));
    let (code, out) = tf
        .terraform(&["apply", "-input=false", "-no-color", "-auto-approve"])
        .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Cannot create the schedule"), "{out}");
    assert!(out.contains("(BAD_USER_INPUT)"), "{out}");
    assert_eq!(tf.state("monkeyci_schedule.bad", "id").await, Value::Null);
    let repo = tf.state("monkeyci_repo.app", "id").await;
    assert_eq!(
        tf.graphql(
            "query($id: ID!) { repo(id: $id) { schedules { id } } }",
            json!({ "id": repo })
        )
        .await["repo"]["schedules"],
        json!([])
    );

    // An id of another kind, or of nothing, imports nothing.
    for id in [org.as_str(), "not-an-id"] {
        let (code, out) = tf
            .terraform(&["import", "-input=false", "-no-color", "monkeyci_schedule.bad", id])
            .await;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("non-existent"), "{out}");
    }

    tf.stop().await;
}

#[sqlx::test(migrations = false)]
async fn the_example_configuration_applies_and_destroys(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let keys = tempfile::tempdir().expect("keys");
    let (private, public) = keygen(keys.path(), "example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/terraform/main.tf");
    std::fs::copy(example, tf.path().join("main.tf")).expect("copy the example");
    let private_var = format!("deploy_private_key={private}");
    let public_var = format!("deploy_public_key={public}");
    let vars = ["-var", private_var.as_str(), "-var", public_var.as_str()];

    let apply: Vec<&str> = ["apply", "-input=false", "-no-color", "-auto-approve"]
        .into_iter()
        .chain(vars)
        .collect();
    let (code, out) = tf.terraform(&apply).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("7 added, 0 changed, 0 destroyed"), "{out}");
    assert_eq!(tf.output("main_branch").await, json!("main"));
    let url = tf.output("webhook_url").await;
    assert!(
        url.as_str()
            .is_some_and(|u| u.starts_with(&format!("{}/webhooks/github/", tf.base))),
        "{url}"
    );
    let plan: Vec<&str> = ["plan", "-input=false", "-no-color", "-detailed-exitcode"]
        .into_iter()
        .chain(vars)
        .collect();
    let (code, out) = tf.terraform(&plan).await;
    assert_eq!(code, 0, "no changes expected:\n{out}");

    let destroy: Vec<&str> = ["destroy", "-input=false", "-no-color", "-auto-approve"]
        .into_iter()
        .chain(vars)
        .collect();
    let (code, out) = tf.terraform(&destroy).await;
    assert_eq!(code, 0, "{out}");
    assert!(tf.orgs().await.is_empty());

    tf.stop().await;
}
