//! README.md checked against the code, so the README cannot drift: every `monkeyci` command line
//! it shows parses in the binary, every flag and variable of its settings table is one the
//! binary has, and every GraphQL example runs against the API without an error.

use std::collections::HashMap;
use std::process::Command;

use monkeyci_tests::monkeyci_binary;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{app, gql, ADMIN};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md")
}

/// The fenced blocks of `language` in `text`, each as its lines.
fn blocks(text: &str, language: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) if lang.trim() == language => current = Some(Vec::new()),
            (Some(_), Some("")) => found.extend(current.take()),
            (Some(lines), _) => lines.push(line.to_owned()),
            _ => {}
        }
    }
    found
}

/// Runs the binary with `args`; (exit status, stdout + stderr).
fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(monkeyci_binary().expect("binary"))
        .args(args)
        .env_remove("MONKEYCI_DATABASE_URL")
        .output()
        .expect("run monkeyci");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_monkeyci_command_line_of_the_readme_parses_in_the_binary() {
    let text = readme();
    let mut checked = 0;
    for line in blocks(&text, "sh").into_iter().flatten() {
        // `cargo run -p monkeyci -- ARGS` runs the binary too.
        let command = line.split(" #").next().unwrap_or_default().trim();
        let command = command
            .strip_prefix("cargo run -p monkeyci -- ")
            .map_or(command.to_owned(), |rest| format!("monkeyci {rest}"));
        let Some(rest) = command.strip_prefix("monkeyci ") else {
            continue;
        };
        // Optional parts in brackets are left out; redirections are the shell's.
        let mut args = Vec::new();
        let mut words = rest.split_whitespace().peekable();
        let mut optional = 0;
        while let Some(word) = words.next() {
            if word.starts_with('[') {
                optional += 1;
            }
            let closes = word.ends_with(']');
            if optional == 0 && !matches!(word, ">" | "<") && !word.starts_with('>') && !word.starts_with('<') {
                args.push(word.to_owned());
            } else if matches!(word, ">" | "<") {
                words.next();
            }
            if closes {
                optional -= 1;
            }
        }
        if args.last().map(String::as_str) != Some("--help") {
            args.push("--help".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, output) = run(&args);
        assert!(ok, "README line `{line}` does not parse (monkeyci {args:?}):\n{output}");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} command lines found in README.md");
}

#[test]
fn every_flag_and_variable_of_the_readme_settings_table_is_in_the_binarys_help() {
    let text = readme();
    let help: String = [
        vec!["server", "--help"],
        vec!["runner", "--help"],
        vec!["build", "run", "--help"],
    ]
    .iter()
    .map(|args| {
        let (ok, output) = run(args);
        assert!(ok, "{args:?}: {output}");
        output
    })
    .collect();
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("| setting | flag | environment | default |"))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(table.len() > 30, "the settings table is missing: {}", table.len());
    for row in &table[2..] {
        let cells: Vec<&str> = row.split('|').collect();
        let (flags, variables) = (cells[2], cells[3]);
        for word in flags.split('`').skip(1).step_by(2).filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(&format!("{word} "))
                    || help.contains(&format!("{word}\n"))
                    || help.contains(&format!("{word} <")),
                "README's {word} is not a flag of the binary: {row}"
            );
        }
        for word in variables
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.starts_with("MONKEYCI_"))
        {
            assert!(
                help.contains(&format!("[env: {word}")),
                "README's {word} is not a variable of the binary: {row}"
            );
        }
    }
}

/// The GraphQL statements of the README's examples: a line starting an operation, continued
/// until its braces balance.
/// The values of `slug: "…"` (GraphQL) and `slug = "…"` (Terraform) in `text`.
fn slugs(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["slug: \"", "slug = \""] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            found.extend(rest.split('"').next().map(str::to_owned));
        }
    }
    found
}

#[test]
fn the_terraform_example_makes_an_org_of_its_own_beside_the_readmes_graphql_examples() {
    // A newcomer runs both on one server: with one slug, the second fails on a taken slug.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/terraform/main.tf"))
        .expect("main.tf");
    let (ours, theirs) = (slugs(&example), slugs(&readme()));
    assert!(!ours.is_empty() && !theirs.is_empty(), "{ours:?} {theirs:?}");
    let shared: Vec<&String> = ours.iter().filter(|s| theirs.contains(s)).collect();
    assert!(
        shared.is_empty(),
        "slugs in both the Terraform example and README: {shared:?}"
    );
}

fn graphql_examples(text: &str) -> Vec<String> {
    let mut statements = Vec::new();
    for block in blocks(text, "graphql") {
        let mut current = String::new();
        for line in block {
            current.push_str(&line);
            current.push('\n');
            let open = current.matches('{').count();
            if open > 0 && open == current.matches('}').count() {
                statements.push(std::mem::take(&mut current));
            }
        }
        assert!(current.trim().is_empty(), "an unbalanced GraphQL example: {current}");
    }
    statements
}

