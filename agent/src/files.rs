//! Safe opening of sandbox files for the agent's HTTP file API.
//!
//! A request names a path either relative to the work directory and inside `sandboxes/`
//! (e.g. `sandboxes/<framework>/<task>/stdout`) or as an absolute path inside
//! `WORK_DIR/sandboxes`. Tasks own their sandboxes and can change them while the agent looks,
//! so nothing here trusts a path twice:
//!
//! - the sandboxes directory is opened once per request, and everything below it is opened
//!   relative to that descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`: a
//!   symlink at any component is refused (even one that stays inside the sandbox), and the
//!   kernel guarantees the result is beneath the sandboxes (no check-then-open race). Where
//!   `openat2` is missing (`ENOSYS`) the path is walked one component at a time with
//!   `O_NOFOLLOW`;
//! - the path is first opened with `O_PATH` (no side effects, never blocks) and its type read
//!   from that handle: only regular files and directories go on. FIFOs, sockets and devices
//!   are refused without ever being opened for reading, so a task's writer blocked on its own
//!   FIFO is not woken;
//! - the file is then opened again, `O_RDONLY | O_NONBLOCK | O_NOCTTY`, and its type checked
//!   again on that handle (fstat), so a FIFO swapped in between is still refused and an open
//!   can never block;
//! - reads (`pread`) and directory listings go through the opened handle.
//!
//! Everything here is blocking: callers run it on a blocking thread.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;
use serde::Serialize;

/// The directory of `work_dir` holding every sandbox.
pub const SANDBOXES: &str = "sandboxes";

/// Why a sandbox path was not opened.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The path has a `..` component.
    #[error("'..' is not allowed: {path:?}")]
    ParentDir {
        /// The requested path.
        path: String,
    },
    /// The path is not inside `WORK_DIR/sandboxes`.
    #[error("outside the sandboxes: {path:?}")]
    Outside {
        /// The requested path.
        path: String,
    },
    /// The path is unusable as given (e.g. it contains a NUL byte).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The requested path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A component of the path is a symlink (symlinks are never followed).
    #[error("{path:?} is or passes through a symlink; symlinks inside sandboxes are not followed")]
    Symlink {
        /// The requested path.
        path: String,
    },
    /// Nothing at that path.
    #[error("{path:?}: no such file or directory")]
    NotFound {
        /// The requested path.
        path: String,
    },
    /// `WORK_DIR/sandboxes` cannot be opened (typically: no task has run yet).
    #[error("no sandboxes yet ({root}): {source}")]
    NoSandboxes {
        /// `WORK_DIR/sandboxes`.
        root: PathBuf,
        /// Why opening it failed.
        source: io::Error,
    },
    /// The agent may not open the path.
    #[error("{path:?}: permission denied")]
    PermissionDenied {
        /// The requested path.
        path: String,
    },
    /// The path is neither a regular file nor a directory.
    #[error("{path:?} is a {kind}; only regular files and directories are served")]
    Unsupported {
        /// The requested path.
        path: String,
        /// What it is.
        kind: Kind,
    },
    /// A file was asked for and the path is a directory.
    #[error("{path:?} is a directory, not a regular file")]
    IsDirectory {
        /// The requested path.
        path: String,
    },
    /// A directory was asked for and the path is a regular file.
    #[error("{path:?} is a regular file, not a directory")]
    NotDirectory {
        /// The requested path.
        path: String,
    },
    /// Any other failure of a system call.
    #[error("{path:?}: {op}: {source}")]
    Io {
        /// The requested path.
        path: String,
        /// The operation that failed (`open`, `fstat`, `read`, …).
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// The type of a file, as its mode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// Anything else.
    Unknown,
}

impl Kind {
    fn of(st: &Stat) -> Kind {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            _ => Kind::Unknown,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Fifo => "FIFO (named pipe)",
            Kind::Socket => "socket",
            Kind::CharDevice => "character device",
            Kind::BlockDevice => "block device",
            Kind::Unknown => "file of unknown type",
        })
    }
}

/// A regular file opened inside the sandboxes, with its size at open time.
#[derive(Debug)]
pub struct SandboxFile {
    file: File,
    size: u64,
    name: String,
}

