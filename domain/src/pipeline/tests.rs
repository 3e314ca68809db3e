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
        resources: Resources::default(),
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
    assert!(
        err.contains("expected a list of jobs, a job, or a map with `jobs`"),
        "{err}"
    );
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

// ---- key spellings ----

#[test]
fn every_key_may_be_written_in_kebab_snake_or_camel_case() {
    let job = |work_dir: &str, save: &str, restore: &str, allow_failure: &str| {
        format!(
            "- id: a\n  script: [make]\n  {work_dir}: src\n  {save}: [{{id: out, path: target}}]\n  \
             {restore}: [{{id: in, path: vendor}}]\n  {allow_failure}: true\n"
        )
    };
    let kebab = parse(
        "build.yaml",
        &job("work-dir", "save-artifacts", "restore-artifacts", "allow-failure"),
    )
    .expect("valid");
    let expected = Job {
        work_dir: Some(RelativePath::parse("src").expect("valid path")),
        save_artifacts: vec![artifact("out", "target")],
        restore_artifacts: vec![artifact("in", "vendor")],
        allow_failure: true,
        ..minimal("a")
    };
    assert_eq!(kebab.jobs(), [expected]);
    for spellings in [
        ["work_dir", "save_artifacts", "restore_artifacts", "allow_failure"],
        ["workDir", "saveArtifacts", "restoreArtifacts", "allowFailure"],
        ["workDir", "save_artifacts", "restore-artifacts", "allowFailure"],
    ] {
        let [work_dir, save, restore, allow_failure] = spellings;
        let yaml = job(work_dir, save, restore, allow_failure);
        assert_eq!(parse("build.yaml", &yaml).as_ref(), Ok(&kebab), "{yaml}");
    }
    let json = r#"[{"id": "a", "script": ["make"], "work_dir": "src",
        "save_artifacts": [{"id": "out", "path": "target"}],
        "restoreArtifacts": [{"id": "in", "path": "vendor"}], "allow_failure": true}]"#;
    assert_eq!(parse("build.json", json), Ok(kebab));
}

#[test]
fn one_key_in_two_spellings_is_a_duplicate() {
    assert_eq!(
        message("build.yaml", "- id: a\n  script: [make]\n  work-dir: x\n  workDir: y\n"),
        "build.yaml:1:3: [0]: duplicate field `work-dir`"
    );
    assert_eq!(
        message(
            "build.json",
            r#"[{"id": "a", "script": ["make"], "allow_failure": true, "allowFailure": false}]"#
        ),
        "build.json:1:70: duplicate field `allow-failure`"
    );
}

#[test]
fn an_unknown_key_is_named_as_written_and_the_known_keys_in_kebab_case() {
    assert_eq!(
        message("build.yaml", "- id: a\n  script: [make]\n  dependsOn: [b]\n"),
        "build.yaml:3:3: [0]: unknown field `dependsOn`, expected one of `id`, `image`, `script`, \
         `dependencies`, `env`, `work-dir`, `save-artifacts`, `restore-artifacts`, `caches`, \
         `conditions`, `timeout`, `retries`, `blocked`, `allow-failure`, `memory`, `cpus`, `size`, \
         `arch`"
    );
    // PascalCase and SCREAMING_CASE are not among the spellings.
    for key in ["WorkDir", "WORK_DIR", "work_Dir"] {
        let err = message("build.yaml", &format!("- id: a\n  script: [make]\n  {key}: x\n"));
        assert!(
            err.starts_with(&format!(
                "build.yaml:3:3: [0]: unknown field `{key}`, expected one of `id`"
            )),
            "{err}"
        );
    }
    assert_eq!(
        message(
            "build.yaml",
            "- id: a\n  script: [make]\n  caches: [{id: c, path: x, Path: y}]\n"
        ),
        "build.yaml:3:29: [0].caches[0]: unknown field `Path`, expected `id` or `path`"
    );
    assert_eq!(
        message("build.yaml", "- make\n"),
        "build.yaml:1:3: [0]: invalid type: string \"make\", expected a job: a map with `id` and `script`"
    );
}

// ---- a file of one job ----

