//! The web UI served at `/`: its page and files come from the binary with a strict content
//! security policy, and in a real browser against a real server it signs in, shows orgs, repos
//! and builds live, triggers a build and shows its logs with colours, markup as text, and never
//! asks another host for anything.

use std::ffi::OsStr;
use std::time::Duration;

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::access::{app, ADMIN};
use crate::builds::repo_with;
use crate::server::Server;

const UI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui");

/// Every `/ui/<file>` the page and its modules refer to.
fn referenced_files() -> Vec<String> {
    let mut found = Vec::new();
    let page = std::fs::read_to_string(format!("{UI}/index.html")).expect("index.html");
    for piece in page.split("\"/ui/").skip(1) {
        found.push(piece.split('"').next().unwrap_or_default().to_owned());
    }
    for entry in std::fs::read_dir(UI).expect("ui/") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        for piece in text.split(" from './").skip(1) {
            found.push(piece.split('\'').next().unwrap_or_default().to_owned());
        }
    }
    found.sort();
    found.dedup();
    found
}

#[sqlx::test(migrations = "../migrations")]
async fn the_page_and_its_files_come_from_the_binary_under_a_strict_policy(pool: PgPool) {
    let app = app(pool).await;

    // The abuse first: paths that are not files of the UI, and a Host header that tries to
    // write itself into the policy.
    for path in [
        "/ui/nope.js",
        "/ui/..%2FCargo.toml",
        "/ui/index.html",
        "/ui/app.js.map",
        "/ui/",
    ] {
        let response = app.http.get(app.url(path)).send().await.expect("get");
        assert_eq!(response.status(), 404, "{path}");
    }
    let injected = app
        .http
        .get(app.url("/"))
        .header("host", "a.example; script-src https://evil.example")
        .send()
        .await
        .expect("get");
    let policy = injected.headers()[CONTENT_SECURITY_POLICY].to_str().expect("policy");
    assert!(!policy.contains("evil"), "{policy}");

    let page = app.http.get(app.url("/")).send().await.expect("get /");
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
    let policy = headers[CONTENT_SECURITY_POLICY].to_str().expect("policy");
    assert!(
        policy.starts_with("default-src 'self'; script-src 'self'; style-src 'self'"),
        "{policy}"
    );
    assert!(
        policy.contains(&format!("connect-src 'self' ws://{0} wss://{0};", app.addr)),
        "{policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(html.contains("<script type=\"module\" src=\"/ui/app.js\">"), "{html}");

    // Every file the page and its modules import is served, with its type; none names another host.
    let files = referenced_files();
    assert!(files.len() >= 9, "{files:?}");
    for file in &files {
        let response = app.http.get(app.url(&format!("/ui/{file}"))).send().await.expect("get");
        assert_eq!(response.status(), 200, "{file}");
        let kind = match file.rsplit('.').next() {
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/javascript; charset=utf-8",
        };
        assert_eq!(response.headers()[CONTENT_TYPE], kind, "{file}");
        assert_eq!(response.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff", "{file}");
        assert!(response.headers().contains_key(CONTENT_SECURITY_POLICY), "{file}");
        let tag = response.headers()[ETAG].clone();
        // SVG's namespace is a URL that is never fetched (in the icon, and in the job graph's
        // `createElementNS`).
        let body = response.text().await.expect("body");
        let body = body
            .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
            .replace("const NS = 'http://www.w3.org/2000/svg';", "");
        for foreign in ["http://", "https://", "url(", "@import"] {
            assert!(!body.contains(foreign), "{file} mentions {foreign}");
        }
        let again = app
            .http
            .get(app.url(&format!("/ui/{file}")))
            .header(IF_NONE_MATCH, tag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status(), 304, "{file}");
    }
    app.stop().await;
}

/// A failure when asked for, red, bold green, 256 and true colours, markup that must stay text, an
/// artifact, a pause long enough to be seen running, and a second job after the first with the
/// trigger's parameter and more lines than its log box shows.
const PIPELINE: &str = r#"
- id: compile
  script:
    - test "$GREETING" != boom
    - printf 'plain then \033[31mred\033[0m and \033[1;32mgreen bold\033[0m, \033[38;5;208morange\033[0m, \033[38;2;10;200;30mtrue green\033[0m\n'
    - echo '<script>window.pwned = 1</script><img src=x onerror=window.pwned=2><b>not bold</b> &amp;'
    - mkdir -p out && echo hello > out/hello.txt
    - sleep 3
  save-artifacts: [{id: dist, path: out}]
- id: test
  dependencies: [compile]
  script:
    - echo "greeting=$GREETING"
    - seq 1 300
