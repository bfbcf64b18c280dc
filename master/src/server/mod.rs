//! Server shell (in progress).