#[test]
fn a_file_of_one_job_is_a_pipeline_of_that_job() {
    let yaml = "# One job.\nid: echo\nimage: alpine\nscript: [echo hello]\n";
    let pipeline = parse("build.yaml", yaml).expect("valid");
    let expected = Job {
        image: Some("alpine".to_owned()),
        script: vec!["echo hello".to_owned()],
        ..minimal("echo")
    };
    assert_eq!(pipeline.jobs(), [expected]);
    assert_eq!(pipeline.timeout(), None);

    let json = r#"{"id": "echo", "image": "alpine", "script": ["echo hello"]}"#;
    assert_eq!(parse("build.json", json), Ok(pipeline));
}

#[test]
fn a_job_timeout_first_in_a_file_of_one_job_is_the_jobs() {
    let pipeline = parse("build.yaml", "timeout: 10m\nid: a\nscript: [make]\n").expect("valid");
    assert_eq!(pipeline.timeout(), None);
    assert_eq!(pipeline[0].timeout, Some(Duration::from_secs(600)));

    assert_eq!(
        message("build.yaml", "timeout: 10m\nid: a\nscript: [make]\ntimeout: 5m\n"),
        "build.yaml:1:1: duplicate field `timeout`"
    );
    // With `jobs` after it, `timeout` is the build's.
    let pipeline = parse("build.yaml", "timeout: 2h\njobs: [{id: a, script: [make]}]\n").expect("valid");
    assert_eq!(pipeline.timeout(), Some(Duration::from_secs(7200)));
    assert_eq!(pipeline[0].timeout, None);
}

#[test]
fn errors_in_a_file_of_one_job_carry_their_place() {
    assert_eq!(
        message("build.yaml", "id: a\nscript: [make]\nimage: Alpine\n"),
        "build.yaml:3:8: image: invalid image \"Alpine\": \"Alpine\" is not a path component: \
         lowercase letters and digits, joined by '.', '_', '__' or '-'"
    );
    assert_eq!(
        message("build.yaml", "id: a\nscript: [make]\nname: x\n"),
        "build.yaml:3:1: unknown field `name`, expected one of `id`, `image`, `script`, \
         `dependencies`, `env`, `work-dir`, `save-artifacts`, `restore-artifacts`, `caches`, \
         `conditions`, `timeout`, `retries`, `blocked`, `allow-failure`, `memory`, `cpus`, `size`, \
         `arch`"
    );
    assert_eq!(
        message("build.yaml", "id: a\nimage: alpine\n"),
        "build.yaml:1:1: missing field `script`"
    );
    assert_eq!(
        message(
            "build.json",
            "{\"id\": \"a\",\n \"script\": [\"make\"],\n \"retries\": 11}"
        ),
        "build.json:3:14: invalid retries: must be at most 10"
    );
}

#[test]
fn a_job_written_alone_is_located_at_its_first_key() {
    assert_eq!(
        message("build.yaml", "# Loops.\n\nid: x\nscript: [make]\ndependencies: [x]\n"),
        "build.yaml:3: dependency cycle: x -> x"
    );
    assert_eq!(
        message("build.yaml", "id: x\nscript: [make]\ndependencies: [y]\n"),
        "build.yaml:1: job x depends on y, which is not a job of this pipeline"
    );
    assert_eq!(
        message(
            "build.json",
            "{\n  \"id\": \"x\",\n  \"script\": [\"make\"],\n  \"dependencies\": [\"x\"]\n}"
        ),
        "build.json:2: dependency cycle: x -> x"
    );
}

// ---- MonkeyCI's published format ----

const MONKEYCI_YAML: &str = "\
- id: test
  image: docker.io/maven:latest
  script:
    - mvn verify
  save-artifacts:
    - id: target
      path: target/
  memory: 2
  cpus: 1
- id: publish
  image: docker.io/maven:latest
  script: [mvn deploy:deploy]
  dependencies: [test]
  restore_artifacts:
    - id: target
      path: target/
  size: 2
  arch: arm
";

