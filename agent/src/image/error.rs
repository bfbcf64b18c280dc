//! The image store's error type: every variant names the file, layer or entry involved.

use std::path::PathBuf;

/// What can go wrong reading, verifying, unpacking or collecting images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file-system operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What the store was doing, e.g. "reading blob".
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The image source is neither an OCI image layout nor a `docker save` archive.
    #[error("image {path}: {reason}")]
    BadImage {
        /// The image source given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document of the image (index, manifest, config) could not be parsed.
    #[error("image {what} {path}: {reason}")]
    BadDocument {
        /// Which document, e.g. "manifest".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("digest mismatch for {path}: expected sha256:{expected}, got sha256:{actual}")]
    DigestMismatch {
        /// The blob or layer file.
        path: PathBuf,
        /// The digest the image declares.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A digest is not `sha256:` followed by 64 lowercase hex digits.
    #[error("unsupported or malformed digest {digest:?} in {path}")]
    BadDigest {
        /// The digest text.
        digest: String,
        /// Where it was found.
        path: PathBuf,
    },
    /// A layer entry is refused (path traversal, symlink escape, unsupported type).
    #[error("layer {layer}: entry {entry:?} refused: {reason}")]
    UnsafeEntry {
        /// The layer (digest or file).
        layer: String,
        /// The entry's path as written in the tarball.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// The image's `User` names a user or group the image does not have.
    #[error("image user {user:?}: {reason}")]
    UnknownUser {
        /// The `User` value.
        user: String,
        /// What is missing.
        reason: String,
    },
    /// A layer tarball could not be read.
    #[error("layer {layer}: {source}")]
    Tar {
        /// The layer (digest or file).
        layer: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Builds an [`ImageError::Io`].
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io {
            context,
            path,
            source,
        }
    }
}
