//! What every executor does with the process it starts: hand the job its script and
//! environment on stdin, stream its output line by line, and wait for its end, its deadline or
//! a cancel.

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecutionError, LogLimits, LogLine, LogStream};

/// How the waiting ended.
pub(crate) enum Ended {
    Exited(ExitStatus),
    TimedOut,
    Canceled,
}

/// A started job process whose output is being forwarded.
pub(crate) struct Running {
    pub child: Child,
    readers: Vec<JoinHandle<()>>,
    last_stderr: Arc<Mutex<String>>,
}

impl Running {
    /// Waits until the process exits, `timeout` passes or `cancel` fires.
    pub async fn wait(
        &mut self,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<Ended, ExecutionError> {
        let deadline = async {
            match timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = self.child.wait() => Ok(Ended::Exited(status.map_err(ExecutionError::Wait)?)),
            () = deadline => Ok(Ended::TimedOut),
            () = cancel.cancelled() => Ok(Ended::Canceled),
        }
    }

    /// Waits until every line of output has been forwarded (the pipes close when the last
    /// process holding them has ended).
    pub async fn drain(self) {
        for reader in self.readers {
            let _ = reader.await;
        }
    }

    /// The last line the process wrote to stderr.
    pub fn last_stderr(&self) -> String {
        self.last_stderr.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Starts `command` with its output piped to `logs` line by line, within `limits`, and, if
/// given, `stdin` written to its standard input (which is then closed); without it, standard
/// input is empty.
pub(crate) fn start(
    command: &mut Command,
    program: &str,
    stdin: Option<Vec<u8>>,
    logs: &mpsc::Sender<LogLine>,
    limits: LogLimits,
) -> Result<Running, ExecutionError> {
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ExecutionError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A job that exits before reading everything closes the pipe: that is its business.
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let last_stderr = Arc::new(Mutex::new(String::new()));
    let budget = Arc::new(Budget::new(limits));
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        let sink = Sink::new(LogStream::Stdout, logs.clone(), budget.clone(), None);
        readers.push(tokio::spawn(forward(out, sink)));
    }
    if let Some(err) = child.stderr.take() {
        let sink = Sink::new(LogStream::Stderr, logs.clone(), budget, Some(last_stderr.clone()));
        readers.push(tokio::spawn(forward(err, sink)));
    }
    Ok(Running {
        child,
        readers,
        last_stderr,
    })
}

/// What is left of a job's log size, shared by its stdout and stderr.
struct Budget {
    limits: LogLimits,
    left: AtomicU64,
    exhausted: AtomicBool,
}

impl Budget {
    fn new(limits: LogLimits) -> Self {
        Self {
            limits,
            left: AtomicU64::new(limits.max_log_bytes),
            exhausted: AtomicBool::new(false),
        }
    }

    /// Takes `bytes` from the budget; false when they do not fit (nothing is taken then).
    fn take(&self, bytes: u64) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(bytes))
            .is_ok()
    }
}

/// Where the lines of one output go.
struct Sink {
    stream: LogStream,
    logs: mpsc::Sender<LogLine>,
    budget: Arc<Budget>,
    last: Option<Arc<Mutex<String>>>,
}

impl Sink {
    fn new(
        stream: LogStream,
        logs: mpsc::Sender<LogLine>,
        budget: Arc<Budget>,
        last: Option<Arc<Mutex<String>>>,
    ) -> Self {
        Self {
            stream,
            logs,
            budget,
            last,
        }
    }