"#;

#[sqlx::test(migrations = "../migrations")]
async fn a_browser_signs_in_triggers_a_build_and_follows_it_live_without_other_hosts(pool: PgPool) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with("build.yaml", PIPELINE);
    let server = Server::start(&pool, dir.path()).await;
    let (org, _) = server
        .org_with_repo("web-ui", &format!("file://{}", repo.path().display()))
        .await;
    let viewer = server
        .gql(
            "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { token } }",
            json!({ "input": { "name": "viewer", "orgId": org, "role": "viewer" } }),
        )
        .await;
    let viewer = viewer["data"]["createApiToken"]["token"]
        .as_str()
        .expect("viewer token");

    let outcome = browse(&server.base, viewer).await;

    // Nothing left this machine: every request and WebSocket of the page went to the server.
    let origin = server.base.trim_end_matches('/');
    assert_eq!(outcome["foreign"], json!([]), "{outcome}");
    let requests = outcome["requests"].as_array().expect("requests");
    assert!(requests.len() >= 9, "{outcome}");
    assert!(
        requests
            .iter()
            .all(|r| r.as_str().unwrap_or("").starts_with(&format!("{origin}/"))),
        "{outcome}"
    );
    let sockets = outcome["websockets"].as_array().expect("websockets");
    let ws = format!("{}/graphql", origin.replacen("http://", "ws://", 1));
    assert!(
        !sockets.is_empty() && sockets.iter().all(|s| *s == ws.as_str()),
        "{outcome}"
    );
    assert!(
        outcome["csp"].as_str().unwrap_or("").starts_with("default-src 'self'"),
        "{outcome}"
    );
    assert_eq!(outcome["problems"], json!([]), "{outcome}");

    // A wrong token shows the API's code; the right one signs in, kept for the tab only.
    assert_eq!(outcome["wrongToken"]["code"], "UNAUTHENTICATED", "{outcome}");
    assert!(
        outcome["wrongToken"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("UNAUTHENTICATED"),
        "{outcome}"
    );
    assert_eq!(outcome["storedToken"], ADMIN, "{outcome}");
    assert_eq!(outcome["tokenInUrls"], false, "{outcome}");

    // The build triggered from the repo page went through its states on the page, no reload.
    let seen: Vec<&str> = outcome["seen"]
        .as_array()
        .expect("seen")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let order = ["QUEUED", "RUNNING", "SUCCEEDED"].map(|s| seen.iter().position(|x| *x == s));
    assert!(
        order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]),
        "{outcome}"
    );
    assert_eq!(outcome["reloaded"], false, "{outcome}");
    assert_eq!(outcome["focusKept"], true, "{outcome}");
    assert_eq!(outcome["orgLatest"], "SUCCEEDED", "{outcome}");
    // Owners' sections: the repo's webhooks and schedules, the org's members, tokens and audit log.
    assert_eq!(
        outcome["repoOwner"],
        json!(["No webhooks.", "No schedules."]),
        "{outcome}"
    );
    assert_eq!(outcome["orgOwner"]["members"], "No members.", "{outcome}");
    assert_eq!(outcome["orgOwner"]["tokens"], json!(["viewer viewer"]), "{outcome}");
    // Made from the owners' sections: a webhook (URL and secret shown once, then the URL only),
    // an org token (shown once, working, then revoked), a member (added, role changed, removed).
    let webhook = &outcome["webhook"];
    let url = webhook["url"].as_str().unwrap_or("");
    assert!(url.starts_with(&format!("{origin}/webhooks/github/")), "{outcome}");
    assert_eq!(webhook["listed"], json!([url]), "{outcome}");
    assert!(webhook["secretLength"].as_u64().is_some_and(|n| n >= 16), "{outcome}");
    assert_eq!(
        (&webhook["secretStillShown"], &webhook["secretStored"]),
        (&json!(false), &json!(false)),
        "{outcome}"
    );
    let made = &outcome["madeToken"];
    assert_eq!(made["prefix"], "mci_", "{outcome}");
    assert_eq!(made["works"], json!(["web-ui"]), "{outcome}");
    assert_eq!(
        made["listed"],
        json!(["viewer viewer", "made-in-ui viewer"]),
        "{outcome}"
    );
    assert_eq!(made["stored"], false, "{outcome}");
    assert_eq!(made["afterRevoke"], json!(["viewer viewer"]), "{outcome}");
    assert_eq!(made["refused"], true, "{outcome}");
    assert_eq!(
        outcome["member"],
        json!({
            "added": [{ "name": "Uma", "role": "viewer" }],
            "changed": [{ "name": "Uma", "role": "member" }],
            "removed": []
        }),
        "{outcome}"
    );
    let audit: Vec<&str> = outcome["orgOwner"]["audit"]
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for made in ["OrgCreated", "RepoAdded", "TokenCreated", "BuildFinished"] {
        assert!(audit.contains(&made), "{made}: {outcome}");
    }

    // The build page: both jobs succeeded, the dependency is named, the logs arrived with colour.
    assert_eq!(outcome["build"]["status"], "SUCCEEDED", "{outcome}");
    assert_eq!(
        outcome["build"]["jobs"],
        json!(["SUCCEEDED compile", "SUCCEEDED test"]),
        "{outcome}"
    );
    assert_eq!(outcome["build"]["dependency"], "compile", "{outcome}");
    // The job graph: a node per job with its status, the dependency as an edge, linked to the job.
    assert_eq!(
        outcome["build"]["graph"],
        json!({
            "nodes": ["SUCCEEDED compile", "SUCCEEDED test"],
            "edges": ["compile -> test"],
            "leftToRight": true
        }),
        "{outcome}"
    );
    assert_eq!(outcome["build"]["graphLink"], "test", "{outcome}");
    // A line's time: the API's timestamp in the number's title and the column's datetime, and
    // shown as a time of day to the millisecond once asked for.
    let times = &outcome["build"]["times"];
    let stamp = times["title"].as_str().unwrap_or("");
    assert!(stamp.starts_with("20") && stamp.contains('T'), "{outcome}");
    assert_eq!(times["datetime"], times["title"], "{outcome}");
    let shown = times["shown"].as_str().unwrap_or("");
    assert!(
        shown.len() == 12 && shown.chars().filter(|c| *c == ':').count() == 2 && shown.contains('.'),
        "{outcome}"
    );
    // Time travel: at the event that started compile the build was RUNNING (test not queued
    // yet, no Retry offered); at its first event QUEUED with no jobs; "Now" brings it back.
    let travel = &outcome["travel"];
    assert!(travel["events"].as_u64().is_some_and(|n| n >= 9), "{outcome}");
    assert_eq!(
        (
            &travel["running"]["build"],
            &travel["running"]["compile"],
            &travel["running"]["retry"]
        ),
        (&json!("RUNNING"), &json!("RUNNING"), &json!(false)),
        "{outcome}"
    );
    assert!(
        travel["running"]["at"]
            .as_str()
            .is_some_and(|t| t.contains("JobStarted compile")),
        "{outcome}"
    );
    // Times are shown as times (a `<time>` element's text), in the slider's label, the list and
    // the heading; and only the past has an "as of".
    for place in ["at", "asOf", "listed"] {
        let text = travel["running"][place].as_str().unwrap_or("");
        assert!(
            text.contains(char::is_numeric) && !text.contains("[object"),
            "{place}: {outcome}"
        );
    }
    assert_eq!(travel["now"]["asOf"], Value::Null, "{outcome}");
    assert_eq!(
        (&travel["queued"]["build"], &travel["queued"]["compile"]),
        (&json!("QUEUED"), &Value::Null),
        "{outcome}"
    );
    assert!(
        travel["queued"]["at"].as_str().is_some_and(|t| t.starts_with("1 of ")),
        "{outcome}"
    );
    assert_eq!(
        (&travel["now"]["build"], &travel["now"]["test"], &travel["now"]["retry"]),
        (&json!("SUCCEEDED"), &json!("SUCCEEDED"), &json!(true)),
        "{outcome}"
    );
    assert_eq!(
        outcome["build"]["red"],
        json!({ "class": "fg-1", "text": "red" }),
        "{outcome}"
    );
    assert_eq!(
        outcome["build"]["green"],
        json!({ "class": "fg-2 bold", "text": "green bold" }),
        "{outcome}"
    );
    // 256-colour 208 (the cube's 5, 2, 0) and true colour, with the page's policy in force.
    assert_eq!(
        outcome["build"]["rgb"],
        json!(["rgb(255, 135, 0)", "rgb(10, 200, 30)"]),
        "{outcome}"
    );
    assert_eq!(outcome["build"]["greeting"], "greeting=hello", "{outcome}");
    // At the end of the test job's 301 lines only those in view (and a few around) were drawn;
    // scrolling up by hand stops following the end.
    let drawn = outcome["build"]["drawnAtTail"].as_u64().unwrap_or(0);
    assert!((20..=90).contains(&drawn), "{drawn}: {outcome}");
    assert_eq!(outcome["build"]["followAfterScroll"], false, "{outcome}");
    // Markup in a log is text: no element made of it, nothing of it ran.
    assert_eq!(
        outcome["build"]["markup"],
        "<script>window.pwned = 1</script><img src=x onerror=window.pwned=2><b>not bold</b> &amp;",
        "{outcome}"
    );
    assert_eq!(outcome["build"]["elementsInLogText"], 0, "{outcome}");
    assert_eq!(outcome["build"]["pwned"], Value::Null, "{outcome}");
    // A log follows its end; the raw log downloads whole, as the API's plain text.
    assert_eq!(outcome["build"]["atTail"], true, "{outcome}");
    let tail: String = std::iter::once("greeting=hello".to_owned())
        .chain((1..=300).map(|n| n.to_string()))
        .map(|line| line + "\n")
        .collect();
    assert_eq!(
        outcome["build"]["download"],
        json!({ "name": "test.log", "text": tail }),
        "{outcome}"
    );
    // The artifact downloads by its link, as the tar.gz the job saved.
    assert_eq!(
        outcome["build"]["artifact"],
        json!({ "name": "dist.tgz", "gzip": true, "job": "compile" }),
        "{outcome}"
    );
    // A line number is a link that, opened in a new page, shows that line.
    assert_eq!(outcome["build"]["linkedLine"], 2, "{outcome}");

    // Readable at 390 px: nothing wider than the screen.
    assert_eq!(
        outcome["narrow"],
        json!({ "width": 390, "build": 390, "repo": 390 }),
        "{outcome}"
    );

    // Retry opens the new build, which Cancel ends.
    // The retry's output appeared, in colour, while its first job was still running.
    assert_eq!(outcome["liveWhileRunning"], "red", "{outcome}");
    // How late live lines reached the page (for BENCHMARKS.md; `-- --nocapture` shows it).
    println!("live lines: {}", outcome["liveLateness"]);
    assert_eq!(outcome["retried"]["retryOf"], true, "{outcome}");
    assert_eq!(outcome["retried"]["status"], "CANCELED", "{outcome}");

    // A failed job's log is one click from the repo page.
    assert_eq!(
        outcome["failed"],
        json!({ "link": "compile failed", "job": "FAILED", "skipped": "SKIPPED" }),
        "{outcome}"
    );

    // Signing out forgets the token and shows the form again.
    assert_eq!(
        outcome["signedOut"],
        json!({ "token": null, "form": true }),
        "{outcome}"
    );

    // A viewer reads the build (its graph too) and is offered no retry, cancel or trigger.
    assert_eq!(
        outcome["viewer"],
        json!({
            "status": "SUCCEEDED",
            "retry": false,
            "cancel": false,
            "graphNodes": 2,
            "trigger": false,
            "ownerSections": 0
        }),
        "{outcome}"
    );
    // A member lowered to viewer while the page is open: the API's refusal is shown with its code.
    assert_eq!(outcome["demoted"]["code"], "FORBIDDEN", "{outcome}");
}

