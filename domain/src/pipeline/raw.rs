//! The file as written, read with serde. Every value is validated while it is read, so that a
//! refused value is reported at its own line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::duration::{from_secs, parse_duration};
use super::{Artifact, ArtifactId, Conditions, Glob, Job, RelativePath, MAX_RETRIES};
use crate::build::TriggerSource;
use crate::error::ValidationError;
use crate::values::JobId;

/// The syntax of a pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Yaml,
    Json,
}

/// The whole file, before the jobs are checked against each other.
#[derive(Debug, Default)]
pub(super) struct RawFile {
    pub jobs: Vec<Job>,
    pub timeout: Option<Duration>,
}

/// A syntax, type or value error with the place it was found, when known.
#[derive(Debug)]
pub(super) struct Located {
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Reads the file. With `probe`, reading fails on purpose at the start of the job with that
/// index, which tells where that job is written.
pub(super) fn read(format: Format, contents: &str, probe: Option<usize>) -> Result<RawFile, Located> {
    let seed = FileSeed { probe };
    match format {
        Format::Yaml => seed
            .deserialize(serde_norway::Deserializer::from_str(contents))
            .map_err(|e| {
                let location = e.location();
                located(
                    e.to_string(),
                    location.as_ref().map(serde_norway::Location::line),
                    location.as_ref().map(serde_norway::Location::column),
                )
            }),
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(contents);
            seed.deserialize(&mut de)
                .and_then(|file| de.end().map(|()| file))
                .map_err(|e| {
                    let known = e.line() > 0;
                    located(e.to_string(), known.then(|| e.line()), known.then(|| e.column()))
                })
        }
    }
}

/// Drops the " at line L column C" that both serde crates put in their messages, since the
/// caller places the location in front, and the `.` that starts serde_norway's path to the
/// value when the file is a plain list (`.[1].id`).
fn located(message: String, line: Option<usize>, column: Option<usize>) -> Located {
    let mut message = match (line, column) {
        (Some(line), Some(column)) => message.replacen(&format!(" at line {line} column {column}"), "", 1),
        _ => message,
    };
    if message.starts_with(".[") {
        message.remove(0);
    }
    Located { message, line, column }
}

// ---- the file: a list of jobs, or a map with `jobs` and `timeout` ----

struct FileSeed {
    probe: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for FileSeed {
    type Value = RawFile;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawFile, D::Error> {
        deserializer.deserialize_any(FileVisitor { probe: self.probe })
    }
}

struct FileVisitor {
    probe: Option<usize>,
}

impl<'de> Visitor<'de> for FileVisitor {
    type Value = RawFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of jobs, or a map with `jobs` (and optionally `timeout`)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawFile, E> {
        Ok(RawFile::default())
    }

    fn visit_none<E: de::Error>(self) -> Result<RawFile, E> {
        Ok(RawFile::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawFile, A::Error> {
        Ok(RawFile {
            jobs: JobsVisitor { probe: self.probe }.visit_seq(seq)?,
            timeout: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
        let mut jobs = None;
        let mut timeout = None;
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Jobs => {
                    if jobs.is_some() {
                        return Err(de::Error::duplicate_field("jobs"));
                    }
                    jobs = Some(map.next_value_seed(JobsSeed { probe: self.probe })?);
                }
                TopKey::Timeout => {
                    if timeout.is_some() {
                        return Err(de::Error::duplicate_field("timeout"));
                    }
                    timeout = Some(map.next_value::<Timeout>()?.0);
                }
            }
        }
        Ok(RawFile {
            jobs: jobs.ok_or_else(|| de::Error::missing_field("jobs"))?,
            timeout,
        })
    }
}

enum TopKey {
    Jobs,
    Timeout,
}

impl<'de> Deserialize<'de> for TopKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = TopKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`jobs` or `timeout`")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<TopKey, E> {
                match key {
                    "jobs" => Ok(TopKey::Jobs),
                    "timeout" => Ok(TopKey::Timeout),
                    other => Err(E::unknown_field(other, &["jobs", "timeout"])),
                }
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct JobsSeed {
    probe: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for JobsSeed {
    type Value = Vec<Job>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Job>, D::Error> {
        deserializer.deserialize_any(JobsVisitor { probe: self.probe })
    }
}

struct JobsVisitor {
    probe: Option<usize>,
}

impl<'de> Visitor<'de> for JobsVisitor {
    type Value = Vec<Job>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of jobs")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<Job>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<Job>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Job>, A::Error> {
        let mut jobs = Vec::new();
        loop {
            if self.probe == Some(jobs.len()) && seq.next_element_seed(Probe)?.is_none() {
                return Ok(jobs);
            }
            match seq.next_element::<RawJob>()? {
                Some(job) => jobs.push(job.into_job()),
                None => return Ok(jobs),
            }
        }
    }
}

/// Fails as soon as it sees a value, so that the error carries the value's position.
struct Probe;

impl<'de> DeserializeSeed<'de> for Probe {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(Probe)
    }
}

impl Visitor<'_> for Probe {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nothing (locating a job)")
    }
}