const MONKEYCI_JSON: &str = r#"[
  {
    "id": "test",
    "image": "docker.io/maven:latest",
    "script": ["mvn verify"],
    "saveArtifacts": [{"id": "target", "path": "target/"}],
    "memory": 2,
    "cpus": 1
  },
  {
    "id": "publish",
    "image": "docker.io/maven:latest",
    "script": ["mvn deploy:deploy"],
    "dependencies": ["test"],
    "restoreArtifacts": [{"id": "target", "path": "target/"}],
    "size": 2,
    "arch": "arm"
  }
]"#;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[test]
fn a_pipeline_in_monkeycis_published_format_is_read() {
    let pipeline = parse(".monkeyci/build.yaml", MONKEYCI_YAML).expect("valid");
    assert_eq!(ids(&pipeline), ["test", "publish"]);
    let test = &pipeline[0];
    assert_eq!(test.image.as_deref(), Some("docker.io/maven:latest"));
    assert_eq!(test.save_artifacts, [artifact("target", "target/")]);
    assert_eq!(
        test.resources,
        Resources {
            memory: Some(2 * GIB),
            millicpus: Some(1000),
            arch: None,
        }
    );
    let publish = &pipeline[1];
    assert_eq!(publish.dependencies, [job_id("test")]);
    assert_eq!(publish.restore_artifacts, [artifact("target", "target/")]);
    assert_eq!(
        publish.resources,
        Resources {
            memory: Some(4 * GIB),
            millicpus: Some(2000),
            arch: Some(Arch::Arm64),
        }
    );
    assert_eq!(parse(".monkeyci/build.json", MONKEYCI_JSON), Ok(pipeline));
}

// ---- resources ----

/// The resources of a container job with these extra lines.
fn resources(lines: &str) -> Resources {
    let yaml = format!("- id: a\n  image: alpine\n  script: [make]\n{lines}");
    parse("build.yaml", &yaml)
        .expect("valid")
        .into_jobs()
        .remove(0)
        .resources
}

fn memory(value: &str) -> Option<u64> {
    resources(&format!("  memory: {value}\n")).memory
}

/// The message for one refused resource line, which is the file's fourth.
fn refused(key: &str, value: &str) -> String {
    message(
        "build.yaml",
        &format!("- id: a\n  image: alpine\n  script: [make]\n  {key}: {value}\n"),
    )
}

#[test]
fn jobs_ask_for_no_resources_by_default() {
    assert_eq!(resources(""), Resources::default());
    assert_eq!(
        parse("build.yaml", YAML).expect("valid")[0].resources,
        Resources::default()
    );
}

#[test]
fn memory_is_a_number_of_gb_or_an_amount_with_a_unit() {
    assert_eq!(memory("2"), Some(2 * GIB));
    assert_eq!(memory("0.5"), Some(512 * MIB));
    assert_eq!(memory("1.5"), Some(1536 * MIB));
    assert_eq!(memory("1024"), Some(1024 * GIB), "1 TiB is the most");
    for value in ["512m", "512M", "512mb", "512MB", "512MiB", "'512m'", "0.5g"] {
        assert_eq!(memory(value), Some(512 * MIB), "{value}");
    }
    for value in ["2g", "2G", "2GB", "2GiB", "2gib", "2048m"] {
        assert_eq!(memory(value), Some(2 * GIB), "{value}");
    }
    for value in ["8192k", "8192kb", "8192KB", "8192KiB"] {
        assert_eq!(memory(value), Some(8 * MIB), "{value}");
    }
    assert_eq!(memory("6m"), Some(6 * MIB), "podman's minimum");
    let json = r#"[{"id": "a", "image": "alpine", "script": ["make"], "memory": "512m"}]"#;
    assert_eq!(
        parse("build.json", json).expect("valid")[0].resources.memory,
        Some(512 * MIB)
    );
    let json = r#"[{"id": "a", "image": "alpine", "script": ["make"], "memory": 0.25}]"#;
    assert_eq!(
        parse("build.json", json).expect("valid")[0].resources.memory,
        Some(256 * MIB)
    );
}

#[test]
fn cpus_are_a_positive_number_kept_in_thousandths() {
    let millicpus = |value: &str| resources(&format!("  cpus: {value}\n")).millicpus;
    assert_eq!(millicpus("1"), Some(1000));
    assert_eq!(millicpus("0.5"), Some(500));
    assert_eq!(millicpus("2.25"), Some(2250));
    assert_eq!(millicpus("0.1234"), Some(123));
    assert_eq!(millicpus("0.001"), Some(1));
    assert_eq!(millicpus("256"), Some(256_000));
}

#[test]
fn size_is_monkeycis_preset_of_one_cpu_and_2_gb_a_unit() {
    assert_eq!(
        resources("  size: 1\n"),
        Resources {
            memory: Some(2 * GIB),
            millicpus: Some(1000),
            arch: None,
        }
    );
    assert_eq!(
        resources("  size: 16\n"),
        Resources {
            memory: Some(32 * GIB),
            millicpus: Some(16_000),
            arch: None,
        }
    );
}

