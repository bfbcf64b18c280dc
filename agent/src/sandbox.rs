//! Task sandboxes: id checks and directory layout (`work_dir/sandboxes/<framework>/<task>/`).

use std::path::{Path, PathBuf};

/// Checks that an id can be used as one path component.
///
/// Refused: empty, `.` or `..`, anything containing `/`, `..` or NUL, or longer than 255 bytes.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{kind} id is empty"));
    }
    if id.contains('/') {
        return Err(format!("{kind} id {id:?} contains '/'"));
    }
    if id.contains('\0') {
        return Err(format!("{kind} id {id:?} contains a NUL byte"));
    }
    if id.contains("..") || id == "." {
        return Err(format!("{kind} id {id:?} contains '..' or is '.'"));
    }
    if id.len() > 255 {
        return Err(format!("{kind} id is longer than 255 bytes"));
    }
    Ok(())
}

/// The sandbox directory of a task (ids must have passed [`validate_id`]).
pub fn sandbox_dir(work_dir: &Path, framework_id: &str, task_id: &str) -> PathBuf {
    work_dir.join("sandboxes").join(framework_id).join(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_table() {
        let table = [
            ("task-1", true),
            ("web.0f3a", true),
            ("a_b-c.d", true),
            ("x..", false),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("/abs", false),
            ("../up", false),
            ("nul\0byte", false),
            ("ok with spaces", true),
        ];
        for (id, ok) in table {
            assert_eq!(validate_id("task", id).is_ok(), ok, "{id:?}");
        }
        assert!(validate_id("task", &"a".repeat(256)).is_err());
        assert!(validate_id("task", &"a".repeat(255)).is_ok());
        let err = validate_id("framework", "a/b").err().unwrap_or_default();
        assert!(err.contains("framework id"), "{err}");
    }

    #[test]
    fn layout() {
        let p = sandbox_dir(Path::new("/w"), "fw", "t1");
        assert_eq!(p, PathBuf::from("/w/sandboxes/fw/t1"));
    }
}
