//! Errors of the HTTP API, rendered once, here, in Prometheus' JSON envelope
//! (`{"status":"error","errorType":...,"error":...}`) or, for the remote
//! write/read endpoints, as plain text like Prometheus' handlers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_common::{ErrorClass, ServiceError};

/// An API failure with its class and a message for the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub class: ErrorClass,
    pub message: String,
}

impl ApiError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ApiError {
            class,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorClass::BadData, message)
    }

    /// `invalid parameter "name": why`, Prometheus' wording for bad parameters.
    pub fn invalid_param(name: &str, why: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter {name:?}: {why}"))
    }

    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The error as a plain-text response (remote write and read).
    pub fn into_text_response(self) -> Response {
        let mut response = (self.status(), format!("{}\n", self.message)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        ApiError::new(error.class, error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Authentication failures are plain text, as in Mimir (`no org id`).
        if self.class == ErrorClass::Unauthenticated {
            return self.into_text_response();
        }
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.class.prometheus_error_type(),
            "error": self.message,
        });
        (self.status(), axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_matches_prometheus() {
        let response = ApiError::invalid_param("start", "cannot parse \"x\"").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let response = ApiError::new(ErrorClass::Unprocessable, "boom").into_response();
        assert_eq!(response.status().as_u16(), 422);
    }
}