    /// Sends one line (without its `\n`), noting a cut; false once nobody listens.
    async fn line(&self, raw: &[u8], cut_from: Option<u64>) -> bool {
        // Once one line did not fit, no later one is kept, however short: the note says so.
        if self.budget.exhausted.load(Ordering::Relaxed) && self.last.is_none() {
            return true;
        }
        let mut text = String::from_utf8_lossy(raw.strip_suffix(b"\r").unwrap_or(raw)).into_owned();
        if let Some(length) = cut_from {
            text.push_str(&format!(
                " [MonkeyCI: line cut at {} of its {length} bytes]",
                self.budget.limits.max_line_bytes
            ));
        }
        if let Some(last) = &self.last {
            text.clone_into(&mut last.lock().unwrap_or_else(PoisonError::into_inner));
        }
        if self.budget.exhausted.load(Ordering::Relaxed) {
            return true;
        }
        if !self.budget.take(text.len() as u64 + 1) {
            if self.budget.exhausted.swap(true, Ordering::Relaxed) {
                return true;
            }
            let note = format!(
                "the job's output passed the limit of {} bytes of log; the rest of it is dropped",
                self.budget.limits.max_log_bytes
            );
            return self.logs.send(system_line(note)).await.is_ok();
        }
        let line = LogLine {
            at: Utc::now(),
            stream: self.stream,
            text,
        };
        self.logs.send(line).await.is_ok()
    }
}

/// Reads `output` to its end and sends it line by line. Memory stays bounded by the line limit:
/// a longer line is kept up to the limit, and the rest of it only counted.
async fn forward(output: impl AsyncRead + Unpin, sink: Sink) {
    let max_line = sink.budget.limits.max_line_bytes;
    let mut reader = BufReader::with_capacity(64 * 1024, output);
    let mut line = Vec::new();
    // The length of the current line when it is longer than the limit.
    let mut seen: u64 = 0;
    while let Ok(buffer) = reader.fill_buf().await {
        if buffer.is_empty() {
            break;
        }
        if sink.last.is_none() && sink.budget.exhausted.load(Ordering::Relaxed) {
            // Nothing more of this output is kept: read it only so that the job does not block.
            let length = buffer.len();
            reader.consume(length);
            continue;
        }
        let newline = buffer.iter().position(|&b| b == b'\n');
        let chunk = &buffer[..newline.unwrap_or(buffer.len())];
        let room = max_line.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        seen += chunk.len() as u64;
        let consumed = chunk.len() + usize::from(newline.is_some());
        reader.consume(consumed);
        if newline.is_some() {
            let cut = (seen > max_line as u64).then_some(seen);
            if !sink.line(&line, cut).await {
                return;
            }
            line.clear();
            seen = 0;
        }
    }
    if seen > 0 {
        let cut = (seen > max_line as u64).then_some(seen);
        sink.line(&line, cut).await;
    }
}

/// A line of MonkeyCI's own in the job's log.
pub(crate) fn system_line(text: impl Into<String>) -> LogLine {
    LogLine {
        at: Utc::now(),
        stream: LogStream::System,
        text: text.into(),
    }
}

/// The exit status [`container_launcher`] gives a job whose container ran out of memory.
pub(crate) const OUT_OF_MEMORY_EXIT: i32 = 197;

/// What a confined host job is given on stdin: one command that adds `env` to the environment
/// the shell has and runs the script with `sh -e`, its stdin empty.
///
/// The environment and the script travel on stdin, not as arguments or in the environment of
/// the program that sets up the confinement: arguments show in every host user's `ps`, and
/// that program (bwrap, podman) would itself obey variables such as `LD_PRELOAD` or
/// `CONTAINERS_CONF` that a pipeline could set.
pub fn launcher(env: &BTreeMap<String, String>, script: &[String]) -> Vec<u8> {
    let mut text = String::from("exec ");
    push_job_command(&mut text, env, script);
    text.push('\n');
    text.into_bytes()
}

