//! Pipelines: the jobs a build runs, as written in a repo's `.monkeyci/build.yaml`, `build.yml`
//! or `build.json`, in MonkeyCI's format.
//!
//! The file is a list of jobs, a single job, or a map with a list of jobs under `jobs` and an
//! optional build-wide `timeout`:
//!
//! ```yaml
//! - id: test
//!   image: docker.io/rust:1.89
//!   script: ["cargo test"]
//!   caches: [{id: cargo, path: .cargo}]
//!   memory: 4
//!   cpus: 2
//! - id: publish
//!   dependencies: [test]
//!   script: ["./publish.sh"]
//!   conditions: {branches: [main, "release/*"]}
//!   timeout: 10m
//! ```
//!
//! A single job is a map with the job's keys at the top of the file (`id: test`, `image: …`).
//! A top-level map with `jobs` is the other form; there `timeout` is the build's, in a single
//! job the job's.
//!
//! Keys may be written in kebab-case (`work-dir`, `save-artifacts`, `restore-artifacts`,
//! `allow-failure`), snake_case (`work_dir`, …) or camelCase (`workDir`, …), in either format.
//! One key given twice, in any spellings, and unknown keys are refused.
//!
//! A job with an `image` may say what it needs:
//!
//! * `memory`: a number of GB (`2`, `0.5`; binary, so 2^30 bytes each) or a string with a
//!   unit of `k`, `m` or `g`, optionally followed by `b` or `ib`, in any case (`"512m"`,
//!   `"2GiB"`; all binary); from 6 MiB, podman's minimum, to 1 TiB;
//! * `cpus`: a number of CPUs, fractions allowed (`0.5`), at most 256;
//! * `size`: MonkeyCI's preset, a whole number from 1 to 16, each unit 1 CPU and 2 GB; an
//!   explicit `cpus` or `memory` wins over it;
//! * `arch`: the image's architecture, `amd64` (or `amd`, `x86_64`) or `arm64` (or `arm`,
//!   `aarch64`).
//!
//! The image itself must be an OCI reference (`[host[:port]/]path[:tag][@digest]`).
//! [`parse`] takes the file's name and contents; it reads nothing itself.

mod duration;
mod glob;
mod image;
mod raw;
mod resources;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use thiserror::Error;

use crate::build::{Trigger, TriggerSource};
use crate::error::ValidationError;
use crate::values::{GitRef, JobId};

pub use duration::{parse_duration, MAX_TIMEOUT};
pub use glob::Glob;
pub use resources::{Arch, Resources};

use raw::Format;

/// The directory of a repo that holds the pipeline file.
pub const PIPELINE_DIR: &str = ".monkeyci";

/// The names a pipeline file may have, in the order a runner looks for them in [`PIPELINE_DIR`].
pub const PIPELINE_FILES: [&str; 3] = ["build.yaml", "build.yml", "build.json"];

/// The most retries a job may ask for.
pub const MAX_RETRIES: u32 = 10;

/// A parsed pipeline: at least one job, ids unique, every dependency a job of the pipeline and
/// no cycles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    jobs: Vec<Job>,
    timeout: Option<Duration>,
}

impl Pipeline {
    /// The jobs, every job after its dependencies and otherwise in the order of the file.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    /// The job with this id.
    pub fn job(&self, id: &JobId) -> Option<&Job> {
        self.jobs.iter().find(|job| &job.id == id)
    }

    /// How long the whole build may take, if the file says.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The jobs, in the order of [`Pipeline::jobs`].
    pub fn into_jobs(self) -> Vec<Job> {
        self.jobs
    }

    /// A pipeline of this one job alone, without its dependencies (to run one job locally).
    pub fn only(&self, id: &JobId) -> Option<Pipeline> {
        let mut job = self.job(id)?.clone();
        job.dependencies.clear();
        Some(Pipeline {
            jobs: vec![job],
            timeout: self.timeout,
        })
    }
}

