//! Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}` with the
//! status a client expects.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sparq::{Error, ServiceError};

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, ...).
    pub code: Option<String>,
    /// Seconds for `Retry-After` (429).
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code: None,
            retry_after_s: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 about one field.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message).param(param)
    }

    /// 404 for a model that is not served.
    pub fn unknown_model(name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            format!("the model '{name}' does not exist"),
        )
        .param("model");
        e.code = Some("model_not_found".into());
        e
    }

    /// 503: not ready yet or no longer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 504: the request's deadline passed.
    pub fn timeout(seconds: f64) -> Self {
        Self::from(Error::from(ServiceError::Timeout { seconds }))
    }

    /// Names the field at fault.
    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The OpenAI `type` of the status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 404 | 405 | 413 => "invalid_request_error",
            401 => "authentication_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            504 => "timeout",
            _ => "server_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut out = ApiError::new(status, e.to_string());
        if let Error::Service(ServiceError::Overloaded { retry_after_s, .. }) = e {
            out.retry_after_s = Some(retry_after_s.max(1));
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// 404 for a route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// 405 for a route used with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn library_errors_map_to_statuses() {
        let cases: Vec<(Error, u16)> = vec![
            (Error::invalid("bad"), 400),
            (Error::device_lost("gone"), 503),
            (Error::invariant("bug"), 500),
            (ServiceError::ShuttingDown.into(), 503),
            (ServiceError::Timeout { seconds: 1.0 }.into(), 504),
        ];
        for (e, status) in cases {
            let a = ApiError::from(e);
            assert_eq!(a.status.as_u16(), status, "{a:?}");
            assert!(a.retry_after_s.is_none());
            assert_eq!(a.body()["error"]["message"], a.message);
        }
        let busy = ApiError::from(Error::from(ServiceError::Overloaded {
            waiting: 3,
            limit: 3,
            retry_after_s: 0,
        }));
        assert_eq!(busy.status, StatusCode::TOO_MANY_REQUESTS);
        // A zero hint would invite an immediate retry storm: at least one second.
        assert_eq!(busy.retry_after_s, Some(1));
        assert_eq!(busy.body()["error"]["type"], "rate_limit_error");
    }
}
