//! Cron schedules: every tick of a schedule triggers one build of its repo's main branch.
//!
//! Each server runs a [`ScheduleTicker`]. At each look it takes, per schedule, only the latest
//! tick at or before now — a server that was down fires the one tick it missed last, never the
//! backlog before it — and ticks from before the schedule's cron was set are never fired. The
//! build is triggered as the actor `schedule:<id>` with the tick's time as idempotency key, so
//! when several servers fire the same tick, one build is queued and all of them get its id.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use monkeyci_commands::{CommandContext, CommandError, CommandHandler, TriggerBuild};
use monkeyci_domain::build::TriggerSource;
use monkeyci_domain::cron::Cron;
use monkeyci_domain::{BuildId, RepoId};
use monkeyci_projections::{queries, ProjectionError, ReadModels};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A tick that was fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule_id: Uuid,
    pub tick: DateTime<Utc>,
    pub build_id: BuildId,
}

/// Fires the ticks of every schedule.
#[derive(Debug, Clone)]
pub struct ScheduleTicker {
    read: ReadModels,
    commands: CommandHandler,
}

impl ScheduleTicker {
    /// A ticker reading schedules from `pool` and triggering builds through `commands`.
    pub fn new(pool: PgPool, commands: CommandHandler) -> Self {
        Self {
            read: ReadModels::new(pool),
            commands,
        }
    }

    /// Fires, for every schedule, its latest tick at or before `now` (if that is not older than the
    /// schedule's cron expression). A tick already fired, by this server or another, returns the
    /// build it queued then and queues nothing.
    pub async fn fire(&self, now: DateTime<Utc>) -> Result<Vec<Fired>, ProjectionError> {
        let mut fired = Vec::new();
        for schedule in queries::active_schedules(&self.read).await? {
            let cron = match Cron::parse(&schedule.cron) {
                Ok(cron) => cron,
                Err(error) => {
                    tracing::warn!(schedule = %schedule.id, %error, "a stored cron expression does not parse");
                    continue;
                }
            };
            let Some(tick) = cron.latest_at_or_before(now) else {
                continue;
            };
            if tick < schedule.since {
                continue;
            }
            let mut ctx = CommandContext::new(format!("schedule:{}", schedule.id));
            ctx.idempotency_key = Some(format!("tick:{}", tick.to_rfc3339_opts(SecondsFormat::Secs, true)));
            let input = TriggerBuild {
                repo_id: RepoId::from_uuid(schedule.repo_id),
                source: TriggerSource::Schedule,
                branch: None,
                tag: None,
                commit: None,
                params: Default::default(),
                push: None,
            };
            match self.commands.trigger_build(&ctx, input).await {
                Ok(build_id) => fired.push(Fired {
                    schedule_id: schedule.id,
                    tick,
                    build_id,
                }),
                // An archived repo or a deleted org: nothing to build, every minute again.
                Err(CommandError::Domain(error)) => {
                    tracing::debug!(schedule = %schedule.id, %error, "the schedule's build was refused")
                }
                Err(error) => tracing::warn!(schedule = %schedule.id, %error, "could not fire a schedule"),
            }
        }
        Ok(fired)
    }

    /// Looks at the schedules just after every full minute until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = Utc::now();
            match self.fire(now).await {
                Ok(fired) => {
                    for f in fired.iter().filter(|f| f.tick.timestamp() == now.timestamp() / 60 * 60) {
                        tracing::info!(schedule = %f.schedule_id, build = %f.build_id, tick = %f.tick, "schedule fired");
                    }
                }
                Err(error) => tracing::warn!(%error, "could not read the schedules"),
            }
            // One second into the next minute: the tick of that minute is then due.
            let into_minute = Duration::from_secs(u64::from(Utc::now().second()));
            let wait = Duration::from_secs(61).saturating_sub(into_minute);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