/// One job of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    /// The container image to run the script in; none runs it on the runner's shell.
    pub image: Option<String>,
    /// The shell commands, run in order; at least one.
    pub script: Vec<String>,
    /// Jobs that must succeed first, without repeats.
    pub dependencies: Vec<JobId>,
    pub env: BTreeMap<String, String>,
    /// Where the script runs, relative to the checkout.
    pub work_dir: Option<RelativePath>,
    pub save_artifacts: Vec<Artifact>,
    pub restore_artifacts: Vec<Artifact>,
    pub caches: Vec<Artifact>,
    /// When the job runs; by default always.
    pub conditions: Conditions,
    pub timeout: Option<Duration>,
    /// How often a failed run is tried again, at most [`MAX_RETRIES`].
    pub retries: u32,
    /// The job waits for a person's approval before it runs.
    pub blocked: bool,
    /// A failure of this job does not fail the build.
    pub allow_failure: bool,
    /// What the job's container may use; empty unless the job has an image.
    pub resources: Resources,
}

/// An artifact or cache: files at `path` in the workspace, kept under `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub id: ArtifactId,
    pub path: RelativePath,
}

/// The id of an artifact or cache: 1–100 of `A-Z a-z 0-9 _ . -`, like a [`JobId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ArtifactId(String);

