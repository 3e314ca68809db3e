//! Tests of `archive`: round trips, and every way a path or entry could escape.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};
use tempfile::TempDir;

use crate::archive::{pack, pack_async, unpack, unpack_async, ArchiveError, PackSummary, UnpackSummary, Within};

/// A sandbox: `workspace/` to pack from, `outside/` that nothing may touch, `out/` for archives,
/// `dest/` to unpack into.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for sub in ["workspace", "outside", "out"] {
            fs::create_dir_all(sandbox.path(sub)).expect("create sandbox dir");
        }
        fs::write(sandbox.path("outside/secret.txt"), "secret").expect("write outside file");
        sandbox
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, content: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
        fs::write(path, content).expect("write file");
    }

    fn archive(&self) -> PathBuf {
        self.path("out/files.tar.gz")
    }

    fn pack(&self, paths: &[&str]) -> Result<PackSummary, ArchiveError> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        pack(&self.path("workspace"), &paths, &self.archive())
    }

    fn unpack(&self) -> Result<UnpackSummary, ArchiveError> {
        unpack(&self.archive(), &self.path("dest"))
    }

    /// Asserts that `outside/` still holds exactly its one untouched file.
    fn assert_outside_untouched(&self) {
        assert_eq!(names_in(&self.path("outside")), ["secret.txt"]);
        assert_eq!(
            fs::read_to_string(self.path("outside/secret.txt")).expect("read"),
            "secret"
        );
        for name in names_in(self.dir.path()) {
            assert!(
                ["dest", "out", "outside", "workspace"].contains(&name.as_str()),
                "unexpected {name}"
            );
        }
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn entry_names(archive: &Path) -> Vec<String> {
    let file = fs::File::open(archive).expect("open archive");
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    tar.entries()
        .expect("entries")
        .map(|entry| {
            entry
                .expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn escape_of(result: Result<impl std::fmt::Debug, ArchiveError>) -> (String, Within, String, String) {
    match result {
        Err(error @ ArchiveError::Escapes { .. }) => {
            let message = error.to_string();
            let ArchiveError::Escapes { path, within, reason } = error else {
                unreachable!()
            };
            (path, within, reason, message)
        }
        other => panic!("expected ArchiveError::Escapes, got {other:?}"),
    }
}

/// One entry of a hand-made archive: the header fields are written raw, so nothing stops a
/// `..` or an absolute path.
struct Raw<'a> {
    name: &'a str,
    kind: EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn raw(name: &str, kind: EntryType) -> Raw<'_> {
    Raw {
        name,
        kind,
        link: "",
        data: b"",
    }
}

fn write_raw_archive(path: &Path, entries: &[Raw<'_>]) {
    let file = fs::File::create(path).expect("create archive");
    let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    for entry in entries {
        let mut header = Header::new_old();
        header.as_old_mut().name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        header.as_old_mut().linkname[..entry.link.len()].copy_from_slice(entry.link.as_bytes());
        header.set_entry_type(entry.kind);
        header.set_mode(0o644);
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        builder.append(&header, entry.data).expect("append raw entry");
    }
    builder.into_inner().expect("finish tar").finish().expect("finish gzip");
}

// --- round trips ------------------------------------------------------------------------------

fn build_workspace(s: &Sandbox) {
    s.write("workspace/dist/a.txt", "alpha");
    s.write("workspace/dist/sub/b.sh", "#!/bin/sh\necho b\n");
    fs::set_permissions(s.path("workspace/dist/sub/b.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    s.write("workspace/dist/sub/deeper/c.bin", &"c".repeat(100_000));
    fs::create_dir_all(s.path("workspace/dist/empty")).expect("mkdir");
    symlink("sub/b.sh", s.path("workspace/dist/latest")).expect("symlink to file");
    symlink("sub", s.path("workspace/dist/sub-link")).expect("symlink to dir");
    let absolute_inside = s.path("workspace/dist/a.txt").canonicalize().expect("canonical");
    symlink(absolute_inside, s.path("workspace/dist/sub/abs-link")).expect("absolute symlink");
    s.write("workspace/README.md", "readme");
    s.write("workspace/not-packed.txt", "left behind");
}

#[test]
fn pack_and_unpack_round_trip_a_nested_directory_with_symlinks() {
    let s = Sandbox::new();
    build_workspace(&s);

    let packed = s.pack(&["dist", "README.md"]).expect("pack");
    assert_eq!(
        packed,
        PackSummary {
            files: 4,
            bytes: 5 + 17 + 100_000 + 6
        }
    );
    let unpacked = s.unpack().expect("unpack");
    assert_eq!(
        unpacked,
        UnpackSummary {
            files: 4,
            bytes: packed.bytes
        }
    );

    let dest = s.path("dest");
    assert_eq!(fs::read_to_string(dest.join("dist/a.txt")).expect("a"), "alpha");
    assert_eq!(fs::read_to_string(dest.join("README.md")).expect("readme"), "readme");
    assert_eq!(fs::read(dest.join("dist/sub/deeper/c.bin")).expect("c").len(), 100_000);
    let mode = fs::metadata(dest.join("dist/sub/b.sh"))
        .expect("b")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "the executable bit survives");
    assert!(dest.join("dist/empty").is_dir());
    assert_eq!(
        fs::read_link(dest.join("dist/latest")).expect("link"),
        Path::new("sub/b.sh")
    );
    assert_eq!(
        fs::read_to_string(dest.join("dist/latest")).expect("through link"),
        "#!/bin/sh\necho b\n"
    );
    assert_eq!(
        fs::read_link(dest.join("dist/sub-link")).expect("dir link"),
        Path::new("sub")
    );
    assert_eq!(
        fs::read_link(dest.join("dist/sub/abs-link")).expect("abs link"),
        Path::new("../a.txt"),
        "an absolute link inside the workspace is stored relative"
    );
    assert!(!dest.join("not-packed.txt").exists());
    s.assert_outside_untouched();
}

#[test]
fn pack_stores_relative_names_in_sorted_order_and_is_deterministic() {
    let s = Sandbox::new();
    build_workspace(&s);
    s.pack(&["README.md", "dist", "dist/sub"]).expect("pack");
    let names = entry_names(&s.archive());
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| Path::new(a).cmp(Path::new(b)));
    assert_eq!(names, sorted);
    assert_eq!(names.first().map(String::as_str), Some("README.md"));
    assert!(
        names.iter().all(|n| !n.starts_with('/') && !n.contains("..")),
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.as_str() == "dist/sub/b.sh").count(),
        1,
        "stored once"
    );

    let first = fs::read(s.archive()).expect("read");
    s.pack(&["dist", "README.md"]).expect("pack again");
    assert_eq!(fs::read(s.archive()).expect("read"), first, "same files, same bytes");
}

#[test]
fn pack_of_dot_takes_the_whole_workspace() {
    let s = Sandbox::new();
    s.write("workspace/x/y.txt", "y");
    s.pack(&["."]).expect("pack");
    assert_eq!(entry_names(&s.archive()), ["x", "x/y.txt"]);
}

#[tokio::test]
async fn async_wrappers_pack_and_unpack() {
    let s = Sandbox::new();
    s.write("workspace/target/debug/app", "binary");
    let packed = pack_async(s.path("workspace"), vec!["target".into()], s.archive())
        .await
        .expect("pack");
    assert_eq!(packed.files, 1);
    let unpacked = unpack_async(s.archive(), s.path("dest")).await.expect("unpack");
    assert_eq!(unpacked.files, 1);
    assert_eq!(
        fs::read_to_string(s.path("dest/target/debug/app")).expect("read"),
        "binary"
    );
}

#[test]
fn unpack_replaces_an_existing_symlink_instead_of_writing_through_it() {
    let s = Sandbox::new();
    s.write("workspace/config.txt", "new content");
    s.pack(&["config.txt"]).expect("pack");
    fs::create_dir_all(s.path("dest")).expect("mkdir");
    symlink(s.path("outside/secret.txt"), s.path("dest/config.txt")).expect("symlink");

    s.unpack().expect("unpack");
    let dest_file = s.path("dest/config.txt");
    assert!(!fs::symlink_metadata(&dest_file).expect("meta").is_symlink());
    assert_eq!(fs::read_to_string(dest_file).expect("read"), "new content");
    s.assert_outside_untouched();
}

// --- pack refusals ----------------------------------------------------------------------------

#[test]
fn pack_refuses_a_path_with_dot_dot() {
    let s = Sandbox::new();
    let (path, within, reason, message) = escape_of(s.pack(&["../etc"]));
    assert_eq!(
        (path.as_str(), within, reason.as_str()),
        ("../etc", Within::Workspace, "it contains \"..\"")
    );
    assert_eq!(message, r#"path "../etc" escapes the workspace: it contains "..""#);
    assert!(!s.archive().exists());
    assert!(names_in(&s.path("out")).is_empty(), "no temporary file is left");
}

#[test]
fn pack_refuses_an_absolute_path() {
    let s = Sandbox::new();
    let outside = s.path("outside").display().to_string();
    let (path, _, reason, _) = escape_of(s.pack(&[outside.as_str()]));
    assert_eq!(path, outside);
    assert_eq!(reason, "it is an absolute path");
    assert!(!s.archive().exists());
}

#[test]
fn pack_refuses_a_symlink_inside_a_directory_that_points_outside() {
    let s = Sandbox::new();
    s.write("workspace/dist/ok.txt", "ok");
    symlink(s.path("outside"), s.path("workspace/dist/evil")).expect("symlink");
    let (path, within, reason, message) = escape_of(s.pack(&["dist"]));
    assert_eq!((path.as_str(), within), ("dist/evil", Within::Workspace));
    assert!(reason.contains("outside the workspace"), "{reason}");
    assert!(
        message.starts_with(r#"path "dist/evil" escapes the workspace: it is a symlink to"#),
        "{message}"
    );
    assert!(!s.archive().exists());
}

#[test]
fn pack_refuses_a_relative_symlink_that_climbs_out() {
    let s = Sandbox::new();
    s.write("workspace/dist/ok.txt", "ok");
    symlink("../../outside/secret.txt", s.path("workspace/dist/up")).expect("symlink");
    let (path, _, _, _) = escape_of(s.pack(&["dist"]));
    assert_eq!(path, "dist/up");
}

#[test]
fn pack_refuses_a_named_symlink_that_points_outside() {
    let s = Sandbox::new();
    symlink(s.path("outside"), s.path("workspace/cache")).expect("symlink");
    let (path, _, _, _) = escape_of(s.pack(&["cache"]));
    assert_eq!(path, "cache");
    // Naming something below the link is refused too: it resolves outside.
    let (path, _, reason, _) = escape_of(s.pack(&["cache/secret.txt"]));
    assert_eq!(path, "cache/secret.txt");
    assert!(reason.contains("through a symlink"), "{reason}");
    assert!(!s.archive().exists());
}

#[test]
fn pack_reports_a_missing_path() {
    let s = Sandbox::new();
    match s.pack(&["no-such-dir"]) {
        Err(error @ ArchiveError::Missing { .. }) => {
            assert_eq!(
                error.to_string(),
                r#"path "no-such-dir" does not exist in the workspace"#
            )
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!s.archive().exists());
}

// --- unpack refusals --------------------------------------------------------------------------

#[test]
fn unpack_refuses_an_entry_with_dot_dot() {
    let s = Sandbox::new();
    write_raw_archive(
        &s.archive(),
        &[Raw {
            data: b"pwned",
            ..raw("../outside/x", EntryType::Regular)
        }],
    );
    let (path, within, reason, message) = escape_of(s.unpack());
    assert_eq!(
        (path.as_str(), within, reason.as_str()),
        ("../outside/x", Within::Destination, "it contains \"..\"")
    );
    assert_eq!(
        message,
        r#"archive entry "../outside/x" escapes the destination directory: it contains "..""#
    );
    assert!(names_in(&s.path("dest")).is_empty());
    s.assert_outside_untouched();
}

#[test]
fn unpack_refuses_an_absolute_entry() {
    let s = Sandbox::new();
    let target = s.path("outside/abs.txt").display().to_string();
    write_raw_archive(
        &s.archive(),
        &[Raw {
            data: b"pwned",
            ..raw(&target, EntryType::Regular)
        }],
    );
    let (path, _, reason, _) = escape_of(s.unpack());
    assert_eq!(path, target);
    assert_eq!(reason, "it is an absolute path");
    s.assert_outside_untouched();
}

#[test]
fn unpack_refuses_a_symlink_to_etc_and_the_file_written_through_it() {
    let s = Sandbox::new();
    write_raw_archive(
        &s.archive(),
        &[
            Raw {
                link: "/etc",
                ..raw("etc-link", EntryType::Symlink)
            },
            Raw {
                data: b"root::0:0::/:/bin/sh\n",
                ..raw("etc-link/passwd", EntryType::Regular)
            },
        ],
    );
    let (path, _, reason, _) = escape_of(s.unpack());
    assert_eq!(path, "etc-link");
    assert_eq!(reason, r#"it is a symlink to "/etc", an absolute path"#);
    assert!(names_in(&s.path("dest")).is_empty());
}

#[test]
fn unpack_refuses_a_relative_symlink_that_climbs_out() {
    let s = Sandbox::new();
    write_raw_archive(
        &s.archive(),
        &[
            Raw {
                link: "../../outside",
                ..raw("a/link", EntryType::Symlink)
            },
            Raw {
                data: b"pwned",
                ..raw("a/link/x", EntryType::Regular)
            },
        ],
    );
    let (path, _, reason, _) = escape_of(s.unpack());
    assert_eq!(path, "a/link");
    assert!(reason.contains("outside the destination directory"), "{reason}");
    s.assert_outside_untouched();
}

#[test]
fn unpack_refuses_a_symlink_that_escapes_through_another_symlink() {
    // `here` -> `.` is harmless, but `here/..` is then the destination's parent.
    let s = Sandbox::new();
    write_raw_archive(
        &s.archive(),
        &[
            Raw {
                link: ".",
                ..raw("here", EntryType::Symlink)
            },
            Raw {
                link: "here/../outside",
                ..raw("sneaky", EntryType::Symlink)
            },
            Raw {
                data: b"pwned",
                ..raw("sneaky/x", EntryType::Regular)
            },
        ],
    );
    let (path, _, _, _) = escape_of(s.unpack());
    assert_eq!(path, "sneaky");
    assert!(!s.path("dest/sneaky").exists());
    s.assert_outside_untouched();
}

#[test]
fn unpack_refuses_to_write_through_an_existing_symlink_that_points_outside() {
    let s = Sandbox::new();
    fs::create_dir_all(s.path("dest")).expect("mkdir");
    symlink(s.path("outside"), s.path("dest/cache")).expect("symlink");
    write_raw_archive(
        &s.archive(),
        &[Raw {
            data: b"pwned",
            ..raw("cache/x", EntryType::Regular)
        }],
    );
    let (path, _, reason, _) = escape_of(s.unpack());
    assert_eq!(path, "cache/x");
    assert_eq!(
        reason,
        r#"it would be written through the symlink "cache", which points outside the destination directory"#
    );
    s.assert_outside_untouched();
}

#[test]
fn unpack_refuses_hard_links_that_leave_the_destination() {
    for link in ["../outside/secret.txt", "/etc/passwd"] {
        let s = Sandbox::new();
        write_raw_archive(
            &s.archive(),
            &[Raw {
                link,
                ..raw("hard", EntryType::Link)
            }],
        );
        let (path, _, reason, _) = escape_of(s.unpack());
        assert_eq!(path, "hard");
        assert!(reason.starts_with("it is a hard link to"), "{reason}");
        assert!(!s.path("dest/hard").exists());
        s.assert_outside_untouched();
    }
}

#[test]
fn unpack_accepts_a_hard_link_to_a_file_unpacked_before_it() {
    let s = Sandbox::new();
    write_raw_archive(
        &s.archive(),
        &[
            Raw {
                data: b"shared",
                ..raw("dir/original", EntryType::Regular)
            },
            Raw {
                link: "dir/original",
                ..raw("copy", EntryType::Link)
            },
        ],
    );
    let summary = s.unpack().expect("unpack");
    assert_eq!(summary.files, 2);
    assert_eq!(fs::read_to_string(s.path("dest/copy")).expect("read"), "shared");
}

#[test]
fn unpack_refuses_devices_and_fifos() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "FIFO"),
    ] {
        let s = Sandbox::new();
        write_raw_archive(&s.archive(), &[raw("dev/thing", kind)]);
        match s.unpack() {
            Err(error @ ArchiveError::Unsupported { .. }) => assert_eq!(
                error.to_string(),
                format!(r#"archive entry "dev/thing" is a {name}; only files, directories and links are unpacked"#)
            ),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        assert!(!s.path("dest/dev/thing").exists());
    }
}

#[test]
fn unpack_of_a_damaged_archive_is_an_io_error() {
    let s = Sandbox::new();
    fs::write(s.archive(), b"\x1f\x8b\x08\x00 definitely not gzip").expect("write");
    assert!(matches!(s.unpack(), Err(ArchiveError::Io { .. })));
}
