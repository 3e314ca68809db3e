//! Prometheus metrics, kept in process and rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use monkeyci_projections::ProjectionStatus;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    commands: Mutex<BTreeMap<(String, &'static str), u64>>,
    events: AtomicU64,
    open_subscriptions: AtomicI64,
    http: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain counters behind: still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Counts one command by name and outcome (`ok`, or the error code).
    pub fn command(&self, name: &str, outcome: &'static str) {
        *lock(&self.commands).entry((name.to_owned(), outcome)).or_default() += 1;
    }

    /// Counts events that reached this process's live feed.
    pub fn events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }

    /// A subscription opened (+1) or closed (-1).
    pub fn subscriptions(&self, delta: i64) {
        self.open_subscriptions.fetch_add(delta, Ordering::Relaxed);
    }

    /// The number of open subscriptions.
    pub fn open_subscriptions(&self) -> i64 {
        self.open_subscriptions.load(Ordering::Relaxed)
    }

    /// Records one HTTP request.
    pub fn http(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut http = lock(&self.http);
        let h = http.entry((method.to_owned(), path.to_owned(), status)).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    /// The metrics in Prometheus text format, with projection lag from `projections` and how
    /// long the oldest transaction appending to the log has been open (`log_held_back`).
    pub fn render(&self, projections: &[ProjectionStatus], log_held_back: std::time::Duration) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP monkeyci_commands_total Commands handled, by command and outcome."
        );
        let _ = writeln!(out, "# TYPE monkeyci_commands_total counter");
        for ((name, outcome), n) in lock(&self.commands).iter() {
            let _ = writeln!(
                out,
                "monkeyci_commands_total{{command=\"{name}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP monkeyci_events_total Events appended to the log, as seen by this process."
        );
        let _ = writeln!(out, "# TYPE monkeyci_events_total counter");
        let _ = writeln!(out, "monkeyci_events_total {}", self.events.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP monkeyci_projection_lag_events Committed events a projection has not applied yet."
        );
        let _ = writeln!(out, "# TYPE monkeyci_projection_lag_events gauge");
        for p in projections {
            let _ = writeln!(
                out,
                "monkeyci_projection_lag_events{{projection=\"{}\"}} {}",
                p.name, p.lag_events
            );
        }
        let _ = writeln!(
            out,
            "# HELP monkeyci_log_held_back_seconds How long the oldest transaction appending to the log has \
             been open (0: none); readers of the log wait for it."
        );
        let _ = writeln!(out, "# TYPE monkeyci_log_held_back_seconds gauge");
        let _ = writeln!(out, "monkeyci_log_held_back_seconds {}", log_held_back.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP monkeyci_open_subscriptions GraphQL subscriptions open on this server."
        );
        let _ = writeln!(out, "# TYPE monkeyci_open_subscriptions gauge");
        let _ = writeln!(out, "monkeyci_open_subscriptions {}", self.open_subscriptions());
        let _ = writeln!(
            out,
            "# HELP monkeyci_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(out, "# TYPE monkeyci_http_request_duration_seconds histogram");
        for ((method, path, status), h) in lock(&self.http).iter() {
            let labels = format!("method=\"{method}\",path=\"{path}\",status=\"{status}\"");
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "monkeyci_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "monkeyci_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "monkeyci_http_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "monkeyci_http_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}
