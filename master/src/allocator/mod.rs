//! Allocator (in progress).
