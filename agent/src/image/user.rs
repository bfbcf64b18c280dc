//! Resolving an image config's `User` (`uid`, `uid:gid`, `name`, `name:group`, …) to numeric
//! ids with the image's own `/etc/passwd` and `/etc/group`, as Docker does.

use std::fs;
use std::path::Path;

use super::error::ImageError;

fn unknown(user: &str, reason: String) -> ImageError {
    ImageError::UnknownUser {
        user: user.to_string(),
        reason,
    }
}

/// Finds `name` (a name or a numeric id) in a passwd/group style file: returns fields 2 and 3
/// (id and, for passwd, the primary group) of the first matching line.
fn lookup(file: &str, name: &str) -> Option<(u32, Option<u32>)> {
    file.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let id = fields.get(2)?.parse::<u32>().ok()?;
        let matches = fields.first() == Some(&name) || name.parse::<u32>().ok() == Some(id);
        matches.then(|| (id, fields.get(3).and_then(|g| g.parse().ok())))
    })
}

/// Resolves `user` against the text of `/etc/passwd` and `/etc/group`. An empty user is root.
/// A numeric uid need not exist in passwd (its group is then its passwd group, or 0); a name
/// must. The group, when given, is a gid or a name in `group`.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<(u32, u32), ImageError> {
    let (name, grp) = match user.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (user, None),
    };
    let (uid, primary) = if name.is_empty() {
        (0, Some(0))
    } else if let Ok(uid) = name.parse::<u32>() {
        (uid, lookup(passwd, name).and_then(|(_, g)| g))
    } else {
        let (uid, gid) = lookup(passwd, name)
            .ok_or_else(|| unknown(user, format!("no user {name:?} in the image's /etc/passwd")))?;
        (uid, gid)
    };
    let gid = match grp {
        None | Some("") => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(group, g).map(|(gid, _)| gid).ok_or_else(|| {
                unknown(user, format!("no group {g:?} in the image's /etc/group"))
            })?,
        },
    };
    Ok((uid, gid))
}

/// Reads `rootfs/etc/<name>` if it is a regular file reached without symlinks (a symlink in an
/// image could point at a host file); empty otherwise.
fn read_image_file(rootfs: &Path, name: &str) -> String {
    let etc = rootfs.join("etc");
    let path = etc.join(name);
    let regular = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink());
    if regular(&etc) && regular(&path) {
        fs::read_to_string(&path).unwrap_or_default()
    } else {
        String::new()
    }
}

/// Resolves `user` (root when `None`) with the image rootfs's `/etc/passwd` and `/etc/group`.
pub fn resolve_in(rootfs: &Path, user: Option<&str>) -> Result<(u32, u32), ImageError> {
    let Some(user) = user else { return Ok((0, 0)) };
    resolve(
        user,
        &read_image_file(rootfs, "passwd"),
        &read_image_file(rootfs, "group"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1001:\n";

    #[test]
    fn users_resolve_like_docker() -> Result<(), ImageError> {
        assert_eq!(resolve("", PASSWD, GROUP)?, (0, 0));
        assert_eq!(resolve("app", PASSWD, GROUP)?, (1000, 1001));
        assert_eq!(resolve("1000", PASSWD, GROUP)?, (1000, 1001));
        assert_eq!(resolve("4242", PASSWD, GROUP)?, (4242, 0));
        assert_eq!(resolve("app:staff", PASSWD, GROUP)?, (1000, 50));
        assert_eq!(resolve("nobody:7", PASSWD, GROUP)?, (65534, 7));
        Ok(())
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let e = resolve("ghost", PASSWD, GROUP)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
        let e = resolve("app:nogroup", PASSWD, GROUP)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nogroup") && e.contains("/etc/group"), "{e}");
    }

    #[test]
    fn image_files_reached_through_symlinks_are_ignored() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join("etc"))?;
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("etc/passwd"))?;
        assert!(
            resolve_in(tmp.path(), Some("root")).is_err(),
            "the host's passwd was read"
        );
        std::fs::remove_file(tmp.path().join("etc/passwd"))?;
        std::fs::write(tmp.path().join("etc/passwd"), PASSWD)?;
        assert_eq!(resolve_in(tmp.path(), Some("app"))?, (1000, 1001));
        Ok(())
    }
}
