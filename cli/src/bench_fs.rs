//! What file system a benchmark's work directory is on, so its figures can be read: on ext4
//! without a journal every file create skips the inodes deleted in the last minutes, which
//! makes the agent's cost depend on the deletes of earlier runs (docs/launch-performance.md).

use std::path::Path;

/// The mount holding `path` in a `/proc/self/mounts` text: (device, mount point, type), the
/// longest mount point that is a prefix of `path` (which should be absolute and canonical).
pub fn mount_of<'a>(mounts: &'a str, path: &Path) -> Option<(&'a str, &'a str, &'a str)> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, at, _)| path.starts_with(at))
        .max_by_key(|(_, at, _)| at.len())
}

/// A line describing the file system of `dir`, with a warning for ext4 without a journal;
/// `None` when it cannot be told.
pub fn describe(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let (dev, at, fs) = mount_of(&mounts, &dir)?;
    let mut line = format!("work dir {} on {fs} ({dev} at {at})", dir.display());
    if fs == "ext4" {
        let name = Path::new(dev).file_name()?.to_string_lossy().into_owned();
        let journal = std::fs::read_to_string(format!("/sys/fs/ext4/{name}/journal_task")).ok();
        if journal.is_some_and(|j| j.trim() == "<none>") {
            line.push_str(
                ", without a journal: each file create skips the inodes deleted in the last \
                 minutes, so runs close together slow each other down",
            );
        }
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
proc /proc proc rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
/dev/loop0 /mnt/ext4j ext4 rw,relatime 0 0
";

    #[test]
    fn the_longest_mount_point_holding_the_path_wins() {
        let cases = [
            ("/tmp/proffer-bench-1", Some(("/dev/vda", "/", "ext4"))),
            ("/mnt/ext4j/run", Some(("/dev/loop0", "/mnt/ext4j", "ext4"))),
            ("/mnt/ext4jx", Some(("/dev/vda", "/", "ext4"))),
            ("/dev/shm/x", Some(("tmpfs", "/dev/shm", "tmpfs"))),
        ];
        for (path, want) in cases {
            assert_eq!(mount_of(MOUNTS, Path::new(path)), want, "{path}");
        }
        assert_eq!(mount_of("", Path::new("/x")), None);
        assert_eq!(mount_of("garbage\n", Path::new("/x")), None);
    }

    #[test]
    fn this_machines_temporary_directory_is_described() {
        let dir = std::env::temp_dir();
        let line = describe(&dir).expect("a description of the temporary directory");
        assert!(line.starts_with("work dir "), "{line}");
    }
}
