//! Resource auto-detection, as the Mesos agent does it.
//!
//! - `cpus`: the cores available to this process;
//! - `mem`: `MemTotal` − 1 GiB, or half of it when the machine has less than 2 GiB;
//! - `disk`: size of the file system holding `work_dir` − 5 GiB, or half when below 10 GiB;
//! - `ports`: `[31000-32000]`.
//!
//! Memory and disk are in MB.

use std::path::Path;

use proffer_proto::Resources;

use crate::AgentError;

/// MB kept back for the system when memory is plentiful (1 GiB).
const MEM_RESERVED_MB: u64 = 1024;
/// MB kept back on disk when it is plentiful (5 GiB).
const DISK_RESERVED_MB: u64 = 5 * 1024;
/// The default port range advertised.
const DEFAULT_PORTS: &str = "[31000-32000]";

/// Detects the resources of this machine; `work_dir` selects the file system for `disk`.
pub fn detect_resources(work_dir: &Path) -> Result<Resources, AgentError> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| AgentError::io("reading", "/proc/meminfo", e))?;
    let mem_total_mb = parse_mem_total_kb(&meminfo)
        .ok_or_else(|| AgentError::Resources("no MemTotal line in /proc/meminfo".into()))?
        / 1024;
    let disk_total_mb = disk_total_mb(work_dir)?;
    let mem = keep_back(mem_total_mb, MEM_RESERVED_MB);
    let disk = keep_back(disk_total_mb, DISK_RESERVED_MB);
    let text = format!("cpus:{cpus};mem:{mem};disk:{disk};ports:{DEFAULT_PORTS}");
    Resources::parse(&text).map_err(|e| AgentError::Resources(format!("{text}: {e}")))
}

/// `total − reserved` when `total ≥ 2 × reserved`, else half of `total` (the Mesos rule).
pub(crate) fn keep_back(total: u64, reserved: u64) -> u64 {
    if total >= 2 * reserved {
        total - reserved
    } else {
        total / 2
    }
}

/// The `MemTotal` value of `/proc/meminfo` text, in kB.
pub(crate) fn parse_mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Total size in MB of the file system holding `dir` (its nearest existing ancestor).
fn disk_total_mb(dir: &Path) -> Result<u64, AgentError> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    let st = nix::sys::statvfs::statvfs(existing)
        .map_err(|e| AgentError::io("statvfs", existing, std::io::Error::from(e)))?;
    #[allow(clippy::useless_conversion)]
    let bytes = u64::from(st.blocks()).saturating_mul(u64::from(st.fragment_size()));
    Ok(bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_back_rule() {
        assert_eq!(keep_back(8192, 1024), 7168);
        assert_eq!(keep_back(2048, 1024), 1024);
        assert_eq!(keep_back(2047, 1024), 1023);
        assert_eq!(keep_back(1000, 1024), 500);
        assert_eq!(keep_back(0, 1024), 0);
        assert_eq!(keep_back(102_400, 5120), 97_280);
        assert_eq!(keep_back(8000, 5120), 4000);
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemFree:  100 kB\nMemTotal:       16318412 kB\nBuffers: 1 kB\n";
        assert_eq!(parse_mem_total_kb(text), Some(16_318_412));
        assert_eq!(parse_mem_total_kb("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn detection_sanity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = detect_resources(&dir.path().join("not-yet-created")).expect("detect");
        assert!(r.cpus_milli() >= 1000, "{r}");
        assert!(r.mem_milli() > 0, "{r}");
        assert!(r.scalar_milli("disk") > 0, "{r}");
        let ports = r.ranges("ports");
        assert_eq!(ports.count(), 1001, "{r}");
        assert_eq!(ports.ranges(), &[(31000, 32000)]);
    }
}
