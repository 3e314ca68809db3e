//! tar.gz archives of a job's files, for artifacts and caches.
//!
//! [`pack`] takes paths relative to a root (the job's workspace) and refuses any that would
//! reach outside it; [`unpack`] refuses any entry that would write outside its destination, or
//! leave a link that leads outside it. Both are blocking; [`pack_async`] and [`unpack_async`] run
//! them on tokio's blocking pool.
//!
//! What is kept: regular files (with their permission bits and modification time), directories,
//! and symbolic links whose target stays inside the root (an absolute target inside the root is
//! stored relative). Sockets, FIFOs and devices found while packing are skipped with a warning;
//! such entries in an archive are refused when unpacking.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header, HeaderMode};

use crate::temp::{blocking, is_absent, PendingFile};

/// The most symbolic links followed while checking one link target.
const MAX_LINK_DEPTH: u32 = 40;

/// What [`pack`] stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackSummary {
    /// Regular files stored.
    pub files: u64,
    /// Their total size, uncompressed.
    pub bytes: u64,
}

/// What [`unpack`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

/// The directory a refused path would have escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Within {
    /// The root that [`pack`] takes its paths from (a job's workspace).
    Workspace,
    /// The directory that [`unpack`] writes into.
    Destination,
}

impl Within {
    fn subject(self) -> &'static str {
        match self {
            Within::Workspace => "path",
            Within::Destination => "archive entry",
        }
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Within::Workspace => "the workspace",
            Within::Destination => "the destination directory",
        })
    }
}

/// Why packing or unpacking failed. The messages are meant for the CI user.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A path or entry that would reach outside the workspace or the destination.
    #[error("{subject} {path:?} escapes {within}: {reason}", subject = .within.subject())]
    Escapes {
        path: String,
        within: Within,
        reason: String,
    },
    /// A path to pack that does not exist.
    #[error("path {path:?} does not exist in the workspace")]
    Missing { path: String },
    /// An archive entry of a kind that is never unpacked (device, FIFO, …).
    #[error("archive entry {path:?} is a {kind}; only files, directories and links are unpacked")]
    Unsupported { path: String, kind: String },
    /// Reading or writing files, or reading a damaged archive, failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        context: context.into(),
        source,
    }
}

fn escapes(path: impl Into<String>, within: Within, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Escapes {
        path: path.into(),
        within,
        reason: reason.into(),
    }
}

/// A path made of normal components only, or the reason it is not one.
fn relative_components(path: &Path) -> Result<PathBuf, String> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains \"..\"".into()),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path".into()),
        }
    }
    Ok(relative)
}

/// `path` with `.` and `..` resolved without looking at the filesystem.
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

// ---------------------------------------------------------------------------------------------
// Packing

enum Source {
    Dir(PathBuf),
    File(PathBuf),
    Symlink { link: PathBuf, target: PathBuf },
}

/// Packs `paths` (each relative to `root`: a file, a directory taken whole, or a symlink) into
/// the gzip-compressed tar file `out`, written through a temporary file and renamed when
/// complete. Entries are named relative to `root` and stored in sorted order; a path given twice,
/// or inside another given path, is stored once.
///
/// Refused, with [`ArchiveError::Escapes`]: a path that is absolute, contains `..`, or resolves
/// outside `root` (through a symlink), and a symlink (named or found inside a directory) whose
/// target lies outside `root`. A path that does not exist is [`ArchiveError::Missing`].
pub fn pack(root: &Path, paths: &[String], out: &Path) -> Result<PackSummary, ArchiveError> {
    let root_real =
        fs::canonicalize(root).map_err(|e| io_error(format!("cannot open the workspace {}", root.display()), e))?;
    let mut sources = BTreeMap::new();
    for path in paths {
        collect_named(&root_real, path, &mut sources)?;
    }
    write_archive(&sources, out)
}

