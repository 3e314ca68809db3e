use super::*;

const YAML: &str = r#"# The pipeline of a small Rust service.
jobs:
  - id: test
    image: docker.io/rust:1.89
    script:
      - cargo test --locked
      - cargo clippy -- -D warnings
    env:
      RUST_LOG: debug
      RETRIES: 3
    caches:
      - id: cargo-registry
        path: .cargo/registry
    save-artifacts:
      - id: test-report
        path: target/report.xml
    timeout: 20m
    retries: 2
  - id: build
    image: docker.io/rust:1.89
    work-dir: service
    script: ["cargo build --release"]
    dependencies: [test]
    save-artifacts:
      - {id: binary, path: target/release/service}
  - id: publish
    script:
      - ./publish.sh
    dependencies:
      - build
    restore-artifacts:
      - id: binary
        path: target/release/service
    conditions:
      branches: [main, "release/*"]
      tags: ["v*"]
      paths: ["src/**", Cargo.toml]
      sources: [webhook, api]
    timeout: 1h30m
    blocked: true
    allow-failure: true
timeout: 2h
"#;

const JSON: &str = r#"{
  "jobs": [
    {
      "id": "test",
      "image": "docker.io/rust:1.89",
      "script": ["cargo test --locked", "cargo clippy -- -D warnings"],
      "env": {"RUST_LOG": "debug", "RETRIES": "3"},
      "caches": [{"id": "cargo-registry", "path": ".cargo/registry"}],
      "saveArtifacts": [{"id": "test-report", "path": "target/report.xml"}],
      "timeout": 1200,
      "retries": 2
    },
    {
      "id": "build",
      "image": "docker.io/rust:1.89",
      "workDir": "service",
      "script": ["cargo build --release"],
      "dependencies": ["test"],
      "saveArtifacts": [{"id": "binary", "path": "target/release/service"}]
    },
    {
      "id": "publish",
      "script": ["./publish.sh"],
      "dependencies": ["build"],
      "restoreArtifacts": [{"id": "binary", "path": "target/release/service"}],
      "conditions": {
        "branches": ["main", "release/*"],
        "tags": ["v*"],
        "paths": ["src/**", "Cargo.toml"],
        "sources": ["webhook", "api"]
      },
      "timeout": "90m",
      "blocked": true,
      "allowFailure": true
    }
  ],
  "timeout": 7200
}"#;

fn job_id(raw: &str) -> JobId {
    JobId::parse(raw).expect("valid job id")
}

fn glob(raw: &str) -> Glob {
    Glob::parse(raw).expect("valid pattern")
}

fn artifact(id: &str, path: &str) -> Artifact {
    Artifact {
        id: ArtifactId::parse(id).expect("valid artifact id"),
        path: RelativePath::parse(path).expect("valid path"),
    }
}

fn ids(pipeline: &Pipeline) -> Vec<&str> {
    pipeline.jobs().iter().map(|job| job.id.as_str()).collect()
}

fn error(file: &str, contents: &str) -> PipelineError {
    parse(file, contents).expect_err("the pipeline is refused")
}

fn message(file: &str, contents: &str) -> String {
    error(file, contents).to_string()
}

fn minimal(id: &str) -> Job {
    Job {
        id: job_id(id),
        image: None,
        script: vec!["make".to_owned()],
        dependencies: Vec::new(),
        env: BTreeMap::new(),
        work_dir: None,
        save_artifacts: Vec::new(),
        restore_artifacts: Vec::new(),
        caches: Vec::new(),
        conditions: Conditions::default(),
        timeout: None,
        retries: 0,
        blocked: false,
        allow_failure: false,
    }
}

