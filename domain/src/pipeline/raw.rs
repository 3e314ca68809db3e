//! The file as written, read with serde. Every value is validated while it is read, so that a
//! refused value is reported at its own line and column.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::value::{MapAccessDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::duration::{from_secs, parse_duration};
use super::image::check_image;
use super::resources::{memory_from_gb, memory_from_text, millicpus, Size};
use super::{Arch, Artifact, ArtifactId, Conditions, Glob, Job, RelativePath, Resources, MAX_RETRIES};
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
        f.write_str("a list of jobs, a job, or a map with `jobs` (and optionally `timeout`)")
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
        // The keys tell a map with `jobs` from a single job. Both may have a `timeout`, so after
        // a `timeout` the next key decides.
        let mut timeout = None;
        let mut key = map.next_key::<String>()?;
        if key.as_deref() == Some("timeout") {
            timeout = Some(map.next_value::<Timeout>()?.0);
            key = map.next_key()?;
        }
        match key {
            Some(key) if key != "jobs" => self.single_job(key, timeout, map),
            key => self.jobs_and_timeout(key.is_some(), timeout, map),
        }
    }
}

impl FileVisitor {
    /// The rest of a map with `jobs`; `at_jobs` when the key `jobs` has just been read.
    fn jobs_and_timeout<'de, A: MapAccess<'de>>(
        self,
        at_jobs: bool,
        mut timeout: Option<Duration>,
        mut map: A,
    ) -> Result<RawFile, A::Error> {
        let probe = self.probe;
        let mut jobs = if at_jobs {
            Some(map.next_value_seed(JobsSeed { probe })?)
        } else {
            None
        };
        while let Some(key) = map.next_key::<TopKey>()? {
            match key {
                TopKey::Jobs => {
                    if jobs.is_some() {
                        return Err(de::Error::duplicate_field("jobs"));
                    }
                    jobs = Some(map.next_value_seed(JobsSeed { probe })?);
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

    /// A file that is one job, of which `key` (and `timeout`, if given) has been read.
    fn single_job<'de, A: MapAccess<'de>>(
        self,
        key: String,
        timeout: Option<Duration>,
        map: A,
    ) -> Result<RawFile, A::Error> {
        if self.probe == Some(0) {
            // The error is placed at the map (YAML) or just after its first key (JSON): either
            // way on the line of the job's first key.
            return Err(de::Error::custom("locating the job"));
        }
        let keys = KebabKeys { first: Some(key), map };
        let mut job = RawJob::deserialize(MapAccessDeserializer::new(keys))?.into_job();
        if let Some(timeout) = timeout {
            if job.timeout.replace(timeout).is_some() {
                return Err(de::Error::duplicate_field("timeout"));
            }
        }
        Ok(RawFile {
            jobs: vec![job],
            timeout: None,
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
            match seq.next_element::<Kebab<RawJob>>()? {
                Some(Kebab(job)) => jobs.push(job.into_job()),
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

/// A job; its keys are read in kebab-case through [`Kebab`].
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
    env: BTreeMap<Checked<EnvName>, Checked<EnvValue>>,
    #[serde(default)]
    work_dir: Option<Checked<RelativePath>>,
    #[serde(default)]
    save_artifacts: Vec<Kebab<RawArtifact>>,
    #[serde(default)]
    restore_artifacts: Vec<Kebab<RawArtifact>>,
    #[serde(default)]
    caches: Vec<Kebab<RawArtifact>>,
    #[serde(default)]
    conditions: Kebab<RawConditions>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    retries: Retries,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    allow_failure: bool,
    #[serde(default)]
    memory: Option<Amount<Memory>>,
    #[serde(default)]
    cpus: Option<Amount<Cpus>>,
    #[serde(default)]
    size: Option<Amount<Size>>,
    #[serde(default)]
    arch: Option<Checked<Arch>>,
}

impl RawJob {
    fn into_job(self) -> Job {
        let mut dependencies: Vec<JobId> = Vec::with_capacity(self.dependencies.len());
        for Checked(dependency) in self.dependencies {
            if !dependencies.contains(&dependency) {
                dependencies.push(dependency);
            }
        }
        let artifacts = |raw: Vec<Kebab<RawArtifact>>| raw.into_iter().map(|a| a.0.into_artifact()).collect();
        Job {
            id: self.id.0,
            image: self.image.map(|i| i.0 .0),
            script: self.script.0,
            dependencies,
            env: self.env.into_iter().map(|(k, v)| (k.0 .0, v.0 .0)).collect(),
            work_dir: self.work_dir.map(|w| w.0),
            save_artifacts: artifacts(self.save_artifacts),
            restore_artifacts: artifacts(self.restore_artifacts),
            caches: artifacts(self.caches),
            conditions: self.conditions.0.into_conditions(),
            timeout: self.timeout.map(|t| t.0),
            retries: self.retries.0,
            blocked: self.blocked,
            allow_failure: self.allow_failure,
            resources: Resources::new(
                self.memory.map(|m| m.0 .0),
                self.cpus.map(|c| c.0 .0),
                self.size.map(|s| s.0),
                self.arch.map(|a| a.0),
            ),
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

// ---- keys in kebab-case, snake_case or camelCase ----

/// A struct whose keys may be written in kebab-case, snake_case or camelCase: each key is
/// turned into kebab-case before the derived `Deserialize` sees it, so the derive knows (and
/// lists in its errors) the kebab-case names alone, and two spellings of one key are a
/// duplicate.
#[derive(Default)]
struct Kebab<T>(T);

/// What a [`Kebab`] struct is, for type errors.
trait Keyed {
    const EXPECTING: &'static str;
}

impl Keyed for RawJob {
    const EXPECTING: &'static str = "a job: a map with `id` and `script`";
}

impl Keyed for RawArtifact {
    const EXPECTING: &'static str = "a map with `id` and `path`";
}

impl Keyed for RawConditions {
    const EXPECTING: &'static str = "a map of conditions";
}

impl<'de, T: Deserialize<'de> + Keyed> Deserialize<'de> for Kebab<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KebabVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Keyed> Visitor<'de> for KebabVisitor<T> {
            type Value = Kebab<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Kebab<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(KebabKeys { first: None, map })).map(Kebab)
            }
        }
        deserializer.deserialize_map(KebabVisitor(PhantomData))
    }
}

/// A map whose keys are handed on in kebab-case; `first` is a key already read from `map`
/// (whose value is still to be read).
struct KebabKeys<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for KebabKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => KebabKey(seed).visit_str(&key).map(Some),
            None => self.map.next_key_seed(KebabKey(seed)),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Reads a key and hands it to the derived key visitor in kebab-case. It does so while the key
/// is read, so that an error carries the key's position; an unknown key is reported as written.
struct KebabKey<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KebabKey<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<K::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for KebabKey<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<K::Value, E> {
        let kebab = kebab_case(key);
        self.0
            .deserialize(StrDeserializer::<KeyError>::new(&kebab))
            .map_err(|e| match e {
                KeyError::Unknown(expected) => E::unknown_field(key, expected),
                KeyError::Other(message) => E::custom(message),
            })
    }
}

/// `workDir` and `work_dir` as `work-dir`. Other keys, kebab-case ones among them, are
/// returned as they are.
fn kebab_case(key: &str) -> Cow<'_, str> {
    let starts_lower = key.starts_with(|c: char| c.is_ascii_lowercase());
    if !starts_lower || !key.contains(|c: char| c == '_' || c.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    let mut kebab = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        match c {
            '_' => kebab.push('-'),
            c if c.is_ascii_uppercase() => {
                kebab.push('-');
                kebab.push(c.to_ascii_lowercase());
            }
            c => kebab.push(c),
        }
    }
    Cow::Owned(kebab)
}

/// The error of a derived key visitor, kept apart from the file's error type so that an
/// unknown key can be reported as written rather than in kebab-case.
#[derive(Debug)]
enum KeyError {
    Unknown(&'static [&'static str]),
    Other(String),
}

impl de::Error for KeyError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Other(message.to_string())
    }

    fn unknown_field(_key: &str, expected: &'static [&'static str]) -> Self {
        Self::Unknown(expected)
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(_) => f.write_str("unknown key"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for KeyError {}

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
                T::from_scalar(raw).map(Checked).map_err(|e| refused(T::WHAT, raw, &e))
            }
        }
        deserializer.deserialize_str(ScalarVisitor(PhantomData))
    }
}