/// Adds the entries for one named path.
fn collect_named(root: &Path, path: &str, sources: &mut BTreeMap<PathBuf, Source>) -> Result<(), ArchiveError> {
    if path.is_empty() {
        return Err(ArchiveError::Missing { path: path.into() });
    }
    let relative = relative_components(Path::new(path)).map_err(|reason| escapes(path, Within::Workspace, reason))?;
    let full = root.join(&relative);
    let meta = match fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        Err(e) if is_absent(&e) => return Err(ArchiveError::Missing { path: path.into() }),
        Err(e) => return Err(io_error(format!("cannot read {}", full.display()), e)),
    };
    // Where the path really is: its parent directories may be symlinks.
    let real = if relative.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        let parent = full.parent().unwrap_or(root);
        let parent_real =
            fs::canonicalize(parent).map_err(|e| io_error(format!("cannot read {}", parent.display()), e))?;
        if !parent_real.starts_with(root) {
            return Err(escapes(
                path,
                Within::Workspace,
                "it leads through a symlink to outside the workspace",
            ));
        }
        match full.file_name() {
            Some(name) => parent_real.join(name),
            None => parent_real,
        }
    };
    collect(root, &real, relative, &meta, path, sources)
}

/// Adds `real` (known as `relative` in the archive) and, for a directory, everything below it.
fn collect(
    root: &Path,
    real: &Path,
    relative: PathBuf,
    meta: &fs::Metadata,
    shown: &str,
    sources: &mut BTreeMap<PathBuf, Source>,
) -> Result<(), ArchiveError> {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        let target = checked_symlink(root, real, shown)?;
        sources.insert(
            relative,
            Source::Symlink {
                link: real.to_path_buf(),
                target,
            },
        );
    } else if file_type.is_file() {
        sources.insert(relative, Source::File(real.to_path_buf()));
    } else if file_type.is_dir() {
        let context = || format!("cannot list {}", real.display());
        let mut children = Vec::new();
        for entry in fs::read_dir(real).map_err(|e| io_error(context(), e))? {
            let entry = entry.map_err(|e| io_error(context(), e))?;
            children.push(entry.file_name());
        }
        children.sort();
        if !relative.as_os_str().is_empty() {
            sources.insert(relative.clone(), Source::Dir(real.to_path_buf()));
        }
        for name in children {
            let child = real.join(&name);
            let child_meta = match fs::symlink_metadata(&child) {
                Ok(meta) => meta,
                // Removed while we looked.
                Err(e) if is_absent(&e) => continue,
                Err(e) => return Err(io_error(format!("cannot read {}", child.display()), e)),
            };
            let child_relative = relative.join(&name);
            let child_shown = child_relative.to_string_lossy().into_owned();
            collect(root, &child, child_relative, &child_meta, &child_shown, sources)?;
        }
    } else {
        tracing::warn!(path = %real.display(), "skipping a socket, FIFO or device file while packing");
    }
    Ok(())
}

/// The target to store for the symlink at `link` (whose parent is a real path inside `root`),
/// or `Escapes` when it leads outside `root`.
fn checked_symlink(root: &Path, link: &Path, shown: &str) -> Result<PathBuf, ArchiveError> {
    let target = fs::read_link(link).map_err(|e| io_error(format!("cannot read the link {}", link.display()), e))?;
    let parent = link.parent().unwrap_or(root);
    let outside = || {
        escapes(
            shown,
            Within::Workspace,
            format!(
                "it is a symlink to {:?}, which is outside the workspace",
                target.display().to_string()
            ),
        )
    };
    let lexical = normalize_lexically(&parent.join(&target));
    if !lexical.starts_with(root) {
        return Err(outside());
    }
    // Links further along the way may lead elsewhere. A dangling link is judged by its text.
    match fs::canonicalize(link) {
        Ok(resolved) if !resolved.starts_with(root) => return Err(outside()),
        _ => {}
    }
    if target.is_absolute() {
        // Store it relative to the link, so it still points inside wherever the archive goes.
        let from: Vec<Component<'_>> = parent.strip_prefix(root).unwrap_or(parent).components().collect();
        let to: Vec<Component<'_>> = lexical.strip_prefix(root).unwrap_or(&lexical).components().collect();
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut relative: PathBuf = std::iter::repeat_n("..", from.len() - common).collect();
        relative.extend(&to[common..]);
        if relative.as_os_str().is_empty() {
            relative.push(".");
        }
        return Ok(relative);
    }
    Ok(target)
}