// ---- jobs ----

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RawJob {
    id: Checked<JobId>,
    #[serde(default)]
    image: Option<Checked<Image>>,
    script: Script,
    #[serde(default)]
    dependencies: Vec<Checked<JobId>>,
    #[serde(default)]
    env: BTreeMap<Checked<EnvName>, String>,
    #[serde(default, alias = "workDir")]
    work_dir: Option<Checked<RelativePath>>,
    #[serde(default, alias = "saveArtifacts")]
    save_artifacts: Vec<RawArtifact>,
    #[serde(default, alias = "restoreArtifacts")]
    restore_artifacts: Vec<RawArtifact>,
    #[serde(default)]
    caches: Vec<RawArtifact>,
    #[serde(default)]
    conditions: RawConditions,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    retries: Retries,
    #[serde(default)]
    blocked: bool,
    #[serde(default, alias = "allowFailure")]
    allow_failure: bool,
}

impl RawJob {
    fn into_job(self) -> Job {
        let mut dependencies: Vec<JobId> = Vec::with_capacity(self.dependencies.len());
        for Checked(dependency) in self.dependencies {
            if !dependencies.contains(&dependency) {
                dependencies.push(dependency);
            }
        }
        let artifacts = |raw: Vec<RawArtifact>| raw.into_iter().map(RawArtifact::into_artifact).collect();
        Job {
            id: self.id.0,
            image: self.image.map(|i| i.0 .0),
            script: self.script.0,
            dependencies,
            env: self.env.into_iter().map(|(k, v)| (k.0 .0, v)).collect(),
            work_dir: self.work_dir.map(|w| w.0),
            save_artifacts: artifacts(self.save_artifacts),
            restore_artifacts: artifacts(self.restore_artifacts),
            caches: artifacts(self.caches),
            conditions: self.conditions.into_conditions(),
            timeout: self.timeout.map(|t| t.0),
            retries: self.retries.0,
            blocked: self.blocked,
            allow_failure: self.allow_failure,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    id: Checked<ArtifactId>,
    path: Checked<RelativePath>,
}

impl RawArtifact {
    fn into_artifact(self) -> Artifact {
        Artifact {
            id: self.id.0,
            path: self.path.0,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    #[serde(default)]
    branches: Vec<Checked<Glob>>,
    #[serde(default)]
    tags: Vec<Checked<Glob>>,
    #[serde(default)]
    paths: Vec<Checked<Glob>>,
    #[serde(default)]
    sources: Vec<TriggerSource>,
}

impl RawConditions {
    fn into_conditions(self) -> Conditions {
        let globs = |raw: Vec<Checked<Glob>>| raw.into_iter().map(|g| g.0).collect();
        let mut sources = Vec::with_capacity(self.sources.len());
        for source in self.sources {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
        Conditions {
            branches: globs(self.branches),
            tags: globs(self.tags),
            paths: globs(self.paths),
            sources,
        }
    }
}

// ---- validated scalars ----

/// A value written as a string and validated by [`FromScalar`] while it is read.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Checked<T>(T);

trait FromScalar: Sized {
    /// What the value is, as a user would call it.
    const WHAT: &'static str;
    fn from_scalar(raw: &str) -> Result<Self, ValidationError>;
}

impl<'de, T: FromScalar> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor<T>(PhantomData<T>);
        impl<T: FromScalar> Visitor<'_> for ScalarVisitor<T> {
            type Value = Checked<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} as a string", T::WHAT)
            }
            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Checked<T>, E> {
                T::from_scalar(raw)
                    .map(Checked)
                    .map_err(|e| E::custom(format_args!("invalid {} {raw:?}: {}", T::WHAT, e.reason)))
            }
        }
        deserializer.deserialize_str(ScalarVisitor(PhantomData))
    }
}