/// The message for a refused value: `invalid <what> "<raw>": <reason>`.
fn refused<E: de::Error>(what: &str, raw: &str, e: &ValidationError) -> E {
    E::custom(format_args!("invalid {what} {raw:?}: {}", e.reason))
}

/// A resource amount, written as a number (or, for memory, also as a string with a unit) and
/// validated by [`FromAmount`] while it is read.
struct Amount<T>(T);

trait FromAmount: Sized {
    /// The key, as a user writes it.
    const WHAT: &'static str;
    /// What may be written, for type errors.
    const EXPECTING: &'static str;
    fn from_number(number: f64) -> Result<Self, ValidationError>;
    fn from_text(_raw: &str) -> Result<Self, ValidationError> {
        Err(ValidationError::new(Self::WHAT, "must be a number, not a string"))
    }
}

impl<'de, T: FromAmount> Deserialize<'de> for Amount<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor<T>(PhantomData<T>);
        impl<T: FromAmount> AmountVisitor<T> {
            fn number<E: de::Error>(number: f64, written: &str) -> Result<Amount<T>, E> {
                T::from_number(number)
                    .map(Amount)
                    .map_err(|e| refused(T::WHAT, written, &e))
            }
        }
        impl<T: FromAmount> Visitor<'_> for AmountVisitor<T> {
            type Value = Amount<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Amount<T>, E> {
                Self::number(number as f64, &number.to_string())
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Amount<T>, E> {
                Self::number(number as f64, &number.to_string())
            }
            fn visit_f64<E: de::Error>(self, number: f64) -> Result<Amount<T>, E> {
                Self::number(number, &number.to_string())
            }
            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Amount<T>, E> {
                T::from_text(raw).map(Amount).map_err(|e| refused(T::WHAT, raw, &e))
            }
        }
        deserializer.deserialize_any(AmountVisitor(PhantomData))
    }
}

