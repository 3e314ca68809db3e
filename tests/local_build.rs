//! `monkeyci build run` behaves as the server does: blocked jobs never hang it, `paths`
//! conditions look at the commit, caches last from run to run, and the README's own pipelines
//! do what the README says. Every test runs the real binary, with stdin not a terminal, on a git
//! repository of its own, and fails (rather than hangs) when a run does not end in time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monkeyci_tests::{monkeyci_binary, PODMAN_RUNTIME, PODMAN_ULIMITS};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How long a run of a pipeline of host jobs may take.
const HOST_JOBS: Duration = Duration::from_secs(60);

/// How long a run with container jobs may take.
const CONTAINER_JOBS: Duration = Duration::from_secs(240);

/// Runs git in `dir`. The checkout belongs to the job user after a run as root, so git is told
/// the test's own repositories are safe.
fn git(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["-c", "safe.directory=*"];
    all.extend_from_slice(args);
    monkeyci_tests::git(dir, &all)
}

/// A git repository on branch `main` whose first commit holds `pipeline` and `files`.
fn repository(pipeline: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    git(dir.path(), &["init", "--quiet", "--initial-branch", "main"]);
    write(dir.path(), ".monkeyci/build.yaml", pipeline);
    for (path, contents) in files {
        write(dir.path(), path, contents);
    }
    commit(dir.path(), "the pipeline");
    dir
}

fn write(dir: &Path, path: &str, contents: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "--message", message]);
}

/// How one `build run` ended.
#[derive(Debug)]
struct Run {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The job's status and note in the summary.
    fn job(&self, id: &str) -> (String, String) {
        let mut rows = self.stdout.lines().skip_while(|l| !l.starts_with("job "));
        rows.next().unwrap_or_else(|| panic!("no summary in {}", self.stdout));
        for row in rows.take_while(|l| !l.is_empty()) {
            let mut words = row.split_whitespace();
            if words.next() == Some(id) {
                let status = words.next().unwrap_or_default().to_owned();
                let note = words.skip(1).collect::<Vec<_>>().join(" ");
                return (status, note);
            }
        }
        panic!("no job {id} in the summary of {}", self.stdout)
    }

    /// Where `text` first appears in stdout; fails the test if it does not.
    fn at(&self, text: &str) -> usize {
        self.stdout
            .find(text)
            .unwrap_or_else(|| panic!("{text:?} not in the output:\n{}", self.stdout))
    }
}

/// Collects what `from` writes, so that a run that hangs can still be shown.
fn collect(mut from: impl AsyncRead + Unpin + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    let read = Arc::new(Mutex::new(Vec::new()));
    let into = read.clone();
    let task = tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = from.read(&mut chunk).await {
            into.lock().expect("lock").extend_from_slice(&chunk[..n]);
        }
    });
    (read, task)
}