#[test]
fn a_realistic_yaml_pipeline_is_read_in_full() {
    let pipeline = parse(".monkeyci/build.yaml", YAML).expect("valid pipeline");
    assert_eq!(ids(&pipeline), ["test", "build", "publish"]);
    assert_eq!(pipeline.timeout(), Some(Duration::from_secs(7200)));

    let test = pipeline.job(&job_id("test")).expect("test job");
    assert_eq!(test.image.as_deref(), Some("docker.io/rust:1.89"));
    assert_eq!(test.script, ["cargo test --locked", "cargo clippy -- -D warnings"]);
    assert_eq!(
        test.env,
        BTreeMap::from([
            ("RETRIES".to_owned(), "3".to_owned()),
            ("RUST_LOG".to_owned(), "debug".to_owned())
        ])
    );
    assert_eq!(test.caches, [artifact("cargo-registry", ".cargo/registry")]);
    assert_eq!(test.save_artifacts, [artifact("test-report", "target/report.xml")]);
    assert_eq!(test.timeout, Some(Duration::from_secs(1200)));
    assert_eq!(test.retries, 2);
    assert!(test.conditions.is_empty());
    assert!(!test.blocked && !test.allow_failure);

    let build = pipeline.job(&job_id("build")).expect("build job");
    assert_eq!(build.work_dir.as_ref().map(RelativePath::as_str), Some("service"));
    assert_eq!(build.dependencies, [job_id("test")]);

    let publish = pipeline.job(&job_id("publish")).expect("publish job");
    assert_eq!(publish.image, None);
    assert_eq!(
        publish.restore_artifacts,
        [artifact("binary", "target/release/service")]
    );
    assert_eq!(
        publish.conditions,
        Conditions {
            branches: vec![glob("main"), glob("release/*")],
            tags: vec![glob("v*")],
            paths: vec![glob("src/**"), glob("Cargo.toml")],
            sources: vec![TriggerSource::Webhook, TriggerSource::Api],
        }
    );
    assert_eq!(publish.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(publish.retries, 0);
    assert!(publish.blocked && publish.allow_failure);
}

#[test]
fn the_same_pipeline_in_camel_case_json_is_equal() {
    let yaml = parse("build.yaml", YAML).expect("valid yaml");
    let json = parse("build.json", JSON).expect("valid json");
    assert_eq!(yaml, json);
}

#[test]
fn kebab_case_keys_work_in_json_and_camel_case_in_yaml() {
    let json = r#"[{"id": "a", "script": ["make"], "work-dir": "x", "allow-failure": true}]"#;
    let yaml = "- {id: a, script: [make], workDir: x, allowFailure: true}\n";
    assert_eq!(parse("build.json", json), parse("build.yml", yaml));
    assert!(parse("build.yml", yaml).expect("valid")[0].allow_failure);
}

impl std::ops::Index<usize> for Pipeline {
    type Output = Job;
    fn index(&self, index: usize) -> &Job {
        &self.jobs[index]
    }
}

#[test]
fn a_plain_list_of_jobs_is_a_pipeline_without_build_timeout() {
    let pipeline = parse("build.yml", "- id: only\n  script: [make]\n").expect("valid");
    assert_eq!(pipeline.jobs(), [minimal("only")]);
    assert_eq!(pipeline.timeout(), None);
    let json = parse("build.json", r#"[{"id": "only", "script": ["make"]}]"#).expect("valid");
    assert_eq!(pipeline, json);
}

#[test]
fn numbers_in_yaml_are_read_as_text_where_text_is_expected() {
    let pipeline = parse(
        "build.yaml",
        "- id: 1\n  script: [42]\n  env: {PORT: 8080, DEBUG: true}\n",
    )
    .expect("valid");
    let job = &pipeline[0];
    assert_eq!(job.id.as_str(), "1");
    assert_eq!(job.script, ["42"]);
    assert_eq!(job.env.get("PORT").map(String::as_str), Some("8080"));
    assert_eq!(job.env.get("DEBUG").map(String::as_str), Some("true"));
}

#[test]
fn the_file_extension_chooses_the_format() {
    let yaml = "- id: a\n  script: [make]\n";
    assert!(parse("build.YAML", yaml).is_ok());
    assert!(parse("ci/build.yml", yaml).is_ok());
    assert_eq!(
        message("build.toml", yaml),
        "build.toml: not a pipeline file; expected .yaml, .yml or .json"
    );
    assert!(matches!(error("build", yaml), PipelineError::UnsupportedFile { .. }));
    assert!(matches!(
        error(".monkeyci/build", yaml),
        PipelineError::UnsupportedFile { .. }
    ));
    // YAML is not JSON.
    let err = error("build.json", yaml);
    assert_eq!(err.line(), Some(1), "{err}");
}

#[test]
fn pipeline_files_are_looked_for_in_order() {
    assert_eq!(PIPELINE_FILES, ["build.yaml", "build.yml", "build.json"]);
    assert_eq!(PIPELINE_DIR, ".monkeyci");
}

// ---- ordering ----

#[test]
fn jobs_come_after_their_dependencies_and_otherwise_in_file_order() {
    // A diamond written bottom-up: d needs b and c, which both need a.
    let yaml = "\
- {id: d, script: [make], dependencies: [b, c]}
- {id: c, script: [make], dependencies: [a]}
- {id: b, script: [make], dependencies: [a]}
- {id: a, script: [make]}
- {id: e, script: [make]}
";
    let pipeline = parse("build.yaml", yaml).expect("valid");
    // e is independent but written last, so it stays last.
    assert_eq!(ids(&pipeline), ["a", "c", "b", "d", "e"]);

    // Written top-down, the order is the file's.
    let yaml = "\
- {id: a, script: [make]}
- {id: b, script: [make], dependencies: [a]}
- {id: c, script: [make], dependencies: [a]}
- {id: d, script: [make], dependencies: [c, b, b]}
";
    let pipeline = parse("build.yaml", yaml).expect("valid");
    assert_eq!(ids(&pipeline), ["a", "b", "c", "d"]);
    assert_eq!(pipeline[3].dependencies, [job_id("c"), job_id("b")]);
}

#[test]
fn a_dependency_cycle_is_refused_naming_its_jobs() {
    let yaml = "\
- id: start
  script: [make]
- id: a
  script: [make]
  dependencies: [b]
- id: b
  script: [make]
  dependencies: [start, c]
- id: c
  script: [make]
  dependencies: [a]
- id: after
  script: [make]
  dependencies: [c]
";
    let err = error("build.yaml", yaml);
    assert_eq!(err.to_string(), "build.yaml:3: dependency cycle: a -> b -> c -> a");
    assert_eq!(
        err,
        PipelineError::Cycle {
            file: "build.yaml".to_owned(),
            cycle: vec![job_id("a"), job_id("b"), job_id("c")],
            line: Some(3),
        }
    );
}

#[test]
fn a_job_depending_on_itself_is_a_cycle() {
    assert_eq!(
        message(
            "build.json",
            "[\n  {\"id\": \"x\", \"script\": [\"make\"], \"dependencies\": [\"x\"]}\n]"
        ),
        "build.json:2: dependency cycle: x -> x"
    );
}

#[test]
fn a_cycle_reached_from_a_job_outside_it_names_only_the_cycle() {
    let yaml = "\
- {id: outside, script: [make], dependencies: [q]}
- {id: p, script: [make], dependencies: [q]}
- {id: q, script: [make], dependencies: [p]}
";
    assert_eq!(
        message("build.yaml", yaml),
        "build.yaml:2: dependency cycle: p -> q -> p"
    );
}

// ---- semantic errors ----

#[test]
fn an_empty_pipeline_is_refused() {
    for (file, contents) in [
        ("build.yaml", ""),
        ("build.yaml", "# nothing yet\n---\n"),
        ("build.yaml", "[]"),
        ("build.yaml", "jobs: []"),
        ("build.yaml", "jobs:\n"),
        ("build.json", "  \n"),
        ("build.json", "[]"),
        ("build.json", r#"{"jobs": [], "timeout": 60}"#),
    ] {
        let err = error(file, contents);
        assert_eq!(
            err.to_string(),
            format!("{file}: the pipeline has no jobs"),
            "{contents:?}"
        );
    }
}

#[test]
fn duplicate_job_ids_are_refused_at_the_second_job() {
    let yaml = "\
- id: build
  script: [make]
- id: test
  script: [make test]
- id: build
  script: [make again]
";
    let err = error("build.yaml", yaml);
    assert_eq!(
        err.to_string(),
        "build.yaml:5: job id build is used by more than one job"
    );
    assert!(matches!(err, PipelineError::DuplicateJob { ref id, line: Some(5), .. } if id.as_str() == "build"));
}

#[test]
fn a_dependency_on_an_unknown_job_names_both() {
    let json = r#"{"jobs": [
  {"id": "build", "script": ["make"]},
  {
    "id": "deploy",
    "script": ["make deploy"],
    "dependencies": ["build", "tests"]
  }
]}"#;
    let err = error("build.json", json);
    assert_eq!(
        err.to_string(),
        "build.json:4: job deploy depends on tests, which is not a job of this pipeline"
    );
    assert_eq!(err.file(), "build.json");
    assert_eq!(err.line(), Some(4));
}

#[test]
fn an_invalid_job_id_is_refused_where_it_is_written() {
    let yaml = "- id: ok\n  script: [make]\n- id: not ok\n  script: [make]\n";
    let err = message("build.yaml", yaml);
    assert!(err.starts_with("build.yaml:3:7: "), "{err}");
    assert!(
        err.contains(r#"invalid job id "not ok": may contain only letters"#),
        "{err}"
    );

    let json = "[\n {\"id\": \"\", \"script\": [\"make\"]}\n]";
    let err = message("build.json", json);
    assert!(err.starts_with("build.json:2:"), "{err}");
    assert!(
        err.contains(r#"invalid job id "": must be 1 to 100 characters long"#),
        "{err}"
    );

    let err = message("build.yaml", "- id: a\n  script: [make]\n  dependencies: [\"b c\"]\n");
    assert!(err.starts_with("build.yaml:3:"), "{err}");
    assert!(err.contains(r#"invalid job id "b c""#), "{err}");
}

#[test]
fn bad_timeouts_are_refused() {
    let err = message("build.yaml", "- id: a\n  script: [make]\n  timeout: 10 minutes\n");
    assert!(err.starts_with("build.yaml:3:12: "), "{err}");
    assert!(
        err.contains(r#"invalid timeout: "10 minutes" is not a duration"#),
        "{err}"
    );

    let err = message("build.yaml", "- id: a\n  script: [make]\n  timeout: 0\n");
    assert!(err.starts_with("build.yaml:3:12: "), "{err}");
    assert!(err.ends_with("invalid timeout: must be longer than zero"), "{err}");

    let err = message(
        "build.json",
        "[{\"id\": \"a\", \"script\": [\"make\"],\n \"timeout\": -5}]",
    );
    assert!(err.starts_with("build.json:2:"), "{err}");
    assert!(err.ends_with("invalid timeout: must be longer than zero"), "{err}");

    let err = message("build.json", r#"[{"id": "a", "script": ["make"], "timeout": 1.5}]"#);
    assert!(err.contains("expected whole seconds or a duration"), "{err}");

    let err = message("build.yaml", "timeout: 48h\njobs:\n  - id: a\n    script: [make]\n");
    assert!(err.starts_with("build.yaml:1:10: "), "{err}");
    assert!(err.ends_with("invalid timeout: must be at most 24h"), "{err}");
}

#[test]
fn bad_paths_are_refused() {
    for (path, reason) in [
        ("/etc/passwd", "must be relative to the checkout, not absolute"),
        ("C:/Windows", "must be relative to the checkout, not absolute"),
        ("../secrets", "must not contain '..'"),
        ("target/../../x", "must not contain '..'"),
        ("a\\..\\b", "must not contain '..'"),
        ("", "must not be empty"),
    ] {
        let yaml = format!(
            "- id: a\n  script: [make]\n  save-artifacts:\n    - id: out\n      path: {}\n",
            serde_json::Value::from(path)
        );
        let err = message("build.yaml", &yaml);
        assert!(err.starts_with("build.yaml:5:13: "), "{path:?}: {err}");
        assert!(
            err.contains(&format!("invalid path {path:?}: {reason}")),
            "{path:?}: {err}"
        );
    }
    let err = message("build.yaml", "- id: a\n  script: [make]\n  work-dir: /src\n");
    assert!(err.starts_with("build.yaml:3:13: "), "{err}");
    assert!(err.contains("invalid path \"/src\""), "{err}");
    let err = message(
        "build.json",
        r#"[{"id": "a", "script": ["make"], "caches": [{"id": "c", "path": ".."}]}]"#,
    );
    assert!(err.contains("invalid path \"..\": must not contain '..'"), "{err}");
    // Dots inside names are fine.
    assert!(RelativePath::parse("a/..b/c..").is_ok());
    assert!(RelativePath::parse("./target").is_ok());
}

#[test]
fn artifact_ids_are_checked_like_job_ids() {
    let err = message(
        "build.yaml",
        "- id: a\n  script: [make]\n  caches:\n    - id: my cache\n      path: x\n",
    );
    assert!(err.starts_with("build.yaml:4:11: "), "{err}");
    assert!(
        err.contains(r#"invalid artifact id "my cache": may contain only"#),
        "{err}"
    );
    assert!(ArtifactId::parse("cargo-registry").is_ok());
    assert_eq!(
        ArtifactId::parse("").map_err(|e| e.to_string()),
        Err("invalid artifactId: must be 1 to 100 characters long".to_owned())
    );
}

#[test]
fn retries_are_a_small_non_negative_number() {
    let pipeline = parse("build.yaml", "- {id: a, script: [make], retries: 10}").expect("valid");
    assert_eq!(pipeline[0].retries, 10);
    let err = message("build.yaml", "- id: a\n  script: [make]\n  retries: 11\n");
    assert!(err.starts_with("build.yaml:3:12: "), "{err}");
    assert!(err.ends_with("invalid retries: must be at most 10"), "{err}");
    let err = message("build.json", r#"[{"id": "a", "script": ["make"], "retries": -1}]"#);
    assert!(err.ends_with("invalid retries: must not be negative"), "{err}");
    let err = message("build.yaml", "- {id: a, script: [make], retries: many}");
    assert!(err.contains("expected a number of retries from 0 to 10"), "{err}");
}

#[test]
fn a_job_needs_an_id_and_a_script_with_commands() {
    let err = message("build.yaml", "- image: alpine\n  script: [make]\n");
    assert!(err.starts_with("build.yaml:1:"), "{err}");
    assert!(err.contains("missing field `id`"), "{err}");

    let err = message("build.yaml", "- id: a\n  image: alpine\n");
    assert!(err.contains("missing field `script`"), "{err}");

    let err = message("build.yaml", "- id: a\n  script: []\n");
    assert!(err.starts_with("build.yaml:2:11: "), "{err}");
    assert!(err.ends_with("a script needs at least one command"), "{err}");

    let err = message("build.yaml", "- id: a\n  script: make\n");
    assert!(err.contains("expected a list of shell commands"), "{err}");

    let err = message("build.yaml", "- id: a\n  script: [make]\n  image: ''\n");
    assert!(err.contains(r#"invalid image "": must not be empty"#), "{err}");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = message("build.yaml", "- id: a\n  script: [make]\n  dependson: [b]\n");
    assert!(err.starts_with("build.yaml:3:3: "), "{err}");
    assert!(err.contains("unknown field `dependson`"), "{err}");

    let err = message("build.yaml", "jobs:\n  - {id: a, script: [make]}\nname: app\n");
    assert!(err.starts_with("build.yaml:3:1: "), "{err}");
    assert!(
        err.contains("unknown field `name`, expected `jobs` or `timeout`"),
        "{err}"
    );

    let err = message(
        "build.json",
        "[{\"id\": \"a\", \"script\": [\"make\"],\n  \"conditions\": {\"branch\": [\"main\"]}}]",
    );
    assert!(err.starts_with("build.json:2:"), "{err}");
    assert!(err.contains("unknown field `branch`"), "{err}");

    let err = message(
        "build.yaml",
        "- id: a\n  script: [make]\n  caches: [{id: c, path: x, size: 1}]\n",
    );
    assert!(err.contains("unknown field `size`"), "{err}");

    let err = message(
        "build.yaml",
        "- id: a\n  script: [make]\n  conditions: {sources: [cron]}\n",
    );
    assert!(err.contains("unknown variant `cron`"), "{err}");
}

// ---- syntax and type errors ----

#[test]
fn yaml_syntax_errors_name_the_file_line_and_column() {
    let yaml = "- id: a\n  script: [make\n- id: b\n";
    let err = error("build.yaml", yaml);
    assert!(
        matches!(
            err,
            PipelineError::Invalid {
                line: Some(_),
                column: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("build.yaml:{}:", err.line().unwrap_or(0))),
        "{text}"
    );

    let err = error("build.yaml", "- id: a\n  script: [make]\n   bad indent: x\n");
    assert_eq!(
        err.to_string(),
        "build.yaml:3:4: did not find expected key, while parsing a block mapping at line 1 column 3"
    );
    assert_eq!(err.line(), Some(3));
}

#[test]
fn json_syntax_errors_name_the_file_line_and_column() {
    let json = "[\n  {\"id\": \"a\", \"script\": [\"make\"]},\n  {\"id\": \"b\" \"script\": []}\n]";
    let err = error("build.json", json);
    assert_eq!(
        err.to_string(),
        "build.json:3:14: expected `,` or `}`",
        "the location is not repeated at the end"
    );
    let err = message("build.json", "[{\"id\": \"a\", \"script\": [\"make\"]}] trailing");
    assert!(err.starts_with("build.json:1:"), "{err}");
    assert!(err.contains("trailing characters"), "{err}");
}

#[test]
fn type_errors_name_the_file_and_line() {
    let err = message("build.yaml", "- id: a\n  script: [make]\n  blocked: yes\n");
    assert!(err.starts_with("build.yaml:3:12: "), "{err}");
    assert!(err.contains("expected a boolean"), "{err}");

    let err = message("build.json", "{\"jobs\": {\"id\": \"a\"}}");
    assert!(err.starts_with("build.json:1:"), "{err}");
    assert!(err.contains("expected a list of jobs"), "{err}");

    let err = message("build.yaml", "just a string");
    assert!(err.starts_with("build.yaml:1:1: "), "{err}");
    assert!(err.contains("expected a list of jobs, or a map with `jobs`"), "{err}");
}

// ---- conditions ----

fn conditions(yaml: &str) -> Conditions {
    let file = format!("- id: a\n  script: [make]\n  conditions: {yaml}\n");
    parse("build.yaml", &file)
        .expect("valid")
        .into_jobs()
        .remove(0)
        .conditions
}

fn ctx<'a>(branch: Option<&'a str>, tag: Option<&'a str>) -> ConditionContext<'a> {
    ConditionContext {
        branch,
        tag,
        changed_paths: None,
        source: TriggerSource::Webhook,
    }
}

#[test]
fn no_conditions_always_match() {
    let none = Conditions::default();
    assert!(none.is_empty());
    assert!(none.matches(&ctx(Some("main"), None)));
    assert!(none.matches(&ctx(None, Some("v1"))));
    assert!(conditions("{}").is_empty());
}

#[test]
fn branch_and_tag_conditions_match_the_built_ref() {
    let branches = conditions("{branches: [main, 'release/*']}");
    assert!(branches.matches(&ctx(Some("main"), None)));
    assert!(branches.matches(&ctx(Some("release/1.2"), None)));
    assert!(!branches.matches(&ctx(Some("release/1.2/fix"), None)));
    assert!(!branches.matches(&ctx(Some("feature/x"), None)));
    assert!(
        !branches.matches(&ctx(None, Some("main"))),
        "a tag build is not a branch build"
    );

    let tags = conditions("{tags: ['v*']}");
    assert!(tags.matches(&ctx(None, Some("v1.2.0"))));
    assert!(!tags.matches(&ctx(None, Some("nightly"))));
    assert!(!tags.matches(&ctx(Some("main"), None)));

    let either = conditions("{branches: [main], tags: ['v*']}");
    assert!(either.matches(&ctx(Some("main"), None)));
    assert!(either.matches(&ctx(None, Some("v2"))));
    assert!(!either.matches(&ctx(Some("dev"), None)));
}

#[test]
fn path_conditions_need_a_matching_change_unless_changes_are_unknown() {
    let paths = conditions("{paths: ['src/**', '**/*.md']}");
    let changed = |paths: &[&str]| paths.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    fn at(changed: &[String]) -> ConditionContext<'_> {
        ConditionContext {
            changed_paths: Some(changed),
            ..ctx(Some("main"), None)
        }
    }
    assert!(paths.matches(&ctx(Some("main"), None)), "unknown changes");
    assert!(paths.matches(&at(&changed(&["Cargo.toml", "src/lib.rs"]))));
    assert!(paths.matches(&at(&changed(&["docs/guide/intro.md"]))));
    assert!(paths.matches(&at(&changed(&["README.md"]))));
    assert!(!paths.matches(&at(&changed(&["Cargo.toml", "tests/a.rs"]))));
    assert!(!paths.matches(&at(&[])));
}

#[test]
fn source_conditions_match_the_trigger() {
    let sources = conditions("{sources: [api, cli, api]}");
    assert_eq!(sources.sources, [TriggerSource::Api, TriggerSource::Cli]);
    let from = |source| ConditionContext {
        source,
        ..ctx(Some("main"), None)
    };
    assert!(sources.matches(&from(TriggerSource::Api)));
    assert!(sources.matches(&from(TriggerSource::Cli)));
    assert!(!sources.matches(&from(TriggerSource::Webhook)));
    assert!(!sources.matches(&from(TriggerSource::Schedule)));
}

#[test]
fn all_kinds_of_condition_must_hold() {
    let all = conditions("{branches: [main], paths: ['src/**'], sources: [webhook]}");
    let changed = vec!["src/main.rs".to_owned()];
    let good = ConditionContext {
        changed_paths: Some(&changed),
        ..ctx(Some("main"), None)
    };
    assert!(all.matches(&good));
    assert!(!all.matches(&ConditionContext {
        branch: Some("dev"),
        ..good
    }));
    assert!(!all.matches(&ConditionContext {
        source: TriggerSource::Schedule,
        ..good
    }));
    let docs = vec!["docs/a.md".to_owned()];
    assert!(!all.matches(&ConditionContext {
        changed_paths: Some(&docs),
        ..good
    }));
}

#[test]
fn the_context_of_a_trigger_carries_its_ref_and_source() {
    use crate::values::{Params, RefName};
    let trigger = Trigger {
        source: TriggerSource::Schedule,
        git_ref: GitRef::Tag(RefName::parse("v1.0.0").expect("valid ref")),
        commit: None,
        params: Params::default(),
        push: None,
    };
    let context = ConditionContext::from_trigger(&trigger, None);
    assert_eq!(context.branch, None);
    assert_eq!(context.tag, Some("v1.0.0"));
    assert_eq!(context.source, TriggerSource::Schedule);
    assert!(conditions("{tags: ['v*'], sources: [schedule]}").matches(&context));
}