/// Counts what passes through, so a file that changes size while it is packed is noticed.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn write_archive(sources: &BTreeMap<PathBuf, Source>, out: &Path) -> Result<PackSummary, ArchiveError> {
    let out_context = || format!("cannot write the archive {}", out.display());
    let pending = PendingFile::beside(out);
    let file = pending.create().map_err(|e| io_error(out_context(), e))?;
    let encoder = GzEncoder::new(BufWriter::new(file), Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    builder.follow_symlinks(false);
    let mut summary = PackSummary::default();
    for (relative, source) in sources {
        match source {
            Source::Dir(real) => {
                let meta = fs::metadata(real).map_err(|e| io_error(format!("cannot read {}", real.display()), e))?;
                let mut header = Header::new_gnu();
                header.set_metadata_in_mode(&meta, HeaderMode::Complete);
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                builder
                    .append_data(&mut header, relative, io::empty())
                    .map_err(|e| io_error(out_context(), e))?;
            }
            Source::File(real) => {
                let context = || format!("cannot read {}", real.display());
                let file = File::open(real).map_err(|e| io_error(context(), e))?;
                let meta = file.metadata().map_err(|e| io_error(context(), e))?;
                let mut header = Header::new_gnu();
                header.set_metadata_in_mode(&meta, HeaderMode::Complete);
                header.set_entry_type(EntryType::Regular);
                let size = meta.len();
                header.set_size(size);
                let mut reader = Counting {
                    inner: file.take(size),
                    count: 0,
                };
                builder
                    .append_data(&mut header, relative, &mut reader)
                    .map_err(|e| io_error(out_context(), e))?;
                if reader.count != size {
                    let changed = io::Error::other("the file changed size while it was being packed");
                    return Err(io_error(context(), changed));
                }
                summary.files += 1;
                summary.bytes += size;
            }
            Source::Symlink { link, target } => {
                let meta =
                    fs::symlink_metadata(link).map_err(|e| io_error(format!("cannot read {}", link.display()), e))?;
                let mut header = Header::new_gnu();
                header.set_metadata_in_mode(&meta, HeaderMode::Complete);
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, relative, target)
                    .map_err(|e| io_error(out_context(), e))?;
            }
        }
    }
    let encoder = builder.into_inner().map_err(|e| io_error(out_context(), e))?;
    let writer = encoder.finish().map_err(|e| io_error(out_context(), e))?;
    let file = writer
        .into_inner()
        .map_err(|e| io_error(out_context(), e.into_error()))?;
    file.sync_all().map_err(|e| io_error(out_context(), e))?;
    drop(file);
    pending.commit(out).map_err(|e| io_error(out_context(), e))?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// Unpacking