/// A memory limit in bytes.
struct Memory(u64);

impl FromAmount for Memory {
    const WHAT: &'static str = "memory";
    const EXPECTING: &'static str = "memory in GB such as 2, or with a unit such as \"512m\"";
    fn from_number(gb: f64) -> Result<Self, ValidationError> {
        memory_from_gb(gb).map(Self)
    }
    fn from_text(raw: &str) -> Result<Self, ValidationError> {
        memory_from_text(raw).map(Self)
    }
}

/// A CPU limit in thousandths of a CPU.
struct Cpus(u32);

impl FromAmount for Cpus {
    const WHAT: &'static str = "cpus";
    const EXPECTING: &'static str = "cpus as a number such as 1 or 0.5";
    fn from_number(cpus: f64) -> Result<Self, ValidationError> {
        millicpus(cpus).map(Self)
    }
}

impl FromAmount for Size {
    const WHAT: &'static str = "size";
    const EXPECTING: &'static str = "size as a whole number from 1 to 16";
    fn from_number(units: f64) -> Result<Self, ValidationError> {
        Size::parse(units)
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
        check_image(raw).map(|()| Self(raw.to_owned()))
    }
}

impl FromScalar for Arch {
    const WHAT: &'static str = "arch";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        Arch::parse(raw)
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
        // A leading `-` would make the name an option of `env`.
        if raw.starts_with('-') {
            return Err(ValidationError::new("env", "must not start with '-'"));
        }
        if raw.contains('=') || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "env",
                "must not contain '=' or control characters (such as NUL)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
}

/// The value of an environment variable: any text but NUL, which no process environment can
/// hold.
struct EnvValue(String);

impl FromScalar for EnvValue {
    const WHAT: &'static str = "env value";
    fn from_scalar(raw: &str) -> Result<Self, ValidationError> {
        if raw.contains('\0') {
            return Err(ValidationError::new("env", "must not contain NUL"));
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