impl ArtifactId {
    /// Parses an artifact or cache id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        JobId::parse(raw)
            .map(|_| Self(raw.to_owned()))
            .map_err(|e| ValidationError::new("artifactId", e.reason))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A path inside the checkout: not empty, not absolute and without `..` segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelativePath(String);

impl RelativePath {
    /// Parses a relative path; `/` and `\` both separate segments.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let field = "path";
        if raw.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        let bytes = raw.as_bytes();
        let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
        if raw.starts_with(['/', '\\']) || drive {
            return Err(ValidationError::new(
                field,
                "must be relative to the checkout, not absolute",
            ));
        }
        if raw.split(['/', '\\']).any(|segment| segment == "..") {
            return Err(ValidationError::new(field, "must not contain '..'"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelativePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When a job runs. Each list that is not empty must be satisfied:
///
/// * `branches` and `tags` together: the build's branch matches one of `branches`, or its tag
///   one of `tags` (a build is of a branch or of a tag, so giving only `tags` skips branch
///   builds);
/// * `paths`: a changed path matches one of them (always satisfied when the changes are not
///   known);
/// * `sources`: the build was triggered by one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    pub branches: Vec<Glob>,
    pub tags: Vec<Glob>,
    pub paths: Vec<Glob>,
    pub sources: Vec<TriggerSource>,
}

impl Conditions {
    /// No conditions: the job always runs.
    pub fn is_empty(&self) -> bool {
        self.branches.is_empty() && self.tags.is_empty() && self.paths.is_empty() && self.sources.is_empty()
    }

    /// Whether a build described by `ctx` satisfies the conditions.
    pub fn matches(&self, ctx: &ConditionContext<'_>) -> bool {
        let any = |globs: &[Glob], text: Option<&str>| text.is_some_and(|t| globs.iter().any(|g| g.matches(t)));
        let on_ref = (self.branches.is_empty() && self.tags.is_empty())
            || any(&self.branches, ctx.branch)
            || any(&self.tags, ctx.tag);
        let on_paths = self.paths.is_empty()
            || ctx
                .changed_paths
                .is_none_or(|changed| changed.iter().any(|path| any(&self.paths, Some(path))));
        let on_source = self.sources.is_empty() || self.sources.contains(&ctx.source);
        on_ref && on_paths && on_source
    }
}

/// What [`Conditions::matches`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionContext<'a> {
    /// The branch built, if it is a branch build.
    pub branch: Option<&'a str>,
    /// The tag built, if it is a tag build.
    pub tag: Option<&'a str>,
    /// The paths changed by the build's commits; `None` when not known.
    pub changed_paths: Option<&'a [String]>,
    pub source: TriggerSource,
}

impl<'a> ConditionContext<'a> {
    /// The context of a build with this trigger.
    pub fn from_trigger(trigger: &'a Trigger, changed_paths: Option<&'a [String]>) -> Self {
        let (branch, tag) = match &trigger.git_ref {
            GitRef::Branch(name) => (Some(name.as_str()), None),
            GitRef::Tag(name) => (None, Some(name.as_str())),
        };
        Self {
            branch,
            tag,
            changed_paths,
            source: trigger.source,
        }
    }
}

/// Why a pipeline file was refused. Every message starts with the file's name and, where it is
/// known, `:line:column` (for the value at fault) or `:line` (for the job at fault: the line of
/// its first key).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PipelineError {
    /// The file name has none of the extensions `.yaml`, `.yml` or `.json`.
    #[error("{file}: not a pipeline file; expected .yaml, .yml or .json")]
    UnsupportedFile { file: String },
    /// Malformed YAML or JSON, a value of the wrong type, an unknown key, a refused value
    /// (job id, timeout, path, …) or resources asked for by a job without an image.
    #[error("{file}{}: {message}", at(.line, .column))]
    Invalid {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// The file has no jobs.
    #[error("{file}: the pipeline has no jobs")]
    Empty { file: String },
    /// Two jobs have the same id; `line` is that of the second.
    #[error("{file}{}: job id {id} is used by more than one job", at(.line, &None))]
    DuplicateJob {
        file: String,
        id: JobId,
        line: Option<usize>,
    },
    /// A job depends on a job the pipeline does not have.
    #[error("{file}{}: job {job} depends on {dependency}, which is not a job of this pipeline", at(.line, &None))]
    UnknownDependency {
        file: String,
        job: JobId,
        dependency: JobId,
        line: Option<usize>,
    },
    /// Jobs depend on each other in a circle; each job of `cycle` depends on the next and the
    /// last on the first.
    #[error("{file}{}: dependency cycle: {}", at(.line, &None), cycle_text(.cycle))]
    Cycle {
        file: String,
        cycle: Vec<JobId>,
        line: Option<usize>,
    },
}

impl PipelineError {
    /// The name of the file, as given to [`parse`].
    pub fn file(&self) -> &str {
        match self {
            Self::UnsupportedFile { file }
            | Self::Invalid { file, .. }
            | Self::Empty { file }
            | Self::DuplicateJob { file, .. }
            | Self::UnknownDependency { file, .. }
            | Self::Cycle { file, .. } => file,
        }
    }

    /// The line (from 1) the error is at, where known.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::UnsupportedFile { .. } | Self::Empty { .. } => None,
            Self::Invalid { line, .. }
            | Self::DuplicateJob { line, .. }
            | Self::UnknownDependency { line, .. }
            | Self::Cycle { line, .. } => *line,
        }
    }
}

fn at(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        (None, _) => String::new(),
    }
}

fn cycle_text(cycle: &[JobId]) -> String {
    let mut ids: Vec<&str> = cycle.iter().map(JobId::as_str).collect();
    if let Some(first) = ids.first().copied() {
        ids.push(first);
    }
    ids.join(" -> ")
}