/// Unpacks the gzip-compressed tar file `archive` into `dest` (created if missing). Files are
/// written through temporary files and renamed into place, so an existing symlink at an entry's
/// own path is replaced, never written through.
///
/// Refused, with [`ArchiveError::Escapes`] naming the entry: an entry whose path is absolute or
/// contains `..`; a symlink whose target is absolute or leads outside `dest` (following links
/// already there); a hard link to anything but a file inside `dest`; and an entry whose parent
/// directory would be reached through a symlink that leads outside `dest`. Devices and FIFOs are
/// [`ArchiveError::Unsupported`]. Entries before a refused one stay written; nothing is ever
/// written outside `dest`.
pub fn unpack(archive: &Path, dest: &Path) -> Result<UnpackSummary, ArchiveError> {
    fs::create_dir_all(dest).map_err(|e| io_error(format!("cannot create {}", dest.display()), e))?;
    let dest_real = fs::canonicalize(dest).map_err(|e| io_error(format!("cannot open {}", dest.display()), e))?;
    let read_context = || format!("cannot read the archive {}", archive.display());
    let file = File::open(archive).map_err(|e| io_error(read_context(), e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut summary = UnpackSummary::default();
    for entry in tar.entries().map_err(|e| io_error(read_context(), e))? {
        let mut entry = entry.map_err(|e| io_error(read_context(), e))?;
        let raw_path = entry.path().map_err(|e| io_error(read_context(), e))?.into_owned();
        let shown = raw_path.to_string_lossy().into_owned();
        let relative =
            relative_components(&raw_path).map_err(|reason| escapes(shown.as_str(), Within::Destination, reason))?;
        let entry_type = entry.header().entry_type();
        if matches!(entry_type, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let Some(name) = relative.file_name().map(|n| n.to_os_string()) else {
            // The destination itself ("./"): nothing to create.
            continue;
        };
        let parent_relative = relative.parent().unwrap_or(Path::new(""));
        match entry_type {
            EntryType::Directory => {
                ensure_dirs(&dest_real, &relative, &shown)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let parent = ensure_dirs(&dest_real, parent_relative, &shown)?;
                let target = parent.join(&name);
                let context = || format!("cannot write {}", target.display());
                let pending = PendingFile::in_dir(&parent);
                let mut file = pending.create().map_err(|e| io_error(context(), e))?;
                let size = io::copy(&mut entry, &mut file).map_err(|e| io_error(read_context(), e))?;
                let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| io_error(context(), e))?;
                if let Ok(mtime) = entry.header().mtime() {
                    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
                        .map_err(|e| io_error(context(), e))?;
                }
                drop(file);
                refuse_directory_at(&target, &shown)?;
                pending.commit(&target).map_err(|e| io_error(context(), e))?;
                summary.files += 1;
                summary.bytes += size;
            }
            EntryType::Symlink => {
                let link_target = link_name(&entry, &shown)?;
                let refuse = |why: &str| {
                    escapes(
                        shown.as_str(),
                        Within::Destination,
                        format!("it is a symlink to {:?}, {why}", link_target.display().to_string()),
                    )
                };
                if link_target.is_absolute() {
                    return Err(refuse("an absolute path"));
                }
                // Judged first by the archive's own names (nothing written yet), then from where
                // the link really lands, following any links already in `dest`.
                if !stays_inside_lexically(&parent_relative.join(&link_target)) {
                    return Err(refuse("which is outside the destination directory"));
                }
                let parent = ensure_dirs(&dest_real, parent_relative, &shown)?;
                if resolve_inside(&dest_real, &parent, &link_target, 0).is_none() {
                    return Err(refuse("which is outside the destination directory"));
                }
                let target = parent.join(&name);
                let context = || format!("cannot create the symlink {}", target.display());
                let pending = PendingFile::in_dir(&parent);
                std::os::unix::fs::symlink(&link_target, pending.path()).map_err(|e| io_error(context(), e))?;
                refuse_directory_at(&target, &shown)?;
                pending.commit(&target).map_err(|e| io_error(context(), e))?;
            }
            EntryType::Link => {
                let link_target = link_name(&entry, &shown)?;
                let refuse = |why: &str| {
                    escapes(
                        shown.as_str(),
                        Within::Destination,
                        format!("it is a hard link to {:?}, {why}", link_target.display().to_string()),
                    )
                };
                let target_relative = relative_components(&link_target).map_err(|reason| refuse(&reason))?;
                let source = resolve_inside(&dest_real, &dest_real, &target_relative, 0)
                    .ok_or_else(|| refuse("which is outside the destination directory"))?;
                match fs::symlink_metadata(&source) {
                    Ok(meta) if meta.is_file() => {}
                    _ => return Err(refuse("which is not a file unpacked before it")),
                }
                let parent = ensure_dirs(&dest_real, parent_relative, &shown)?;
                let target = parent.join(&name);
                let context = || format!("cannot create the hard link {}", target.display());
                let pending = PendingFile::in_dir(&parent);
                fs::hard_link(&source, pending.path()).map_err(|e| io_error(context(), e))?;
                refuse_directory_at(&target, &shown)?;
                pending.commit(&target).map_err(|e| io_error(context(), e))?;
                summary.files += 1;
                summary.bytes += entry.header().size().unwrap_or(0);
            }
            other => {
                let kind = match other {
                    EntryType::Char => "character device".to_owned(),
                    EntryType::Block => "block device".to_owned(),
                    EntryType::Fifo => "FIFO".to_owned(),
                    other => format!("entry of type {:?}", other.as_byte() as char),
                };
                return Err(ArchiveError::Unsupported { path: shown, kind });
            }
        }
    }
    Ok(summary)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, shown: &str) -> Result<PathBuf, ArchiveError> {
    match entry.link_name() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err(io_error(
            format!("archive entry {shown:?} is a link without a target"),
            io::Error::from(io::ErrorKind::InvalidData),
        )),
        Err(e) => Err(io_error(
            format!("cannot read the link target of archive entry {shown:?}"),
            e,
        )),
    }
}

/// Whether a relative path never climbs above its starting point.
fn stays_inside_lexically(path: &Path) -> bool {
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Makes sure the directories `relative` (below `dest`, a real path) exist, creating the missing
/// ones, and returns the real path of the last. A symlink on the way is followed only when it
/// leads to a directory inside `dest`; otherwise the entry `shown` is refused.
fn ensure_dirs(dest: &Path, relative: &Path, shown: &str) -> Result<PathBuf, ArchiveError> {
    let mut current = dest.to_path_buf();
    let mut walked = PathBuf::new();
    for component in relative.components() {
        walked.push(component);
        let next = current.join(component);
        match fs::symlink_metadata(&next) {
            Ok(meta) if meta.is_dir() => current = next,
            Ok(meta) if meta.is_symlink() => {
                let through = |why: &str| {
                    escapes(
                        shown,
                        Within::Destination,
                        format!(
                            "it would be written through the symlink {:?}, which {why}",
                            walked.display().to_string()
                        ),
                    )
                };
                let resolved = fs::canonicalize(&next).map_err(|_| through("leads nowhere"))?;
                if !resolved.starts_with(dest) {
                    return Err(through("points outside the destination directory"));
                }
                if !resolved.is_dir() {
                    return Err(through("does not lead to a directory"));
                }
                current = resolved;
            }
            Ok(_) => {
                return Err(io_error(
                    format!(
                        "cannot unpack archive entry {shown:?}: {} is not a directory",
                        next.display()
                    ),
                    io::Error::from(io::ErrorKind::NotADirectory),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && next.is_dir() => {}
                    Err(e) => return Err(io_error(format!("cannot create {}", next.display()), e)),
                }
                current = next;
            }
            Err(e) => return Err(io_error(format!("cannot read {}", next.display()), e)),
        }
    }
    Ok(current)
}

/// Refuses to put a file or link where a real directory is (rename would fail obscurely).
fn refuse_directory_at(target: &Path, shown: &str) -> Result<(), ArchiveError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(io_error(
            format!(
                "cannot unpack archive entry {shown:?}: {} is a directory",
                target.display()
            ),
            io::Error::from(io::ErrorKind::IsADirectory),
        )),
        _ => Ok(()),
    }
}

/// Where `target`, taken from the real directory `start`, leads, following symlinks as the
/// kernel would, or `None` if it would leave `root` at any step (or needs too many links).
/// Components after a missing one are taken by their names.
fn resolve_inside(root: &Path, start: &Path, target: &Path, depth: u32) -> Option<PathBuf> {
    if depth > MAX_LINK_DEPTH {
        return None;
    }
    let mut current = start.to_path_buf();
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if current == root {
                    return None;
                }
                current.pop();
            }
            Component::Normal(name) => {
                let next = current.join(name);
                match fs::symlink_metadata(&next) {
                    Ok(meta) if meta.is_symlink() => {
                        let link_target = fs::read_link(&next).ok()?;
                        current = resolve_inside(root, &current, &link_target, depth + 1)?;
                    }
                    _ => current = next,
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    current.starts_with(root).then_some(current)
}

// ---------------------------------------------------------------------------------------------
// Async wrappers

/// [`pack`] on tokio's blocking pool.
pub async fn pack_async(root: PathBuf, paths: Vec<String>, out: PathBuf) -> Result<PackSummary, ArchiveError> {
    blocking(move || pack(&root, &paths, &out))
        .await
        .map_err(|e| io_error("archive task failed", e))?
}

/// [`unpack`] on tokio's blocking pool.
pub async fn unpack_async(archive: PathBuf, dest: PathBuf) -> Result<UnpackSummary, ArchiveError> {
    blocking(move || unpack(&archive, &dest))
        .await
        .map_err(|e| io_error("archive task failed", e))?
}