/// What a container job is given on stdin: the job as [`launcher`] runs it, then, if it
/// failed, a look at the container's memory cgroup (v2 `memory.events`, v1
/// `memory.oom_control`): if the kernel killed a process of it for lack of memory, the
/// container exits with [`OUT_OF_MEMORY_EXIT`]. podman cannot tell on every host (cgroup v1
/// hosts forget the cgroup when the container ends), the container itself always can. A job
/// could fake the status, but only to fail with another message.
///
/// The job runs in a subshell that first raises its own `oom_score_adj` to the maximum (raising
/// needs no privilege; its children inherit it): otherwise the kernel's out-of-memory killer may
/// pick the launcher, the container's first process, and nobody is left to say why the job
/// died (measured: 4 of 30 runs of a 32 MiB job on a cgroup-v1 host ended that way).
pub fn container_launcher(env: &BTreeMap<String, String>, script: &[String]) -> Vec<u8> {
    // One compound command: the shell reads all of stdin before it runs any of it.
    let mut text = String::from("{\n( { echo 1000 > /proc/self/oom_score_adj; } 2>/dev/null\nexec ");
    push_job_command(&mut text, env, script);
    text.push_str(&format!(
        " )\nstatus=$?\n\
         if [ \"$status\" -ne 0 ]; then\n\
         for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do\n\
         [ -r \"$f\" ] || continue\n\
         while read -r key value; do\n\
         if [ \"$key\" = oom_kill ] && [ \"$value\" -gt 0 ]; then exit {OUT_OF_MEMORY_EXIT}; fi\n\
         done < \"$f\"\n\
         done\n\
         fi\n\
         exit \"$status\"\n\
         }}\n"
    ));
    text.into_bytes()
}

/// `env 'NAME=value'… sh -e -c '<script>' < /dev/null`.
fn push_job_command(out: &mut String, env: &BTreeMap<String, String>, script: &[String]) {
    out.push_str("env");
    for (name, value) in env {
        out.push(' ');
        quote_into(out, &format!("{name}={value}"));
    }
    out.push_str(" sh -e -c ");
    quote_into(out, &script.join("\n"));
    out.push_str(" < /dev/null");
}

/// Appends `text` as one single-quoted shell word.
fn quote_into(out: &mut String, text: &str) {
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            // The environment cannot hold NUL; dropping it keeps the shell line readable.
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards `output` through a sink with `limits`; the texts sent.
    async fn forwarded(output: &[u8], stream: LogStream, limits: LogLimits) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(64);
        let last = (stream == LogStream::Stderr).then(|| Arc::new(Mutex::new(String::new())));
        forward(output, Sink::new(stream, tx, Arc::new(Budget::new(limits)), last)).await;
        let mut texts = Vec::new();
        while let Ok(line) = rx.try_recv() {
            texts.push(line.text);
        }
        texts
    }

    #[tokio::test]
    async fn after_the_log_limit_no_line_is_kept_however_short() {
        let limits = LogLimits {
            max_line_bytes: 10,
            max_log_bytes: 12,
        };
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let texts = forwarded(b"abc\n0123456789xyz\nok\n", stream, limits).await;
            assert_eq!(
                texts,
                [
                    "abc".to_owned(),
                    "the job's output passed the limit of 12 bytes of log; the rest of it is dropped".to_owned(),
                ],
                "{stream:?}"
            );
        }
        let texts = forwarded(b"0123456789xyz\r\nend", LogStream::Stdout, LogLimits::default()).await;
        assert_eq!(
            texts,
            ["0123456789xyz".to_owned(), "end".to_owned()],
            "a short line keeps all of it; the last line needs no newline"
        );
        let texts = forwarded(
            b"0123456789xyz\n",
            LogStream::Stdout,
            LogLimits {
                max_log_bytes: 1024,
                ..limits
            },
        )
        .await;
        assert_eq!(
            texts,
            ["0123456789 [MonkeyCI: line cut at 10 of its 13 bytes]".to_owned()]
        );
    }

    #[test]
    fn the_launcher_quotes_every_value_as_one_word() {
        let env = BTreeMap::from([("A".to_owned(), "it's $(id) `x`".to_owned())]);
        let line = launcher(&env, &["echo \"$A\"".to_owned(), "true".to_owned()]);
        assert_eq!(
            String::from_utf8(line).expect("utf8"),
            "exec env 'A=it'\\''s $(id) `x`' sh -e -c 'echo \"$A\"\ntrue' < /dev/null\n"
        );
    }
}