impl SandboxFile {
    /// The size when the file was opened (fstat of the handle).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The last component of the requested path (lossy UTF-8).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads up to `length` bytes at `offset` through the handle (`pread`), never past the
    /// size seen at open time; fewer bytes only at that end (or if the file shrank).
    pub fn read_at(&self, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let want = length.min(self.size.saturating_sub(offset));
        let mut buf = vec![0; usize::try_from(want).unwrap_or(usize::MAX)];
        let mut filled = 0;
        while filled < buf.len() {
            let at = offset + filled as u64;
            match self.file.read_at(&mut buf[filled..], at) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }
}

/// One entry of a directory listing (its own type, symlinks not followed).
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    /// The entry's name (lossy UTF-8).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Its size in bytes (of the link itself for a symlink).
    pub size: u64,
    /// Its modification time, seconds since the epoch.
    pub mtime: u64,
}

/// Opens the regular file `requested` (see the module docs) for reading.
pub fn open_file(work_dir: &Path, requested: &str) -> Result<SandboxFile, FilesError> {
    let rel = beneath_sandboxes(work_dir, requested)?;
    let (fd, st) = open_checked(work_dir, &rel, requested, Kind::File)?;
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(SandboxFile {
        file: File::from(fd),
        size: u64::try_from(st.st_size).unwrap_or(0),
        name,
    })
}

/// Lists the directory `requested` (see the module docs) through its opened handle, sorted
/// by name, without `.` and `..`.
pub fn list_dir(work_dir: &Path, requested: &str) -> Result<Vec<EntryInfo>, FilesError> {
    let rel = beneath_sandboxes(work_dir, requested)?;
    let (fd, _) = open_checked(work_dir, &rel, requested, Kind::Dir)?;
    let io_err = |op, source| FilesError::Io {
        path: requested.to_string(),
        op,
        source,
    };
    let dir = Dir::new(fd).map_err(|e| io_err("opendir", e.into()))?;
    let dir_fd = dir.fd().map_err(|e| io_err("dirfd", e.into()))?;
    // A second handle to the same directory for the per-entry stats: `Dir` keeps its own.
    let stat_fd = dir_fd.try_clone_to_owned().map_err(|e| io_err("dup", e))?;
    let mut entries = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| io_err("readdir", e.into()))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        // Gone between readdir and stat: skip it, as a listing a moment later would.
        let Ok(st) = rustix::fs::statat(&stat_fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        entries.push(EntryInfo {
            name: OsStr::from_bytes(name).to_string_lossy().into_owned(),
            kind: Kind::of(&st),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: u64::try_from(st.st_mtime).unwrap_or(0),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// The part of `requested` below `WORK_DIR/sandboxes` (`.` for the sandboxes directory
/// itself), made only of normal components; refuses `..`, NUL bytes and anything outside.
pub fn beneath_sandboxes(work_dir: &Path, requested: &str) -> Result<PathBuf, FilesError> {
    let path = requested.to_string();
    if requested.contains('\0') {
        return Err(FilesError::InvalidPath {
            path,
            reason: "contains a NUL byte",
        });
    }
    let p = Path::new(requested);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(FilesError::ParentDir { path });
    }
    let rest = if p.is_absolute() {
        let root = work_dir.join(SANDBOXES);
        match p.strip_prefix(&root) {
            Ok(rest) => rest.to_path_buf(),
            // The agent's own root may be spelt differently (relative work dir, symlinked
            // /tmp): compare with its canonical form. Only the trusted root is canonicalized.
            Err(_) => std::fs::canonicalize(&root)
                .ok()
                .and_then(|c| p.strip_prefix(c).ok().map(Path::to_path_buf))
                .ok_or(FilesError::Outside { path })?,
        }
    } else {
        let mut normal = p.components().filter(|c| !matches!(c, Component::CurDir));
        if normal.next() != Some(Component::Normal(OsStr::new(SANDBOXES))) {
            return Err(FilesError::Outside { path });
        }
        normal.collect()
    };
    let rel: PathBuf = rest
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok(if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    })
}

/// Opens `rel` below the sandboxes as `want` (a regular file or a directory): probe with
/// `O_PATH`, check the type, open for reading without blocking, check the type again.
fn open_checked(
    work_dir: &Path,
    rel: &Path,
    requested: &str,
    want: Kind,
) -> Result<(OwnedFd, Stat), FilesError> {
    let root_path = work_dir.join(SANDBOXES);
    let root = rustix::fs::open(
        &root_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FilesError::NoSandboxes {
        root: root_path.clone(),
        source: e.into(),
    })?;
    let probe = open_beneath(root.as_fd(), rel, OFlags::PATH)
        .map_err(|e| open_error(requested, "open", e))?;
    check_kind(&probe, requested, want)?;
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
    if want == Kind::Dir {
        flags |= OFlags::DIRECTORY;
    }
    let fd =
        open_beneath(root.as_fd(), rel, flags).map_err(|e| open_error(requested, "open", e))?;
    let st = check_kind(&fd, requested, want)?;
    Ok((fd, st))
}

/// fstat of the handle; `Ok` only when it is of the wanted kind.
fn check_kind(fd: &OwnedFd, requested: &str, want: Kind) -> Result<Stat, FilesError> {
    let st = rustix::fs::fstat(fd).map_err(|e| open_error(requested, "fstat", e))?;
    let path = requested.to_string();
    match (Kind::of(&st), want) {
        (k, w) if k == w => Ok(st),
        (Kind::Dir, _) => Err(FilesError::IsDirectory { path }),
        (Kind::File, _) => Err(FilesError::NotDirectory { path }),
        (Kind::Symlink, _) => Err(FilesError::Symlink { path }),
        (kind, _) => Err(FilesError::Unsupported { path, kind }),
    }
}

fn open_error(requested: &str, op: &'static str, e: Errno) -> FilesError {
    let path = requested.to_string();
    match e {
        Errno::LOOP => FilesError::Symlink { path },
        Errno::XDEV => FilesError::Outside { path },
        Errno::NOENT | Errno::NOTDIR => FilesError::NotFound { path },
        Errno::ACCESS | Errno::PERM => FilesError::PermissionDenied { path },
        e => FilesError::Io {
            path,
            op,
            source: e.into(),
        },
    }
}

/// Whether `openat2` may be used; cleared the first time it answers `ENOSYS`.
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Opens `rel` (normal components only) below `root` without following any symlink and
/// without leaving `root`: `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, or a walk with
/// `O_NOFOLLOW` where `openat2` does not exist. A symlink anywhere → `ELOOP`.
fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    if OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        // EAGAIN: a concurrent rename during resolution; the kernel asks for a retry.
        for _ in 0..3 {
            match rustix::fs::openat2(root, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
                Err(Errno::AGAIN) => continue,
                Err(Errno::NOSYS) => {
                    OPENAT2.store(false, Ordering::Relaxed);
                    break;
                }
                r => return r,
            }
        }
        if OPENAT2.load(Ordering::Relaxed) {
            return Err(Errno::AGAIN);
        }
    }
    open_by_components(root, rel, flags)
}