/// `monkeyci build run` of `dir` with caches in `caches`, stdin not a terminal, and `env` on
/// top of the test's environment; killed, failing the test, if it runs longer than `limit`.
async fn build_run(dir: &Path, caches: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut command = Command::new(monkeyci_binary().expect("binary"));
    command
        .args(["build", "run", "--dir"])
        .arg(dir)
        .args(args)
        // The variable rather than `--cache-dir` (the help test covers the flag), so that a
        // binary from before either existed fails these tests on what it does, not on a flag.
        .env("MONKEYCI_CACHE_DIR", caches)
        .envs(env.iter().copied())
        .env("MONKEYCI_CONTAINER_RUNTIME", PODMAN_RUNTIME)
        .env("MONKEYCI_CONTAINER_ULIMITS", PODMAN_ULIMITS.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("start monkeyci build run");
    let (stdout, out_task) = collect(child.stdout.take().expect("stdout"));
    let (stderr, err_task) = collect(child.stderr.take().expect("stderr"));
    let text = |bytes: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&bytes.lock().expect("lock")).into_owned();
    let Ok(status) = tokio::time::timeout(limit, child.wait()).await else {
        let _ = child.kill().await;
        panic!(
            "`monkeyci build run {args:?}` still ran after {limit:?}, so it was killed.\nstdout:\n{}\nstderr:\n{}",
            text(&stdout),
            text(&stderr)
        );
    };
    let status = status.expect("wait");
    let _ = out_task.await;
    let _ = err_task.await;
    Run {
        status: status.code(),
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

const BLOCKED_DEPLOY: &str = "\
- id: build
  script: [\"echo built\"]
- id: deploy
  dependencies: [build]
  blocked: true
  script: [\"echo deployed\"]
- id: announce
  dependencies: [deploy]
  script: [\"echo announced\"]
";

#[tokio::test]
async fn build_run_without_a_terminal_skips_a_blocked_job_and_its_dependents_and_exits_with_3() {
    let repo = repository(BLOCKED_DEPLOY, &[]);
    let caches = tempfile::tempdir().expect("caches");

    let skipped = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;
    let told_to_skip = build_run(repo.path(), caches.path(), &["--skip-blocked"], &[], HOST_JOBS).await;
    let approved = build_run(repo.path(), caches.path(), &["--approve-blocked"], &[], HOST_JOBS).await;

    let out = &skipped.stdout;
    assert_eq!(skipped.status, Some(3), "{out}\n{}", skipped.stderr);
    assert_eq!(skipped.job("build").0, "succeeded", "{out}");
    let (status, note) = skipped.job("deploy");
    assert_eq!(status, "skipped", "{out}");
    assert!(
        note.contains("needs approval") && note.contains("--approve-blocked runs it"),
        "{out}"
    );
    assert_eq!(
        skipped.job("announce"),
        ("skipped".into(), "dependency deploy did not succeed".into()),
        "{out}"
    );
    assert!(
        !out.contains("[deploy] deployed") && !out.contains("[announce]"),
        "{out}"
    );
    assert!(
        out.contains("not approved, so skipped with their dependents: deploy"),
        "{out}"
    );

    assert_eq!(told_to_skip.status, Some(3), "{}", told_to_skip.stdout);
    assert!(
        told_to_skip.job("deploy").1.contains("--skip-blocked skips it"),
        "{}",
        told_to_skip.stdout
    );

    let out = &approved.stdout;
    assert_eq!(approved.status, Some(0), "{out}\n{}", approved.stderr);
    assert!(
        approved.at("=== build succeeded") < approved.at("=== deploy started"),
        "an approved job still waits for its dependencies: {out}"
    );
    assert!(
        out.contains("[deploy] deployed") && out.contains("[announce] announced"),
        "{out}"
    );
}

#[tokio::test]
async fn build_run_with_a_failed_job_exits_with_1_even_when_a_blocked_job_was_skipped() {
    let repo = repository(&BLOCKED_DEPLOY.replace("echo built", "exit 4"), &[]);
    let caches = tempfile::tempdir().expect("caches");

    let run = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;

    assert_eq!(run.status, Some(1), "{}", run.stdout);
    assert_eq!(run.job("build").0, "failed", "{}", run.stdout);
    assert_eq!(run.job("deploy").0, "skipped", "{}", run.stdout);
}

const DOCS_AND_TESTS: &str = "\
- id: docs
  conditions: {paths: [\"docs/**\"]}
  script: [\"echo building the docs\"]
- id: test
  script: [\"echo testing\"]
";

#[tokio::test]
async fn build_run_runs_a_paths_job_only_for_a_commit_that_changed_its_paths() {
    let repo = repository(
        DOCS_AND_TESTS,
        &[("docs/index.md", "# Docs\n"), ("src/main.txt", "one\n")],
    );
    let caches = tempfile::tempdir().expect("caches");
    write(repo.path(), "src/main.txt", "two\n");
    commit(repo.path(), "code only");

    let code_only = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;
    // Uncommitted changes are not the commit's: the server would not see them either.
    write(repo.path(), "docs/index.md", "# Docs, being edited\n");
    let uncommitted = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;
    commit(repo.path(), "docs");
    let docs = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;

    assert_eq!(code_only.status, Some(0), "{}", code_only.stdout);
    assert_eq!(
        code_only.job("docs"),
        ("skipped".into(), "its conditions do not hold for this build".into()),
        "{}",
        code_only.stdout
    );
    assert_eq!(code_only.job("test").0, "succeeded", "{}", code_only.stdout);
    assert!(!code_only.stdout.contains("[docs]"), "{}", code_only.stdout);
    assert_eq!(uncommitted.job("docs").0, "skipped", "{}", uncommitted.stdout);
    assert_eq!(docs.status, Some(0), "{}", docs.stdout);
    assert_eq!(docs.job("docs").0, "succeeded", "{}", docs.stdout);
    assert!(docs.stdout.contains("[docs] building the docs"), "{}", docs.stdout);
}

#[tokio::test]
async fn build_run_outside_a_git_repository_says_so_and_lets_paths_conditions_hold() {
    let dir = tempfile::tempdir().expect("dir");
    write(dir.path(), ".monkeyci/build.yaml", DOCS_AND_TESTS);
    let caches = tempfile::tempdir().expect("caches");

    let run = build_run(dir.path(), caches.path(), &[], &[], HOST_JOBS).await;

    assert_eq!(run.status, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("is not a git repository with a commit")
            && run.stderr.contains("`paths` conditions hold for every job"),
        "{}",
        run.stderr
    );
    assert_eq!(run.job("docs").0, "succeeded", "{}", run.stdout);
}

/// Files below `dir` (recursively) whose name is `name`.
fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn build_run_restores_the_caches_an_earlier_run_of_the_checkout_saved() {
    let pipeline = "\
- id: deps
  caches: [{id: deps, path: deps}]
  script:
    - 'if [ -f deps/made-by ]; then echo \"found deps of $(cat deps/made-by)\"; else echo \"no deps yet\"; fi'
    - 'mkdir -p deps && echo \"$MONKEYCI_BUILD_ID\" > deps/made-by'
    - 'echo \"this is $MONKEYCI_BUILD_ID\"'
";
    let repo = repository(pipeline, &[(".gitignore", "deps/\n")]);
    let other = repository(pipeline, &[(".gitignore", "deps/\n")]);
    let caches = tempfile::tempdir().expect("caches");

    let first = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;
    let cache_files_after_first = files_named(caches.path(), "deps.tgz").len();
    // As in a fresh clone, only the cache can bring the directory back.
    std::fs::remove_dir_all(repo.path().join("deps")).expect("remove deps");
    let second = build_run(repo.path(), caches.path(), &[], &[], HOST_JOBS).await;
    let elsewhere = build_run(other.path(), caches.path(), &[], &[], HOST_JOBS).await;

    assert_eq!(first.status, Some(0), "{}", first.stdout);
    assert!(first.stdout.contains("[deps] no deps yet"), "{}", first.stdout);
    assert!(first.stdout.contains("[deps] saved cache deps"), "{}", first.stdout);
    let first_build = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("[deps] this is "))
        .unwrap_or_else(|| panic!("no build id in {}", first.stdout));
    assert_eq!(cache_files_after_first, 1, "one cache file in the cache directory");

    assert_eq!(second.status, Some(0), "{}", second.stdout);
    assert!(
        second.stdout.contains("[deps] restored cache deps"),
        "{}",
        second.stdout
    );
    assert!(
        second.stdout.contains(&format!("[deps] found deps of {first_build}")),
        "{}",
        second.stdout
    );

    // Caches belong to a repo: another checkout has its own.
    assert!(elsewhere.stdout.contains("[deps] no deps yet"), "{}", elsewhere.stdout);
    assert_eq!(files_named(caches.path(), "deps.tgz").len(), 2);
}

#[tokio::test]
async fn build_run_help_explains_exit_statuses_blocked_jobs_paths_and_caches() {
    let help = Command::new(monkeyci_binary().expect("binary"))
        .args(["build", "run", "--help"])
        .output()
        .await
        .expect("help");

    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{text}");
    for expected in [
        "Exit status: 0 the build succeeded; 1 it failed",
        "2 bad arguments; 3 nothing failed, but blocked jobs were skipped for want of approval",
        "Run it? [y/N]",
        "--approve-blocked",
        "--skip-blocked",
        "the files the checkout's HEAD commit changed",
        "--cache-dir <CACHE_DIR>",
        "restores what the last run of the same directory saved",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

/// The fenced YAML blocks of README.md that are pipelines (their jobs have a `script`), read at
/// test time so that the README cannot drift from what `build run` does.
fn readme_pipelines() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README");
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in readme.lines() {
        match &mut open {
            None if line.trim_start().starts_with("```yaml") => open = Some(String::new()),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks.into_iter().filter(|b| b.contains("script")).collect()
}

/// `pipeline` with every job's image replaced by `image`.
fn with_image(pipeline: &str, image: &str) -> String {
    let mut out = String::new();
    for line in pipeline.lines() {
        match line.find("image:") {
            Some(at) if line[..at].trim_matches([' ', '-']).is_empty() => {
                out.push_str(&line[..at]);
                out.push_str(&format!("image: {image}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// One run of a README pipeline and what it must give.
struct Case {
    /// What the case shows.
    what: &'static str,
    branch: &'static str,
    /// What the commit built changes.
    changes: &'static [(&'static str, &'static str)],
    flags: &'static [&'static str],
    exit: i32,
    /// Each job's status in the summary, and text its note holds.
    jobs: &'static [(&'static str, &'static str, &'static str)],
    /// Lines of the output, in this order (each later than the one before).
    in_order: &'static [&'static str],
    /// Lines of the output, anywhere.
    shows: &'static [&'static str],
}

/// What the README's pipelines must give, by their job ids.
fn readme_cases(jobs: &str) -> Option<&'static [Case]> {
    Some(match jobs {
        "deploy,lint,package,test" => &[
            Case {
                what: "on main and without a terminal, deploy needs an approval nobody gives",
                branch: "main",
                changes: &[("src/main.rs", "fn main() { println!(\"v2\") }\n")],
                flags: &[],
                exit: 3,
                jobs: &[
                    ("test", "succeeded", ""),
                    ("lint", "succeeded", ""),
                    ("package", "succeeded", ""),
                    (
                        "deploy",
                        "skipped",
                        "it needs approval; skipped in a local run without a terminal",
                    ),
                ],
                in_order: &[
                    "[test] cargo test",
                    "=== test succeeded",
                    "[package] cargo build --profile release",
                ],
                shows: &["[lint] cargo clippy -- -D warnings"],
            },
            Case {
                what: "approved, deploy runs once package has succeeded",
                branch: "main",
                changes: &[("src/main.rs", "fn main() { println!(\"v3\") }\n")],
                flags: &["--approve-blocked"],
                exit: 0,
                jobs: &[("package", "succeeded", ""), ("deploy", "succeeded", "")],
                shows: &[],
                in_order: &[
                    "=== deploy approved",
                    "=== package succeeded",
                    "=== deploy started",
                    "[deploy] deploying",
                ],
            },
            Case {
                what: "on another branch, deploy's conditions do not hold and nobody is asked",
                branch: "feature/x",
                changes: &[("src/main.rs", "fn main() { println!(\"v4\") }\n")],
                flags: &["--job", "deploy"],
                exit: 0,
                jobs: &[("deploy", "skipped", "its conditions do not hold for this build")],
                in_order: &[],
                shows: &[],
            },
        ],
        "build,docs-only,smoke" => &[
            Case {
                what: "a commit without docs changes: docs-only is skipped, the binary goes from build to smoke",
                branch: "main",
                changes: &[("src/main.rs", "fn main() { println!(\"v2\") }\n")],
                flags: &[],
                exit: 0,
                jobs: &[
                    ("build", "succeeded", ""),
                    ("docs-only", "skipped", "its conditions do not hold for this build"),
                    ("smoke", "succeeded", ""),
                ],
                shows: &[],
                in_order: &[
                    "=== build saved artifact binary",
                    "[build] saved cache cargo",
                    "=== build succeeded",
                    "[smoke] restored artifact binary",
                    "[smoke] app 1.0.0",
                ],
            },
            Case {
                what: "a commit that changes docs/: docs-only runs, build restores the cache saved before",
                branch: "main",
                changes: &[("docs/index.md", "# Docs, v2\n")],
                flags: &[],
                exit: 0,
                jobs: &[
                    ("build", "succeeded", ""),
                    ("docs-only", "succeeded", ""),
                    ("smoke", "succeeded", ""),
                ],
                in_order: &[
                    "[build] restored cache cargo",
                    "=== build succeeded",
                    "[smoke] app 1.0.0",
                ],
                shows: &["[docs-only] make docs"],
            },
        ],
        _ => return None,
    })
}

/// Stands in for cargo, which the tests cannot fetch in `rust:1.89`: says what it was asked,
/// and `build --release` leaves the program a release build of the README's app would.
const CARGO: &str = "#!/bin/sh\n\
echo \"cargo $*\"\n\
if [ \"$1 $2\" = \"build --release\" ]; then\n\
  mkdir -p target/release\n\
  printf '#!/bin/sh\\necho \"app 1.0.0\"\\n' > target/release/app\n\
  chmod +x target/release/app\n\
fi\n";

/// Stands in for make.
const MAKE: &str = "#!/bin/sh\necho \"make $*\"\n";

/// The README's pipelines, as written but for two stand-ins: their images are a local busybox
/// image with a `cargo` of its own (the tests reach no registry), and host jobs run
/// `--executor host-unconfined` with that `cargo` and a `make` first on their PATH. The
/// repository has what a repository using these pipelines would: a `deploy.sh`, a
/// `.cargo/config.toml`, docs, and `target/` ignored.
#[tokio::test]
async fn the_readmes_pipelines_run_locally_as_the_readme_says() {
    let image = monkeyci_tests::image_with_programs(&[("cargo", CARGO)]).expect("image");
    let tools = tempfile::tempdir().expect("tools");
    for (name, script) in [("cargo", CARGO), ("make", MAKE)] {
        write(tools.path(), name, script);
        std::fs::set_permissions(
            tools.path().join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
    }
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let pipelines = readme_pipelines();
    assert!(pipelines.len() >= 2, "README.md has pipelines: {pipelines:?}");
    for (number, pipeline) in pipelines.iter().enumerate() {
        let parsed = monkeyci_domain::pipeline::parse("README.yaml", pipeline)
            .unwrap_or_else(|e| panic!("README pipeline {number} does not parse: {e}\n{pipeline}"));
        let mut ids: Vec<String> = parsed.jobs().iter().map(|j| j.id.to_string()).collect();
        ids.sort();
        let cases = readme_cases(&ids.join(","))
            .unwrap_or_else(|| panic!("README pipeline {number} (jobs {ids:?}) has no cases in this test: add them"));
        let repo = repository(
            &with_image(pipeline, &image),
            &[
                (".gitignore", "target/\n"),
                ("deploy.sh", "#!/bin/sh\necho \"deploying $MONKEYCI_COMMIT\"\n"),
                (".cargo/config.toml", "[build]\nincremental = false\n"),
                ("docs/index.md", "# Docs\n"),
                ("src/main.rs", "fn main() {}\n"),
            ],
        );
        std::fs::set_permissions(
            repo.path().join("deploy.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let caches = tempfile::tempdir().expect("caches");
        for case in cases {
            let what = format!("README pipeline {number}, {}", case.what);
            if git(repo.path(), &["branch", "--show-current"]) != case.branch {
                git(repo.path(), &["checkout", "--quiet", "-B", case.branch]);
            }
            for (file, contents) in case.changes {
                write(repo.path(), file, contents);
            }
            commit(repo.path(), case.what);
            let mut args = vec!["--executor", "host-unconfined"];
            args.extend_from_slice(case.flags);
            let run = build_run(repo.path(), caches.path(), &args, &[("PATH", &path)], CONTAINER_JOBS).await;

            assert_eq!(run.status, Some(case.exit), "{what}:\n{}\n{}", run.stdout, run.stderr);
            for (job, status, note) in case.jobs {
                let (actual, actual_note) = run.job(job);
                assert_eq!(actual, *status, "{what}: job {job}\n{}", run.stdout);
                assert!(actual_note.contains(note), "{what}: job {job}\n{}", run.stdout);
            }
            for line in case.shows {
                assert!(run.stdout.contains(line), "{what}: {line:?} missing in\n{}", run.stdout);
            }
            let mut from = 0;
            for line in case.in_order {
                let at = run.stdout[from..]
                    .find(line)
                    .unwrap_or_else(|| panic!("{what}: {line:?} missing or out of order in\n{}", run.stdout));
                from += at + line.len();
            }
        }
    }
    assert_eq!(
        pipelines.len(),
        2,
        "every README pipeline has its cases here, and every case set a README pipeline"
    );
}
