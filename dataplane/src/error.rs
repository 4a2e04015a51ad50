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
}

/// Implemented by every component error.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
}