/// The fallback of [`open_beneath`]: one `openat(O_NOFOLLOW)` per component, each directory
/// checked (fstat) not to be a symlink before the next step.
fn open_by_components(root: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut parts: Vec<OsString> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir => {}
            // Callers pass normal components only; anything else could leave `root`.
            _ => return Err(Errno::XDEV),
        }
    }
    // No O_DIRECTORY: with O_NOFOLLOW it would turn a symlink into ENOTDIR, not ELOOP.
    let step_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Some(last) = parts.pop() else {
        return rustix::fs::openat(root, ".", flags | OFlags::CLOEXEC, Mode::empty());
    };
    let mut dir = rustix::fs::openat(root, ".", step_flags, Mode::empty())?;
    for part in &parts {
        let next = rustix::fs::openat(&dir, part.as_os_str(), step_flags, Mode::empty())?;
        match FileType::from_raw_mode(rustix::fs::fstat(&next)?.st_mode) {
            FileType::Directory => dir = next,
            FileType::Symlink => return Err(Errno::LOOP),
            _ => return Err(Errno::NOTDIR),
        }
    }
    let fd = rustix::fs::openat(
        &dir,
        last.as_os_str(),
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // `O_PATH | O_NOFOLLOW` opens a symlink itself instead of failing.
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sb = dir.path().join("sandboxes/fw/t");
        std::fs::create_dir_all(sb.join("sub")).expect("mkdir");
        std::fs::write(sb.join("stdout"), "hello").expect("write");
        std::fs::write(sb.join("sub/x"), "x").expect("write");
        std::os::unix::fs::symlink("sub", sb.join("link")).expect("symlink");
        std::os::unix::fs::symlink("stdout", sb.join("flink")).expect("symlink");
        (dir, sb)
    }

    #[test]
    fn paths_map_below_the_sandboxes() {
        let w = Path::new("/w");
        let rel = |p: &str| beneath_sandboxes(w, p).map_err(|e| e.to_string());
        assert_eq!(rel("sandboxes/fw/t/x"), Ok(PathBuf::from("fw/t/x")));
        assert_eq!(rel("./sandboxes//fw/./t/"), Ok(PathBuf::from("fw/t")));
        assert_eq!(rel("/w/sandboxes/fw"), Ok(PathBuf::from("fw")));
        assert_eq!(rel("sandboxes"), Ok(PathBuf::from(".")));
        assert!(matches!(
            beneath_sandboxes(w, "sandboxes/../x"),
            Err(FilesError::ParentDir { .. })
        ));
        for outside in ["", "agent_id", "/w/agent_id", "/etc/passwd", "sandboxesx/a"] {
            assert!(
                matches!(
                    beneath_sandboxes(w, outside),
                    Err(FilesError::Outside { .. })
                ),
                "{outside:?}"
            );
        }
        assert!(matches!(
            beneath_sandboxes(w, "sandboxes/a\0b"),
            Err(FilesError::InvalidPath { .. })
        ));
    }

    #[test]
    fn files_dirs_and_symlinks() {
        let (dir, _) = sandbox();
        let w = dir.path();
        let f = open_file(w, "sandboxes/fw/t/stdout").expect("open");
        assert_eq!((f.size(), f.name()), (5, "stdout"));
        assert_eq!(f.read_at(1, 3).expect("read"), b"ell");
        assert_eq!(f.read_at(4, 100).expect("read"), b"o");
        assert_eq!(f.read_at(9, 100).expect("read"), b"");
        let names: Vec<(String, Kind)> = list_dir(w, "sandboxes/fw/t")
            .expect("list")
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        let expected = [
            ("flink", Kind::Symlink),
            ("link", Kind::Symlink),
            ("stdout", Kind::File),
            ("sub", Kind::Dir),
        ];
        let expected: Vec<(String, Kind)> =
            expected.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        assert_eq!(names, expected);
        for p in ["sandboxes/fw/t/link/x", "sandboxes/fw/t/flink"] {
            assert!(
                matches!(open_file(w, p), Err(FilesError::Symlink { .. })),
                "{p}"
            );
        }
        assert!(matches!(
            list_dir(w, "sandboxes/fw/t/link"),
            Err(FilesError::Symlink { .. })
        ));
        assert!(matches!(
            open_file(w, "sandboxes/fw/t/sub"),
            Err(FilesError::IsDirectory { .. })
        ));
        assert!(matches!(
            list_dir(w, "sandboxes/fw/t/stdout"),
            Err(FilesError::NotDirectory { .. })
        ));
        assert!(matches!(
            open_file(w, "sandboxes/fw/t/stdout/x"),
            Err(FilesError::NotFound { .. })
        ));
    }

    #[test]
    fn the_component_walk_refuses_symlinks_too() {
        let (dir, _) = sandbox();
        let root = rustix::fs::open(
            dir.path().join(SANDBOXES),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("root");
        let open = |p: &str| open_by_components(root.as_fd(), Path::new(p), OFlags::RDONLY);
        assert!(open("fw/t/stdout").is_ok());
        assert!(open("fw/t/sub/x").is_ok());
        assert!(open(".").is_ok());
        assert_eq!(open("fw/t/link/x").err(), Some(Errno::LOOP));
        assert_eq!(open("fw/t/flink").err(), Some(Errno::LOOP));
        let probe = |p: &str| open_by_components(root.as_fd(), Path::new(p), OFlags::PATH);
        assert_eq!(probe("fw/t/flink").err(), Some(Errno::LOOP));
        assert_eq!(probe("fw/t/link").err(), Some(Errno::LOOP));
        assert_eq!(open("fw/t/missing").err(), Some(Errno::NOENT));
        assert_eq!(open("fw/t/stdout/x").err(), Some(Errno::NOTDIR));
        assert_eq!(open("../x").err(), Some(Errno::XDEV));
    }

    #[test]
    fn fifos_and_sockets_are_refused_without_blocking() {
        let (dir, sb) = sandbox();
        let w = dir.path();
        nix::unistd::mkfifo(&sb.join("fifo"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let _sock = std::os::unix::net::UnixListener::bind(sb.join("sock")).expect("bind");
        let kind = |p: &str| match open_file(w, p) {
            Err(FilesError::Unsupported { kind, .. }) => Some(kind),
            _ => None,
        };
        assert_eq!(kind("sandboxes/fw/t/fifo"), Some(Kind::Fifo));
        assert_eq!(kind("sandboxes/fw/t/sock"), Some(Kind::Socket));
        let err = open_file(w, "sandboxes/fw/t/fifo")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "\"sandboxes/fw/t/fifo\" is a FIFO (named pipe); only regular files and \
                 directories are served"
            )
        );
    }
}
