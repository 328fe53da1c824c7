//! The one error classification shared by every role. Only this module knows
//! how a class maps to an HTTP status, a Prometheus `errorType` and a gRPC code.

/// What kind of failure an error is, independent of where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is malformed or names invalid data (HTTP 400, `bad_data`).
    BadData,
    /// Well-formed but cannot be executed (HTTP 422, `execution`).
    Unprocessable,
    NotFound,
    /// No or invalid credentials / tenant (HTTP 401).
    Unauthenticated,
    Forbidden,
    /// The request body exceeds a configured size (HTTP 413).
    TooLarge,
    /// The request's media type or encoding is not supported (HTTP 415).
    UnsupportedMediaType,
    /// A limit was hit; the client may retry later (HTTP 429).
    RateLimited,
    Timeout,
    Canceled,
    /// A dependency is down; retryable (HTTP 503).
    Unavailable,
    Internal,
}

impl ErrorClass {
    /// The HTTP status Prometheus (or Mimir, for tenancy and limits) uses.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorClass::BadData => 400,
            ErrorClass::Unprocessable => 422,
            ErrorClass::NotFound => 404,
            ErrorClass::Unauthenticated => 401,
            ErrorClass::Forbidden => 403,
            ErrorClass::TooLarge => 413,
            ErrorClass::UnsupportedMediaType => 415,
            ErrorClass::RateLimited => 429,
            ErrorClass::Timeout => 503,
            ErrorClass::Canceled => 499,
            ErrorClass::Unavailable => 503,
            ErrorClass::Internal => 500,
        }
    }

    /// The `errorType` of Prometheus' JSON error envelope.
    pub fn prometheus_error_type(self) -> &'static str {
        match self {
            ErrorClass::BadData | ErrorClass::TooLarge | ErrorClass::UnsupportedMediaType => {
                "bad_data"
            }
            ErrorClass::Unprocessable => "execution",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Unauthenticated | ErrorClass::Forbidden => "bad_data",
            ErrorClass::RateLimited => "unavailable",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Canceled => "canceled",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::Internal => "internal",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorClass::BadData => tonic::Code::InvalidArgument,
            ErrorClass::Unprocessable => tonic::Code::FailedPrecondition,
            ErrorClass::NotFound => tonic::Code::NotFound,
            ErrorClass::Unauthenticated => tonic::Code::Unauthenticated,
            ErrorClass::Forbidden => tonic::Code::PermissionDenied,
            ErrorClass::TooLarge => tonic::Code::OutOfRange,
            ErrorClass::UnsupportedMediaType => tonic::Code::Unimplemented,
            ErrorClass::RateLimited => tonic::Code::ResourceExhausted,
            ErrorClass::Timeout => tonic::Code::DeadlineExceeded,
            ErrorClass::Canceled => tonic::Code::Cancelled,
            ErrorClass::Unavailable => tonic::Code::Unavailable,
            ErrorClass::Internal => tonic::Code::Internal,
        }
    }

    pub fn from_grpc_code(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument => ErrorClass::BadData,
            tonic::Code::FailedPrecondition => ErrorClass::Unprocessable,
            tonic::Code::NotFound => ErrorClass::NotFound,
            tonic::Code::Unauthenticated => ErrorClass::Unauthenticated,
            tonic::Code::PermissionDenied => ErrorClass::Forbidden,
            tonic::Code::OutOfRange => ErrorClass::TooLarge,
            tonic::Code::Unimplemented => ErrorClass::UnsupportedMediaType,
            tonic::Code::ResourceExhausted => ErrorClass::RateLimited,
            tonic::Code::DeadlineExceeded => ErrorClass::Timeout,
            tonic::Code::Cancelled => ErrorClass::Canceled,
            tonic::Code::Unavailable => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_round_trip() {
        for class in [
            ErrorClass::BadData,
            ErrorClass::Unprocessable,
            ErrorClass::NotFound,
            ErrorClass::Unauthenticated,
            ErrorClass::Forbidden,
            ErrorClass::TooLarge,
            ErrorClass::UnsupportedMediaType,
            ErrorClass::RateLimited,
            ErrorClass::Timeout,
            ErrorClass::Canceled,
            ErrorClass::Unavailable,
            ErrorClass::Internal,
        ] {
            assert_eq!(ErrorClass::from_grpc_code(class.grpc_code()), class);
        }
    }

    #[test]
    fn prometheus_statuses() {
        assert_eq!(ErrorClass::BadData.http_status(), 400);
        assert_eq!(ErrorClass::Unprocessable.http_status(), 422);
        assert_eq!(ErrorClass::Timeout.http_status(), 503);
        assert_eq!(ErrorClass::Timeout.prometheus_error_type(), "timeout");
    }
}