/// Parses a pipeline file: JSON when `file_name` ends in `.json`, YAML for `.yaml` and `.yml`.
pub fn parse(file_name: &str, contents: &str) -> Result<Pipeline, PipelineError> {
    let file = file_name.to_owned();
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let format = match base
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("yaml" | "yml") => Format::Yaml,
        Some("json") => Format::Json,
        _ => return Err(PipelineError::UnsupportedFile { file }),
    };
    if is_blank(format, contents) {
        return Err(PipelineError::Empty { file });
    }
    let raw = raw::read(format, contents, None).map_err(|e| PipelineError::Invalid {
        file: file.clone(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    if raw.jobs.is_empty() {
        return Err(PipelineError::Empty { file });
    }
    let job_line = |index: usize| raw::read(format, contents, Some(index)).err().and_then(|e| e.line);
    let host_job_with_resources = |job: &Job| job.image.is_none() && job.resources != Resources::default();
    if let Some(index) = raw.jobs.iter().position(host_job_with_resources) {
        return Err(PipelineError::Invalid {
            line: job_line(index),
            column: None,
            message: format!(
                "job {}: memory, cpus, size and arch apply only to jobs with an image",
                raw.jobs[index].id
            ),
            file,
        });
    }
    let jobs = order(&file, raw.jobs, &job_line)?;
    Ok(Pipeline {
        jobs,
        timeout: raw.timeout,
    })
}

/// Nothing but whitespace (and, in YAML, comments and document markers).
fn is_blank(format: Format, contents: &str) -> bool {
    match format {
        Format::Json => contents.trim().is_empty(),
        Format::Yaml => contents
            .lines()
            .map(str::trim)
            .all(|line| line.is_empty() || line.starts_with('#') || line == "---" || line == "..."),
    }
}

/// Checks the jobs against each other and sorts them so that every job comes after its
/// dependencies; among the jobs that are ready, the one first in the file goes first.
fn order(file: &str, jobs: Vec<Job>, job_line: &dyn Fn(usize) -> Option<usize>) -> Result<Vec<Job>, PipelineError> {
    let mut index: HashMap<&JobId, usize> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if index.insert(&job.id, i).is_some() {
            return Err(PipelineError::DuplicateJob {
                file: file.to_owned(),
                id: job.id.clone(),
                line: job_line(i),
            });
        }
    }
    let mut waiting_for = vec![0usize; jobs.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); jobs.len()];
    for (i, job) in jobs.iter().enumerate() {
        for dependency in &job.dependencies {
            let Some(&d) = index.get(dependency) else {
                return Err(PipelineError::UnknownDependency {
                    file: file.to_owned(),
                    job: job.id.clone(),
                    dependency: dependency.clone(),
                    line: job_line(i),
                });
            };
            waiting_for[i] += 1;
            dependents[d].push(i);
        }
    }

    let mut ready: BTreeSet<usize> = (0..jobs.len()).filter(|&i| waiting_for[i] == 0).collect();
    let mut sorted = Vec::with_capacity(jobs.len());
    while let Some(i) = ready.pop_first() {
        sorted.push(i);
        for &dependent in &dependents[i] {
            waiting_for[dependent] -= 1;
            if waiting_for[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }

    if sorted.len() < jobs.len() {
        let cycle = find_cycle(&jobs, &index, &waiting_for);
        let first = cycle.first().copied();
        return Err(PipelineError::Cycle {
            file: file.to_owned(),
            cycle: cycle.into_iter().map(|i| jobs[i].id.clone()).collect(),
            line: first.and_then(job_line),
        });
    }

    let mut slots: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    Ok(sorted.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// A cycle among the jobs left unsorted, each depending on the next, starting with the one
/// first in the file. Every such job waits for another unsorted job, so following those
/// dependencies from any of them must come round.
fn find_cycle(jobs: &[Job], index: &HashMap<&JobId, usize>, waiting_for: &[usize]) -> Vec<usize> {
    let stuck = |i: usize| waiting_for[i] > 0;
    let Some(mut current) = (0..jobs.len()).find(|&i| stuck(i)) else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(position) = path.iter().position(|&i| i == current) {
            let mut cycle = path.split_off(position);
            if let Some(start) = cycle.iter().enumerate().min_by_key(|(_, &i)| i).map(|(at, _)| at) {
                cycle.rotate_left(start);
            }
            return cycle;
        }
        path.push(current);
        let next = jobs[current]
            .dependencies
            .iter()
            .filter_map(|dependency| index.get(dependency).copied())
            .find(|&d| stuck(d));
        match next {
            Some(next) => current = next,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests;
