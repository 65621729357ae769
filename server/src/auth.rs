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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn keys() {
        let keys = vec!["alpha".to_string(), "beta-key".to_string()];
        assert!(check(&[], &headers(None)).is_ok());
        assert!(check(&keys, &headers(Some("Bearer beta-key"))).is_ok());
        assert!(check(&keys, &headers(Some("Bearer alpha"))).is_ok());
        for bad in [
            None,
            Some("Bearer alph"),
            Some("Bearer alphaa"),
            Some("alpha"),
            Some("Basic alpha"),
        ] {
            let e = check(&keys, &headers(bad)).unwrap_err();
            assert_eq!(e.status.as_u16(), 401, "{bad:?}");
        }
    }

    #[test]
    fn key_file() {
        let path = std::env::temp_dir().join(format!("sparq-keys-{}", std::process::id()));
        std::fs::write(&path, "# keys\n one \n\ntwo\n").unwrap();
        let keys = read_key_file(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(keys, ["one", "two"]);
    }
}
