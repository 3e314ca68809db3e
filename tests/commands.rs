//! Commands: decide on fresh state, append with the versions read, return only an id.

use std::collections::BTreeMap;

use monkeyci_commands::{
    AddRepo, CommandContext, CommandError, CommandHandler, CreateOrg, DeleteOrg, QueueJob, StartBuild, TriggerBuild,
};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::DomainError;
use monkeyci_eventstore::EventStore;
use monkeyci_tests::user;
use sqlx::PgPool;

fn handler(pool: &PgPool) -> CommandHandler {
    CommandHandler::new(EventStore::new(pool.clone()))
}

fn create(slug: &str) -> CreateOrg {
    CreateOrg {
        name: format!("Org {slug}"),
        slug: slug.into(),
    }
}

async fn events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_slug_can_be_held_by_one_org_only_even_when_created_at_once(pool: PgPool) {
    let commands = handler(&pool);
    let attempts = (0..12).map(|_| {
        let commands = commands.clone();
        async move { commands.create_org(&user(), create("acme")).await }
    });

    let results = futures::future::join_all(attempts).await;

    let created = results.iter().filter(|r| r.is_ok()).count();
    let taken = results
        .iter()
        .filter(|r| matches!(r, Err(CommandError::Domain(DomainError::SlugTaken { slug })) if slug == "acme"))
        .count();
    assert_eq!((created, taken), (1, 11), "{results:?}");
    // One OrgCreated and one SlugClaimed.
    assert_eq!(events(&pool).await, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_deleted_orgs_slug_can_be_taken_again(pool: PgPool) {
    let commands = handler(&pool);
    let first = commands.create_org(&user(), create("reuse")).await.expect("create");
    let refused = commands.create_org(&user(), create("reuse")).await;
    commands
        .delete_org(&user(), DeleteOrg { org_id: first })
        .await
        .expect("delete");

    let second = commands
        .create_org(&user(), create("reuse"))
        .await
        .expect("create again");

    assert!(matches!(
        refused,
        Err(CommandError::Domain(DomainError::SlugTaken { .. }))
    ));
    assert_ne!(first, second);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_idempotency_key_and_input_return_the_same_id_and_append_nothing(pool: PgPool) {
    let commands = handler(&pool);
    let ctx = user().with_idempotency_key("create-acme");

    let first = commands.create_org(&ctx, create("acme")).await.expect("first");
    let appended = events(&pool).await;
    let again = commands.create_org(&ctx, create("acme")).await.expect("again");
    let concurrent = futures::future::join_all((0..5).map(|_| commands.create_org(&ctx, create("acme")))).await;

    assert_eq!(first, again);
    assert!(
        concurrent.iter().all(|r| matches!(r, Ok(id) if *id == first)),
        "{concurrent:?}"
    );
    assert_eq!(events(&pool).await, appended);
}

#[sqlx::test(migrations = "../migrations")]
async fn racing_first_uses_of_one_idempotency_key_create_one_org(pool: PgPool) {
    let commands = handler(&pool);
    let ctx = user().with_idempotency_key("race");

    let results = futures::future::join_all((0..8).map(|_| commands.create_org(&ctx, create("racer")))).await;

    let ids: Vec<_> = results.iter().map(|r| r.as_ref().expect("same key, same id")).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(events(&pool).await, 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_same_idempotency_key_with_other_input_is_refused(pool: PgPool) {
    let commands = handler(&pool);
    let ctx = user().with_idempotency_key("k");
    commands.create_org(&ctx, create("one")).await.expect("first");
    let appended = events(&pool).await;

    let other_input = commands.create_org(&ctx, create("two")).await;
    let other_command = commands
        .delete_org(
            &ctx,
            DeleteOrg {
                org_id: "0190aaaa-0000-7000-8000-000000000000".parse().expect("uuid"),
            },
        )
        .await;
    let other_actor = commands
        .create_org(
            &CommandContext::new("user:other").with_idempotency_key("k"),
            create("two"),
        )
        .await;

    assert!(
        matches!(other_input, Err(CommandError::IdempotencyKeyReused { .. })),
        "{other_input:?}"
    );
    assert!(
        matches!(other_command, Err(CommandError::IdempotencyKeyReused { .. })),
        "{other_command:?}"
    );
    assert!(
        other_actor.is_ok(),
        "keys of different actors are independent: {other_actor:?}"
    );
    assert_eq!(events(&pool).await, appended + 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn invalid_input_and_unknown_ids_are_refused_without_appending(pool: PgPool) {
    let commands = handler(&pool);
    let org_id = commands.create_org(&user(), create("acme")).await.expect("org");
    let appended = events(&pool).await;
    let repo = |git_url: &str, branch: Option<&str>| AddRepo {
        org_id,
        name: "app".into(),
        git_url: git_url.into(),
        main_branch: branch.map(Into::into),
        labels: BTreeMap::new(),
    };

    let bad_slug = commands.create_org(&user(), create("Not A Slug")).await;
    let bad_url = commands.add_repo(&user(), repo("not a url", None)).await;
    let bad_branch = commands
        .add_repo(&user(), repo("https://git.example/app.git", Some("a..b")))
        .await;
    let unknown_org = commands
        .add_repo(
            &user(),
            AddRepo {
                org_id: "0190aaaa-0000-7000-8000-000000000000".parse().expect("uuid"),
                ..repo("https://git.example/app.git", None)
            },
        )
        .await;
    let bad_key = commands
        .create_org(&user().with_idempotency_key(""), create("other"))
        .await;

    for (what, result) in [("slug", bad_slug.map(|_| ())), ("key", bad_key.map(|_| ()))] {
        assert!(result.is_err(), "{what} accepted");
    }
    assert!(matches!(bad_url, Err(CommandError::Domain(DomainError::Invalid(ref e))) if e.field == "gitUrl"));
    assert!(matches!(bad_branch, Err(CommandError::Domain(DomainError::Invalid(ref e))) if e.field == "ref"));
    assert!(matches!(
        unknown_org,
        Err(CommandError::Domain(DomainError::NotFound { kind: "org", .. }))
    ));
    assert_eq!(events(&pool).await, appended);
}

#[sqlx::test(migrations = "../migrations")]
async fn concurrent_commands_on_one_build_are_decided_again_after_a_conflict(pool: PgPool) {
    let commands = handler(&pool);
    let org_id = commands.create_org(&user(), create("acme")).await.expect("org");
    let repo_id = commands
        .add_repo(
            &user(),
            AddRepo {
                org_id,
                name: "app".into(),
                git_url: "https://git.example/app.git".into(),
                main_branch: None,
                labels: BTreeMap::new(),
            },
        )
        .await
        .expect("repo");
    let build_id = commands
        .trigger_build(
            &user(),
            TriggerBuild {
                repo_id,
                source: TriggerSource::Api,
                branch: None,
                tag: None,
                commit: None,
                params: BTreeMap::new(),
                push: None,
            },
        )
        .await
        .expect("build");
    commands
        .start_build(
            &user(),
            StartBuild {
                build_id,
                runner: "r1".into(),
            },
        )
        .await
        .expect("start");

    let ctx = user();
    let queued = futures::future::join_all((0..6).map(|n| {
        commands.queue_job(
            &ctx,
            QueueJob {
                build_id,
                job_id: format!("job-{n}"),
                dependencies: vec![],
            },
        )
    }))
    .await;

    assert!(queued.iter().all(Result::is_ok), "{queued:?}");
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT stream_version FROM events WHERE stream_id = $1 ORDER BY stream_version")
            .bind(format!("build-{build_id}"))
            .fetch_all(&pool)
            .await
            .expect("versions");
    assert_eq!(versions, (1..=8).collect::<Vec<i64>>());
}