impl FromScalar for JobId {
    const WHAT: &'static str = "job id";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        JobId::parse(raw)
    }
}

impl FromScalar for ArtifactId {
    const WHAT: &'static str = "artifact id";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        ArtifactId::parse(raw)
    }
}

impl FromScalar for RelativePath {
    const WHAT: &'static str = "path";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        RelativePath::parse(raw)
    }
}

impl FromScalar for Glob {
    const WHAT: &'static str = "pattern";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        Glob::parse(raw)
    }
}

/// A container image reference.
struct Image(String);

impl FromScalar for Image {
    const WHAT: &'static str = "image";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        if raw.trim().is_empty() {
            return Err(ValidationError::new("image", "must not be empty"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ValidationError::new(
                "image",
                "must not contain whitespace or control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The name of an environment variable.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct EnvName(String);

impl FromScalar for EnvName {
    const WHAT: &'static str = "environment variable name";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new("env", "must not be empty"));
        }
        if raw.contains('=') || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "env",
                "must not contain '=' or control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The shell commands of a job: at least one.
struct Script(Vec<String>);

impl<'de> Deserialize<'de> for Script {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScriptVisitor;
        impl<'de> Visitor<'de> for ScriptVisitor {
            type Value = Script;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of shell commands")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Script, A::Error> {
                let mut commands = Vec::new();
                while let Some(command) = seq.next_element::<String>()? {
                    commands.push(command);
                }
                if commands.is_empty() {
                    return Err(de::Error::custom("a script needs at least one command"));
                }
                Ok(Script(commands))
            }
        }
        deserializer.deserialize_seq(ScriptVisitor)
    }
}

/// A timeout: whole seconds, or a duration string such as `"1h30m"`.
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeoutVisitor;
        impl Visitor<'_> for TimeoutVisitor {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("whole seconds or a duration like \"10m\" or \"1h30m\"")
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Timeout, E> {
                from_secs(secs).map(Timeout).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Timeout, E> {
                from_secs(secs.try_into().unwrap_or(0)).map(Timeout).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Timeout, E> {
                parse_duration(raw).map(Timeout).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(TimeoutVisitor)
    }
}

/// How often a failed job is run again: 0 to [`MAX_RETRIES`].
#[derive(Default)]
struct Retries(u32);

impl<'de> Deserialize<'de> for Retries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetriesVisitor;
        impl Visitor<'_> for RetriesVisitor {
            type Value = Retries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a number of retries from 0 to {MAX_RETRIES}")
            }
            fn visit_u64<E: de::Error>(self, retries: u64) -> Result<Retries, E> {
                match u32::try_from(retries) {
                    Ok(retries) if retries <= MAX_RETRIES => Ok(Retries(retries)),
                    _ => Err(E::custom(format_args!(
                        "invalid retries: must be at most {MAX_RETRIES}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, retries: i64) -> Result<Retries, E> {
                match u64::try_from(retries) {
                    Ok(retries) => self.visit_u64(retries),
                    Err(_) => Err(E::custom("invalid retries: must not be negative")),
                }
            }
        }
        deserializer.deserialize_u64(RetriesVisitor)
    }
}