#[test]
fn explicit_cpus_and_memory_win_over_size() {
    assert_eq!(
        resources("  size: 4\n  cpus: 0.5\n"),
        Resources {
            memory: Some(8 * GIB),
            millicpus: Some(500),
            arch: None,
        }
    );
    // The order of the keys does not matter.
    assert_eq!(
        resources("  memory: 512m\n  size: 4\n"),
        Resources {
            memory: Some(512 * MIB),
            millicpus: Some(4000),
            arch: None,
        }
    );
    assert_eq!(
        resources("  cpus: 3\n  memory: 1\n  size: 2\n"),
        Resources {
            memory: Some(GIB),
            millicpus: Some(3000),
            arch: None,
        }
    );
}

#[test]
fn arch_accepts_the_usual_names_of_amd64_and_arm64() {
    for (value, arch) in [
        ("amd", Arch::Amd64),
        ("amd64", Arch::Amd64),
        ("x86_64", Arch::Amd64),
        ("AMD64", Arch::Amd64),
        ("X86_64", Arch::Amd64),
        ("arm", Arch::Arm64),
        ("arm64", Arch::Arm64),
        ("aarch64", Arch::Arm64),
        ("ARM64", Arch::Arm64),
    ] {
        assert_eq!(resources(&format!("  arch: {value}\n")).arch, Some(arch), "{value}");
    }
    assert_eq!(Arch::Amd64.as_oci(), "amd64");
    assert_eq!(Arch::Arm64.as_oci(), "arm64");
}

#[test]
fn refused_resource_values_are_named_where_they_are_written() {
    const AMOUNT: &str = "must be a positive amount such as 2 (GB) or \"512m\"";
    const POSITIVE_CPUS: &str = "must be a positive number such as 1 or 0.5";
    const SIZE: &str = "must be a whole number from 1 to 16 (each is 1 CPU and 2 GB)";
    const ARCH: &str = "must be amd64 (or amd, x86_64) or arm64 (or arm, aarch64)";
    for (key, value, refusal) in [
        ("memory", "-1", format!("invalid memory \"-1\": {AMOUNT}")),
        ("memory", "0", format!("invalid memory \"0\": {AMOUNT}")),
        ("memory", "-0.5", format!("invalid memory \"-0.5\": {AMOUNT}")),
        ("memory", ".nan", format!("invalid memory \"NaN\": {AMOUNT}")),
        ("memory", ".inf", format!("invalid memory \"inf\": {AMOUNT}")),
        ("memory", "-512m", format!("invalid memory \"-512m\": {AMOUNT}")),
        ("memory", "0m", format!("invalid memory \"0m\": {AMOUNT}")),
        ("memory", "512x", format!("invalid memory \"512x\": {AMOUNT}")),
        ("memory", "2t", format!("invalid memory \"2t\": {AMOUNT}")),
        ("memory", "1.5.2g", format!("invalid memory \"1.5.2g\": {AMOUNT}")),
        ("memory", "g", format!("invalid memory \"g\": {AMOUNT}")),
        ("memory", "512 m", format!("invalid memory \"512 m\": {AMOUNT}")),
        ("memory", "''", format!("invalid memory \"\": {AMOUNT}")),
        (
            "memory",
            "'2'",
            "invalid memory \"2\": a string needs a unit, as in \"512m\" or \"2g\"; a bare number is in GB".to_owned(),
        ),
        (
            "memory",
            "5m",
            "invalid memory \"5m\": must be at least 6 MiB, podman's minimum".to_owned(),
        ),
        (
            "memory",
            "0.005",
            "invalid memory \"0.005\": must be at least 6 MiB, podman's minimum".to_owned(),
        ),
        (
            "memory",
            "1025",
            "invalid memory \"1025\": must be at most 1 TiB".to_owned(),
        ),
        (
            "memory",
            "1025g",
            "invalid memory \"1025g\": must be at most 1 TiB".to_owned(),
        ),
        (
            "memory",
            "[2]",
            "invalid type: sequence, expected memory in GB such as 2, or with a unit such as \"512m\"".to_owned(),
        ),
        ("cpus", "0", format!("invalid cpus \"0\": {POSITIVE_CPUS}")),
        ("cpus", "-1", format!("invalid cpus \"-1\": {POSITIVE_CPUS}")),
        ("cpus", ".nan", format!("invalid cpus \"NaN\": {POSITIVE_CPUS}")),
        ("cpus", "257", "invalid cpus \"257\": must be at most 256".to_owned()),
        (
            "cpus",
            "0.0004",
            "invalid cpus \"0.0004\": must be at least 0.001".to_owned(),
        ),
        (
            "cpus",
            "'1'",
            "invalid cpus \"1\": must be a number, not a string".to_owned(),
        ),
        (
            "cpus",
            "true",
            "invalid type: boolean `true`, expected cpus as a number such as 1 or 0.5".to_owned(),
        ),
        ("size", "0", format!("invalid size \"0\": {SIZE}")),
        ("size", "17", format!("invalid size \"17\": {SIZE}")),
        ("size", "-2", format!("invalid size \"-2\": {SIZE}")),
        ("size", "1.5", format!("invalid size \"1.5\": {SIZE}")),
        (
            "size",
            "large",
            "invalid size \"large\": must be a number, not a string".to_owned(),
        ),
        ("arch", "x86", format!("invalid arch \"x86\": {ARCH}")),
        ("arch", "i386", format!("invalid arch \"i386\": {ARCH}")),
        ("arch", "''", format!("invalid arch \"\": {ARCH}")),
    ] {
        let column = key.len() + 5;
        assert_eq!(
            refused(key, value),
            format!("build.yaml:4:{column}: [0].{key}: {refusal}"),
            "{key}: {value}"
        );
    }
    let json = "[{\"id\": \"a\", \"image\": \"alpine\", \"script\": [\"make\"],\n  \"memory\": -1}]";
    assert_eq!(
        message("build.json", json),
        format!("build.json:2:14: invalid memory \"-1\": {AMOUNT}")
    );
}