/// Runs `web/tests/ui.mjs` (Node.js, playwright-core, Debian's chromium) against the server, as
/// the admin and then as `viewer`.
async fn browse(base: &str, viewer: &str) -> Value {
    let profile = tempfile::tempdir().expect("profile");
    let args = [
        OsStr::new(base),
        OsStr::new(ADMIN),
        profile.path().as_os_str(),
        OsStr::new(viewer),
    ];
    monkeyci_tests::run_browser_script("ui.mjs", &args).await
}

/// Lines of the large log, and the word on one of them that the browser looks for.
const BIG_LOG_LINES: i64 = 1_000_000;
const NEEDLE_LINE: i64 = 777_777;
const NEEDLE: &str = "needle-in-the-log";
/// Builds of a repo, more than the 50 of the UI's first page.
const MANY_BUILDS: usize = 55;

#[sqlx::test(migrations = "../migrations")]
async fn a_million_line_log_opens_at_its_end_goes_to_any_line_finds_a_word_and_downloads_and_long_lists_page(
    pool: PgPool,
) {
    let dir = tempfile::tempdir().expect("dir");
    let repo = repo_with("build.yaml", "- id: big\n  script: ['echo start']\n");
    let server = Server::start(&pool, dir.path()).await;
    let (org, repo_id) = server
        .org_with_repo("big-log", &format!("file://{}", repo.path().display()))
        .await;
    let build = server.build(&repo_id).await;
    assert_eq!(build["status"], "SUCCEEDED", "{build}");
    let build_id = build["id"].as_str().expect("id").to_owned();
    // The rest of the million lines (~100 bytes each, every 1,000th in colour) stored as the
    // runner stores a job's output, after the job's own first line.
    sqlx::query(
        "INSERT INTO job_log_lines (build_id, job_id, seq, at, stream, text) \
         SELECT b.id, 'big', g, now() + g * interval '1 microsecond', 'stdout', \
                CASE WHEN g = $2 THEN 'here is the ' || $3 || ' at last' \
                     WHEN g % 1000 = 0 THEN format(E'\\x1b[32mline %s\\x1b[0m of the build, in green', g) \
                     ELSE format('line %s: %s', g, repeat('output ', 12)) END \
         FROM builds b, generate_series(2, $1) g",
    )
    .bind(BIG_LOG_LINES)
    .bind(NEEDLE_LINE)
    .bind(NEEDLE)
    .execute(&pool)
    .await
    .expect("insert the lines");
    let bytes: i64 =
        sqlx::query_scalar("SELECT sum(octet_length(text) + 1)::bigint FROM job_log_lines WHERE job_id = 'big'")
            .fetch_one(&pool)
            .await
            .expect("size");

    // A repo with more builds than one page of the UI's list (50): builds of a repo that cannot
    // be cloned end at once.
    let many = server
        .id(
            "createRepo",
            "CreateRepoInput",
            json!({ "orgId": org, "name": "many", "gitUrl": "file:///nonexistent/repo" }),
        )
        .await;
    let mut many_builds = Vec::new();
    for _ in 0..MANY_BUILDS {
        many_builds.push(server.trigger(&many, json!([])).await);
    }
    for build in &many_builds {
        server
            .wait_until(build, Duration::from_secs(60), |b| b["status"] == "ERRORED")
            .await;
    }

    let profile = tempfile::tempdir().expect("profile");
    let args = [
        server.base.clone(),
        ADMIN.to_owned(),
        profile.path().display().to_string(),
        build_id,
        BIG_LOG_LINES.to_string(),
        NEEDLE_LINE.to_string(),
        NEEDLE.to_owned(),
        many,
    ];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let outcome = monkeyci_tests::run_browser_script("biglog.mjs", &args).await;
    // The figures for BENCHMARKS.md (`-- --nocapture` shows them).
    println!("big log: {outcome}");
    assert_eq!(outcome["foreign"], json!([]), "{outcome}");
    assert_eq!(outcome["problems"], json!([]), "{outcome}");

    // It opened at the end, following it, with only the lines in view on the page.
    let tail = &outcome["tail"];
    assert_eq!(tail["last"], BIG_LOG_LINES, "{outcome}");
    assert_eq!(
        tail["text"],
        format!("line {BIG_LOG_LINES} of the build, in green"),
        "{outcome}"
    );
    assert_eq!(
        (&tail["atBottom"], &tail["following"]),
        (&json!(true), &json!(true)),
        "{outcome}"
    );
    assert!(tail["rows"].as_u64().is_some_and(|n| n <= 70), "{outcome}");
    // A linked line in the middle, a quarter of the way down by scrolling, a word found.
    assert_eq!(
        outcome["linked"],
        format!("line {} of the build, in green", BIG_LOG_LINES / 2),
        "{outcome}"
    );
    let first = outcome["scrolled"]["first"].as_i64().unwrap_or(0);
    assert!((first - BIG_LOG_LINES / 4).abs() < BIG_LOG_LINES / 100, "{outcome}");
    assert_eq!(
        outcome["found"]["text"],
        format!("here is the {NEEDLE} at last"),
        "{outcome}"
    );
    assert_eq!(outcome["found"]["said"], format!("Line {NEEDLE_LINE}"), "{outcome}");
    // The page held a bounded window of the log whatever it did.
    let memory = &outcome["memory"];
    assert!(memory["logRows"].as_u64().is_some_and(|n| n <= 70), "{outcome}");
    // The issue's budget for the tab: its renderer process under 300 MB.
    assert!(
        memory["rendererBytes"].as_u64().is_some_and(|b| b > 0 && b < 300 << 20),
        "{outcome}"
    );
    // The download is the whole log.
    assert_eq!(
        outcome["download"],
        json!({ "name": "big.log", "bytes": bytes, "failure": null }),
        "{outcome}"
    );
    // Long lists: the first 50 builds, the rest on "Show more"; a build that ran and ended while
    // the page's connection was down is shown, as it ended, once it is back.
    assert_eq!(
        outcome["lists"],
        json!({
            "firstPage": 50,
            "all": MANY_BUILDS,
            "moreHidden": true,
            "shownWhileDown": false,
            "afterReconnect": "ERRORED"
        }),
        "{outcome}"
    );
    server.stop().await;
}
