//! Limits on what the master accepts from the outside (issue 18, item 6). A request over a limit
//! is refused with [`MasterError::InvalidField`](super::MasterError::InvalidField) naming the
//! field and the limit; nothing in it is applied.

/// Longest id (framework, agent, task, offer) accepted, in bytes.
pub const MAX_ID_LEN: usize = 255;

/// Longest name accepted, in bytes: framework, task and resource names, hostnames, users,
/// principals, attribute names.
pub const MAX_NAME_LEN: usize = 256;

/// Longest path accepted (an agent's sandboxes directory), in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Most labels on a framework or a task.
pub const MAX_LABELS: usize = 64;

/// Longest label key or value (and attribute value), in bytes.
pub const MAX_LABEL_LEN: usize = 1024;

/// Most attributes an agent may advertise.
pub const MAX_AGENT_ATTRIBUTES: usize = 256;

/// Most distinct resource names in one resource list (what an agent advertises, what a task
/// asks for).
pub const MAX_RESOURCE_NAMES: usize = 128;

/// Most entries in one resource list (names times roles and volumes).
pub const MAX_RESOURCE_ENTRIES: usize = 1024;

/// Most items in one resource's ranges or set.
pub const MAX_VALUE_ITEMS: usize = 1024;

/// Most roles a framework may subscribe with (and offer filters it may give).
pub const MAX_FRAMEWORK_ROLES: usize = 256;

/// Most roles one weights or quota call may set.
pub const MAX_ROLES_PER_CALL: usize = 1000;

/// Most roles (every node of the role tree, ancestors included) the allocator keeps; a weight or
/// quota for a new role beyond it is refused.
pub const MAX_ROLES: usize = 10_000;
