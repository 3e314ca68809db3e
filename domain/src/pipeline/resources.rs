//! What a container job may use: `memory`, `cpus`, MonkeyCI's `size` preset and `arch`.

use crate::error::ValidationError;

/// What a container job may use; empty for host jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in thousandths of a CPU.
    pub millicpus: Option<u32>,
    /// The architecture of the image to run.
    pub arch: Option<Arch>,
}

/// A CPU architecture an image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// Parses `amd`, `amd64`, `x86_64`, `arm`, `arm64` or `aarch64`, in any case.
    pub(super) fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw.to_ascii_lowercase().as_str() {
            "amd" | "amd64" | "x86_64" => Ok(Self::Amd64),
            "arm" | "arm64" | "aarch64" => Ok(Self::Arm64),
            _ => Err(ValidationError::new(
                "arch",
                "must be amd64 (or amd, x86_64) or arm64 (or arm, aarch64)",
            )),
        }
    }

    /// The name OCI image indexes (and `podman run --arch`) give the architecture.
    pub fn as_oci(&self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Podman refuses a smaller memory limit.
const MIN_MEMORY: u64 = 6 * MIB;
const MAX_MEMORY: u64 = 1 << 40;
const MAX_CPUS: f64 = 256.0;
const MAX_SIZE: u8 = 16;

/// Memory given as a number: GB, as MonkeyCI counts it (binary, 2^30 bytes).
pub(super) fn memory_from_gb(gb: f64) -> Result<u64, ValidationError> {
    memory(gb, GIB)
}

/// Memory given as a string: an amount with a unit of `k`, `m` or `g`, optionally followed by
/// `b` or `ib` (`512m`, `2GB`, `64KiB`); all are binary multiples.
pub(super) fn memory_from_text(raw: &str) -> Result<u64, ValidationError> {
    let digits = raw.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(raw.len());
    let (amount, unit) = raw.split_at(digits);
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" if !amount.is_empty() => {
            return Err(ValidationError::new(
                "memory",
                "a string needs a unit, as in \"512m\" or \"2g\"; a bare number is in GB",
            ))
        }
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        _ => return Err(not_an_amount()),
    };
    memory(amount.parse().map_err(|_| not_an_amount())?, unit)
}

fn memory(amount: f64, unit: u64) -> Result<u64, ValidationError> {
    if !(amount.is_finite() && amount > 0.0) {
        return Err(not_an_amount());
    }
    let bytes = (amount * unit as f64).round();
    if bytes > MAX_MEMORY as f64 {
        return Err(ValidationError::new("memory", "must be at most 1 TiB"));
    }
    if bytes < MIN_MEMORY as f64 {
        return Err(ValidationError::new(
            "memory",
            "must be at least 6 MiB, podman's minimum",
        ));
    }
    Ok(bytes as u64)
}

fn not_an_amount() -> ValidationError {
    ValidationError::new("memory", "must be a positive amount such as 2 (GB) or \"512m\"")
}

/// CPUs given as a number, in thousandths of a CPU.
pub(super) fn millicpus(cpus: f64) -> Result<u32, ValidationError> {
    if !(cpus.is_finite() && cpus > 0.0) {
        return Err(ValidationError::new(
            "cpus",
            "must be a positive number such as 1 or 0.5",
        ));
    }
    if cpus > MAX_CPUS {
        return Err(ValidationError::new("cpus", "must be at most 256"));
    }
    let millicpus = (cpus * 1000.0).round();
    if millicpus < 1.0 {
        return Err(ValidationError::new("cpus", "must be at least 0.001"));
    }
    Ok(millicpus as u32)
}

/// MonkeyCI's `size` preset: each unit is 1 CPU and 2 GB of memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size(u8);

impl Size {
    /// Parses a size: a whole number from 1 to 16.
    pub(super) fn parse(units: f64) -> Result<Self, ValidationError> {
        if units.fract() != 0.0 || !(1.0..=f64::from(MAX_SIZE)).contains(&units) {
            return Err(ValidationError::new(
                "size",
                "must be a whole number from 1 to 16 (each is 1 CPU and 2 GB)",
            ));
        }
        Ok(Self(units as u8))
    }

    fn memory(self) -> u64 {
        u64::from(self.0) * 2 * GIB
    }

    fn millicpus(self) -> u32 {
        u32::from(self.0) * 1000
    }
}

impl Resources {
    /// The resources a job asks for; `memory` and `millicpus`, where given, win over `size`.
    pub(super) fn new(memory: Option<u64>, millicpus: Option<u32>, size: Option<Size>, arch: Option<Arch>) -> Self {
        Self {
            memory: memory.or(size.map(Size::memory)),
            millicpus: millicpus.or(size.map(Size::millicpus)),
            arch,
        }
    }
}
