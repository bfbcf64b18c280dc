//! Maps core errors onto gRPC statuses.

use tonic::{Code, Status};

use super::core_task::CoreGone;
use crate::core::{ErrorKind, MasterError};

/// The gRPC code for an error class.
pub(crate) fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unimplemented => Code::Unimplemented,
    }
}

/// The status for a core error, carrying the error's text.
pub(crate) fn from_master(err: &MasterError) -> Status {
    Status::new(code(err.kind()), err.to_string())
}

/// The status returned while the server shuts down.
pub(crate) fn unavailable(err: CoreGone) -> Status {
    Status::unavailable(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_to_codes_with_the_error_text() {
        let err = MasterError::NotSubscribed {
            framework_id: "fw-1".into(),
        };
        let status = from_master(&err);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "framework `fw-1` is not subscribed");
        let err = MasterError::UnknownOffer {
            offer_id: "o-1".into(),
        };
        assert_eq!(from_master(&err).code(), Code::NotFound);
        let err = MasterError::InvalidField {
            field: "name".into(),
            reason: "empty".into(),
        };
        assert_eq!(from_master(&err).code(), Code::InvalidArgument);
        let err = MasterError::FrameworkRemoved {
            framework_id: "fw".into(),
        };
        assert_eq!(from_master(&err).code(), Code::FailedPrecondition);
        let err = MasterError::Unsupported {
            what: "RESERVE".into(),
        };
        assert_eq!(from_master(&err).code(), Code::Unimplemented);
        assert_eq!(unavailable(CoreGone).code(), Code::Unavailable);
    }
}
