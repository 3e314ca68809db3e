//! The crate boundaries that make ARCHITECTURE.md's invariants hold by construction: a crate
//! that does not depend on a library cannot use it, whatever its code tries.

use std::collections::BTreeSet;
use std::process::Command;

/// The names of the normal (not dev or build) dependencies of each workspace crate.
fn dependencies() -> Vec<(String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_owned())
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

fn of(all: &[(String, BTreeSet<String>)], name: &str) -> BTreeSet<String> {
    all.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is a workspace crate"))
        .1
        .clone()
}

#[test]
fn the_api_reaches_the_database_only_through_the_projections_read_handle() {
    let all = dependencies();
    let api = of(&all, "monkeyci-api");
    assert!(api.contains("monkeyci-projections"), "{api:?}");
    assert!(
        !api.contains("sqlx"),
        "monkeyci-api must not depend on sqlx: it reads through projections::ReadModels ({api:?})"
    );
}

#[test]
fn the_domain_does_no_io() {
    let all = dependencies();
    let domain = of(&all, "monkeyci-domain");
    for io in ["sqlx", "tokio", "reqwest", "rand"] {
        assert!(
            !domain.contains(io),
            "monkeyci-domain must not depend on {io} ({domain:?})"
        );
    }
}
