//! The one error type of this crate, sorted by whose fault the failure is.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Errors of query parsing and evaluation.
///
/// Each kind maps to one HTTP status and Prometheus `errorType` (see [`Error::status`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is at fault: a bad parameter, a query that does not parse, or a feature
    /// this engine does not support yet. HTTP 400, `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// The query is valid but could not be evaluated (too many points, conflicting series).
    /// HTTP 422, `execution`.
    #[error("{0}")]
    Execution(String),
    /// The store failed or an internal invariant broke. HTTP 500, `internal`.
    #[error("{0}")]
    Internal(String),
    /// The query ran past its timeout. HTTP 503, `timeout`.
    #[error("{0}")]
    Timeout(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for a [`Error::BadData`] saying `what` is not supported yet.
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Error::BadData(format!("{what} is not supported yet"))
    }

    /// The HTTP status and Prometheus `errorType` of this error.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            Error::Execution(_) => (StatusCode::UNPROCESSABLE_ENTITY, "execution"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, error_type) = self.status();
        let body = serde_json::json!({
            "status": "error",
            "errorType": error_type,
            "error": self.to_string(),
        });
        (status, Json(body)).into_response()
    }
}
