//! The one mapping from component errors to HTTP status codes (and, for the distributed roles,
//! gRPC codes).
//!
//! Each component has its own error enum with variants a caller can act on; each implements
//! [`HasKind`], and only this module decides what a kind means on the wire.

use axum::http::StatusCode;

/// What a caller can do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; retrying it unchanged fails again.
    Invalid,
    /// No or bad tenant credentials.
    Unauthorized,
    /// The request body exceeds a size limit.
    TooLarge,
    /// A limit was hit; retry later.
    RateLimited,
    /// Not there.
    NotFound,
    /// A dependency or this instance cannot serve now (starting, stopping, overloaded); retry.
    Unavailable,
    /// The request ran out of time.
    Timeout,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorKind {
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed later.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// The gRPC status code of this kind, for errors crossing between processes.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorKind::Invalid => tonic::Code::InvalidArgument,
            ErrorKind::Unauthorized => tonic::Code::Unauthenticated,
            ErrorKind::TooLarge => tonic::Code::OutOfRange,
            ErrorKind::RateLimited => tonic::Code::ResourceExhausted,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Timeout => tonic::Code::DeadlineExceeded,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    /// The kind of a gRPC status received from another process: the inverse of
    /// [`ErrorKind::grpc_code`], with transport-level codes (a peer that is gone, a cancelled
    /// call) read as [`ErrorKind::Unavailable`].
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::InvalidArgument | Code::FailedPrecondition => ErrorKind::Invalid,
            Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Unauthorized,
            Code::OutOfRange => ErrorKind::TooLarge,
            Code::ResourceExhausted => ErrorKind::RateLimited,
            Code::NotFound => ErrorKind::NotFound,
            Code::Unavailable | Code::Cancelled | Code::Aborted | Code::Unknown => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::Timeout,
            Code::Ok | Code::AlreadyExists | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                ErrorKind::Internal
            }
        }
    }
}

/// The gRPC status of a component error: its kind's code and its message. The one way errors
/// leave a gRPC handler.
pub fn to_status<E: HasKind + std::fmt::Display>(e: &E) -> tonic::Status {
    tonic::Status::new(e.kind().grpc_code(), e.to_string())
}

/// Implemented by every component error.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_round_trip() {
        let kinds = [
            ErrorKind::Invalid,
            ErrorKind::Unauthorized,
            ErrorKind::TooLarge,
            ErrorKind::RateLimited,
            ErrorKind::NotFound,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Internal,
        ];
        for k in kinds {
            assert_eq!(ErrorKind::from_grpc_code(k.grpc_code()), k, "{k:?}");
        }
        assert_eq!(ErrorKind::from_grpc_code(tonic::Code::Cancelled), ErrorKind::Unavailable);
    }
}