#[test]
fn resources_are_refused_for_a_job_without_an_image() {
    for line in ["memory: 2", "cpus: 1", "size: 1", "arch: arm64"] {
        let yaml = format!("- id: lint\n  script: [make]\n- id: build\n  script: [make]\n  {line}\n");
        let err = error("build.yaml", &yaml);
        assert_eq!(
            err.to_string(),
            "build.yaml:3: job build: memory, cpus, size and arch apply only to jobs with an image",
            "{line}"
        );
        assert!(matches!(
            err,
            PipelineError::Invalid {
                line: Some(3),
                column: None,
                ..
            }
        ));
    }
    assert_eq!(
        message("build.yaml", "id: build\nscript: [make]\nsize: 2\n"),
        "build.yaml:1: job build: memory, cpus, size and arch apply only to jobs with an image"
    );
    assert_eq!(
        message(
            "build.json",
            "{\"jobs\": [\n  {\"id\": \"build\", \"script\": [\"make\"], \"cpus\": 2}\n]}"
        ),
        "build.json:2: job build: memory, cpus, size and arch apply only to jobs with an image"
    );
}

// ---- images ----

#[test]
fn image_references_in_oci_form_are_accepted() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    for image in [
        "alpine".to_owned(),
        "rust:1.89".to_owned(),
        "docker.io/library/alpine:3.20".to_owned(),
        "localhost/mci-busybox:test".to_owned(),
        "localhost:5000/app".to_owned(),
        format!("registry.example.com:5000/team/app@{digest}"),
        format!("app:1.0@{digest}"),
        "ghcr.io/org/app:v1.2_rc-3".to_owned(),
        "Registry.Example.com/a__b/c---d/e.f_g:_Latest".to_owned(),
        format!("app@{}", "sha512+b64u.x_y-z:ABCDEF0123456789abcdef0123456789"),
    ] {
        let yaml = format!(
            "- id: a\n  script: [make]\n  image: {}\n",
            serde_json::Value::from(image.as_str())
        );
        let pipeline = parse("build.yaml", &yaml).unwrap_or_else(|e| panic!("{image}: {e}"));
        assert_eq!(pipeline[0].image.as_deref(), Some(image.as_str()));
    }
}