/// The placeholders a statement needs (`<org id>`, …), in order of appearance.
fn placeholders(statement: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = statement;
    while let Some(start) = rest.find("\"<") {
        let Some(end) = rest[start..].find(">\"") else { break };
        found.push(rest[start + 1..start + end + 1].to_owned());
        rest = &rest[start + end + 2..];
    }
    found
}

/// What a statement's answer makes known: the placeholder it fills and the value.
fn learned(statement: &str, data: &Value) -> Option<(&'static str, String)> {
    let field = |name: &str| data[name].as_str().map(str::to_owned);
    let pick = |name: &str, key: &str| data[name][key].as_str().map(str::to_owned);
    let found = [
        ("createOrg", "<org id>"),
        ("createUser", "<user id>"),
        ("createRepo", "<repo id>"),
        ("triggerBuild", "<build id>"),
        ("createParamSet", "<set id>"),
    ]
    .into_iter()
    .find(|(mutation, _)| statement.contains(&format!("{{ {mutation}(")));
    if let Some((mutation, placeholder)) = found {
        return field(mutation).map(|v| (placeholder, v));
    }
    if statement.contains("{ createApiToken(") {
        return pick("createApiToken", "id").map(|v| ("<token id>", v));
    }
    if statement.contains("{ createWebhook(") {
        return pick("createWebhook", "webhookId").map(|v| ("<webhook id>", v));
    }
    None
}

#[sqlx::test(migrations = "../migrations")]
async fn every_graphql_example_of_the_readme_runs_without_an_error(pool: PgPool) {
    let app = app(pool).await;
    let keys = tempfile::tempdir().expect("dir");
    let key = keys.path().join("deploy");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "readme", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let private = std::fs::read_to_string(&key).expect("private key");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");

    let statements = graphql_examples(&readme());
    assert!(
        statements.len() >= 20,
        "only {} GraphQL examples found",
        statements.len()
    );
    let mut known: HashMap<String, String> = HashMap::from([("<cursor>".to_owned(), "0.0".to_owned())]);
    let mut done = vec![false; statements.len()];
    // Statements run in README order once what they name is known (an example may name an org
    // that a later block creates); each pass must run at least one.
    while done.iter().any(|d| !d) {
        let mut progressed = false;
        for (index, statement) in statements.iter().enumerate() {
            if done[index] || placeholders(statement).iter().any(|p| !known.contains_key(p)) {
                continue;
            }
            let mut query = statement.clone();
            for (placeholder, value) in &known {
                query = query.replace(placeholder, value);
            }
            query = query
                .replace(
                    "-----BEGIN OPENSSH PRIVATE KEY-----…",
                    private.trim().replace('\n', "\\n").as_str(),
                )
                .replace("ssh-ed25519 AAAA…", public.trim());
            let body = if query.trim_start().starts_with("subscription") {
                first_subscription_message(&app, &query).await
            } else {
                gql(&app, Some(ADMIN), &query, json!({})).await.1
            };
            assert!(
                body.get("errors").is_none() && body["data"].is_object(),
                "README example failed:\n{statement}\nsent as:\n{query}\nanswer: {body}"
            );
            if let Some((placeholder, value)) = learned(statement, &body["data"]) {
                known.insert(placeholder.to_owned(), value);
            }
            done[index] = true;
            progressed = true;
        }
        let waiting: Vec<(&String, Vec<String>)> = statements
            .iter()
            .zip(&done)
            .filter(|(_, d)| !**d)
            .map(|(s, _)| (s, placeholders(s)))
            .collect();
        assert!(progressed, "README examples name what no example makes: {waiting:?}");
    }
    app.stop().await;
}

/// The first `next` payload of a subscription, as a GraphQL answer.
async fn first_subscription_message(app: &monkeyci_tests::TestApp, query: &str) -> Value {
    let mut ws = app.websocket().await.expect("ws");
    ws.init_with(json!({ "Authorization": format!("Bearer {ADMIN}") }))
        .await
        .expect("init");
    ws.subscribe("readme", query, json!({})).await.expect("subscribe");
    let message = ws.message().await.expect("an answer");
    match message["type"].as_str() {
        Some("next") => message["payload"].clone(),
        _ => json!({ "errors": [message] }),
    }
}

#[test]
fn terraform_state_of_the_example_is_kept_out_of_git() {
    // The state holds webhook secrets, parameters, keys and tokens in plain text.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/terraform");
    for path in [
        "terraform.tfstate",
        "terraform.tfstate.backup",
        "terraform.tfstate.1765000000.backup",
        ".terraform/providers/x",
        ".terraform.lock.hcl",
    ] {
        let ignored = Command::new("git")
            .args(["check-ignore", "--quiet", "--no-index", path])
            .current_dir(example)
            .status()
            .expect("run git");
        assert!(ignored.success(), "{path} is not ignored in examples/terraform");
    }
    let kept = Command::new("git")
        .args(["check-ignore", "--quiet", "--no-index", "main.tf"])
        .current_dir(example)
        .status()
        .expect("run git");
    assert!(!kept.success(), "main.tf must stay in git");
}
