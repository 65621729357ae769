//! Bearer API keys, compared in constant time.

use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

/// Whether `headers` carry one of `keys` as `Authorization: Bearer KEY` (always, when no key
/// is configured).
pub fn check(keys: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(unauthorized(
            "missing API key: send Authorization: Bearer KEY",
        ));
    };
    // Every key is compared, so that the time taken does not tell which one came close.
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        ok |= k.as_bytes().ct_eq(given.as_bytes());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(unauthorized("incorrect API key"))
    }
}

fn unauthorized(message: &str) -> ApiError {
    let mut e = ApiError::new(StatusCode::UNAUTHORIZED, message);
    e.code = Some("invalid_api_key".into());
    e
}

/// Keys from a file, one per line (blank lines and `#` comments skipped).
pub fn read_key_file(path: &std::path::Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}