#[test]
fn image_references_that_are_not_oci_references_are_refused() {
    const COMPONENT: &str = "is not a path component: lowercase letters and digits, joined by '.', '_', '__' or '-'";
    const TAG: &str = "is not a tag: up to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'";
    const HOST: &str =
        "is not a registry host: labels of letters, digits and '-' separated by '.', with an optional :port";
    let long_name = format!("a/{}", "b".repeat(254));
    let long_tag = format!("app:{}", "t".repeat(129));
    for (image, reason) in [
        ("", "must not be empty".to_owned()),
        (" ", "must not contain whitespace or control characters".to_owned()),
        (
            "alpine; rm -rf /",
            "must not contain whitespace or control characters".to_owned(),
        ),
        (
            "alpine\u{0}",
            "must not contain whitespace or control characters".to_owned(),
        ),
        ("-v", "must not start with '-'".to_owned()),
        ("--privileged", "must not start with '-'".to_owned()),
        ("$(id)", format!("\"$(id)\" {COMPONENT}")),
        ("`id`", format!("\"`id`\" {COMPONENT}")),
        ("a|b", format!("\"a|b\" {COMPONENT}")),
        ("a&&b", format!("\"a&&b\" {COMPONENT}")),
        ("Alpine", format!("\"Alpine\" {COMPONENT}")),
        ("team/App", format!("\"App\" {COMPONENT}")),
        ("a:b:c", format!("\"a:b\" {COMPONENT}")),
        ("a/../b", format!("\"..\" {COMPONENT}")),
        ("a//b", format!("\"\" {COMPONENT}")),
        ("docker.io/", format!("\"\" {COMPONENT}")),
        ("a-", format!("\"a-\" {COMPONENT}")),
        ("a._b", format!("\"a._b\" {COMPONENT}")),
        ("a___b", format!("\"a___b\" {COMPONENT}")),
        ("alpine:", format!("\"\" {TAG}")),
        ("alpine:.x", format!("\".x\" {TAG}")),
        ("alpine:-x", format!("\"-x\" {TAG}")),
        ("alpine:a+b", format!("\"a+b\" {TAG}")),
        (long_tag.as_str(), format!("{:?} {TAG}", "t".repeat(129))),
        ("bad_host.com/app", format!("\"bad_host.com\" {HOST}")),
        ("host-.com/app", format!("\"host-.com\" {HOST}")),
        ("example.com:/app", format!("\"example.com:\" {HOST}")),
        ("example.com:50a/app", format!("\"example.com:50a\" {HOST}")),
        ("example..com/app", format!("\"example..com\" {HOST}")),
        (
            "alpine@",
            "\"\" is not a digest such as sha256:<64 hex digits>".to_owned(),
        ),
        (
            "alpine@sha256:abc",
            "\"sha256:abc\" is not a digest such as sha256:<64 hex digits>".to_owned(),
        ),
        (
            "alpine@Sha256:0123456789abcdef0123456789abcdef",
            "\"Sha256:0123456789abcdef0123456789abcdef\" is not a digest such as sha256:<64 hex digits>".to_owned(),
        ),
        (
            "alpine@sha256:0123456789abcdef0123456789abcdeg",
            "\"sha256:0123456789abcdef0123456789abcdeg\" is not a digest such as sha256:<64 hex digits>".to_owned(),
        ),
        (long_name.as_str(), "must be at most 255 characters long".to_owned()),
    ] {
        let yaml = format!(
            "- id: a\n  script: [make]\n  image: {}\n",
            serde_json::Value::from(image)
        );
        assert_eq!(
            message("build.yaml", &yaml),
            format!("build.yaml:3:10: [0].image: invalid image {image:?}: {reason}"),
            "{image:?}"
        );
    }
}

// ---- environment ----

#[test]
fn environment_names_that_would_be_options_or_hold_nul_are_refused() {
    let env = |entry: &str| {
        message(
            "build.yaml",
            &format!("- id: a\n  script: [make]\n  env: {{{entry}}}\n"),
        )
    };
    assert_eq!(
        env("\"-u\": x"),
        "build.yaml:3:9: [0].env: invalid environment variable name \"-u\": must not start with '-'"
    );
    assert_eq!(
        env("\"A\\0B\": x"),
        "build.yaml:3:9: [0].env: invalid environment variable name \"A\\0B\": must not contain '=' or \
         control characters (such as NUL)"
    );
    assert_eq!(
        env("A: \"x\\0y\""),
        "build.yaml:3:12: [0].env.A: invalid env value \"x\\0y\": must not contain NUL"
    );
    assert_eq!(
        message(
            "build.json",
            r#"[{"id": "a", "script": ["make"], "env": {"A": "x\u0000"}}]"#
        ),
        "build.json:1:55: invalid env value \"x\\0\": must not contain NUL"
    );
    // A `-` inside a name, and any other text as a value, are fine.
    let pipeline = parse(
        "build.yaml",
        "- id: a\n  script: [make]\n  env: {A-B: \"-x=1; $(y)\"}\n",
    )
    .expect("valid");
    assert_eq!(pipeline[0].env.get("A-B").map(String::as_str), Some("-x=1; $(y)"));
}
