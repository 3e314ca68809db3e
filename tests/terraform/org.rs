//! `monkeyci_org`: the resource and the data source.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::Setup;

/// A TCP proxy in front of `upstream` that passes everything through, except that it swallows
/// the answer to the first request containing `needle` and closes that connection: the request
/// was carried out, but the client never hears of it. Returns the proxy's base URL and whether
/// it has swallowed an answer.
async fn losing_proxy(upstream: &str, needle: &'static str) -> (String, Arc<AtomicBool>) {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let lost = Arc::new(AtomicBool::new(false));
    let swallowed = lost.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = server.into_split();
                let swallow = Arc::new(AtomicBool::new(false));
                let marked = swallow.clone();
                let requests = async move {
                    let mut buffer = vec![0_u8; 64 * 1024];
                    while let Ok(n) = client_in.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        // Marked before the server can see the request, so before it answers.
                        if String::from_utf8_lossy(&buffer[..n]).contains(needle) && !lost.swap(true, Ordering::SeqCst)
                        {
                            marked.store(true, Ordering::SeqCst);
                        }
                        if server_out.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let answers = async move {
                    let mut buffer = vec![0_u8; 64 * 1024];
                    while let Ok(n) = server_in.read(&mut buffer).await {
                        // The request reached the server and it answered; the client hears nothing.
                        if n == 0 || swallow.load(Ordering::SeqCst) || client_out.write_all(&buffer[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                };
                // Either direction ending closes both: the client sees the connection drop.
                tokio::select! {
                    () = requests => {}
                    () = answers => {}
                }
            });
        }
    });
    (format!("http://{address}"), swallowed)
}

#[sqlx::test(migrations = false)]
async fn a_create_whose_answer_is_lost_is_sent_again_and_makes_one_org(pool: PgPool) {
    let tf = Setup::start(pool).await;
    let (proxy, swallowed) = losing_proxy(&tf.base, "createOrg").await;
    tf.config(&org_config("Acme", "acme"));
    let (code, out) = tf
        .terraform_via(&proxy, &["apply", "-input=false", "-no-color", "-auto-approve"])
        .await;
    assert_eq!(code, 0, "the retry succeeds:\n{out}");
    assert!(swallowed.load(Ordering::SeqCst), "the first answer was lost");
    let orgs = tf.orgs().await;
    assert_eq!(orgs.len(), 1, "one org, not two: {orgs:?}");
    assert_eq!(tf.state("monkeyci_org.acme", "id").await, json!(orgs[0].0));
    tf.plan_is_clean().await;
    tf.stop().await;
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
    let by_slug = tf.output("by_slug").await;
    assert_eq!(by_slug, json!({ "id": id, "name": "Imported", "slug": "imported" }));
    let by_id = tf.output("by_id").await;
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
