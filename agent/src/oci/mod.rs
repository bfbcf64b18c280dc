//! Running tasks in containers with a real OCI runtime (`crun` or `runc`).
//!
//! - [`runtime`]: finding the runtime (given path, else `crun`, `runc` on `PATH`) and driving
//!   it: `run --bundle DIR ID`, `state`, `kill`, `delete`.
//! - [`spec`]: the OCI runtime spec for a task (rootfs, args, env, cwd, user, the sandbox at
//!   `/mnt/mesos/sandbox`, volumes, PID/mount/UTS/IPC namespaces, host network, cgroup limits)
//!   and writing the bundle.
//! - [`plan`]: a task in an image → a [`ContainerSpec`] (entrypoint/cmd, env, cwd, user).
//! - [`rootfs`]: the task's writable layer (overlayfs, else a copy).
//! - [`error`]: the error type, [`OciError`].

pub mod error;
pub mod plan;
pub mod rootfs;
pub mod runtime;
pub mod spec;

pub use error::OciError;
pub use plan::{TaskContainer, container_spec};
pub use rootfs::{RootfsKind, TaskRootfs, prepare_rootfs, release_rootfs};
pub use runtime::{ContainerState, OciRuntime, RuntimeKind, detect, detect_all};
pub use spec::{BindMount, ContainerSpec, SANDBOX_PATH, build_spec, write_bundle};
