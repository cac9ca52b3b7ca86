//! Text that arrives from outside is checked here, once, before any service sees it.
//!
//! PostgreSQL's `text` cannot hold the NUL character: a string with one fails its statement
//! with an encoding error, which would surface as a 500 (and, in a batched write, fail other
//! people's rows too). Every way text enters — JSON bodies, the path, the query string,
//! `X-Audit-Log-Reason` and gateway frames — is screened for it, and a request carrying one is
//! refused with a 400 that names the field.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use confab_chat::ChatError;
use serde_json::Value;

use crate::error::ApiError;

/// What the 400 says about the field.
pub const NUL_MESSAGE: &str = "must not contain NUL characters (U+0000)";

/// True when the JSON text has a `\u0000` escape inside a string. Raw control characters are
/// already invalid JSON, so the escape is the only way to smuggle a NUL in. Cheap: one pass
/// over the bytes, and only a hit needs the slower walk that names the field.
pub fn json_has_nul(json: &[u8]) -> bool {
    let needle = b"\\u0000";
    let mut from = 0;
    while let Some(pos) = find(&json[from..], needle) {
        let at = from + pos;
        // `\\u0000` is an escaped backslash followed by text: count the backslashes before.
        let backslashes = json[..=at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            return true;
        }
        from = at + needle.len();
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The dotted path of the first key or string in `value` that holds a NUL (`"content"`,
/// `"allow.0"`, `"body"` for a bare string), or None.
pub fn nul_field(value: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut Vec<String>) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(i.to_string());
                let found = walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                path.push(k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(value, &mut path).then(|| {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.join(".")
        }
    })
}

/// Decodes a JSON body into `T`, refusing NULs first (with the field's name).
pub fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if json_has_nul(bytes) {
        let field = serde_json::from_slice::<Value>(bytes)
            .ok()
            .and_then(|v| nul_field(&v))
            .unwrap_or_else(|| "body".into());
        return Err(ChatError::field(&field, NUL_MESSAGE).into());
    }
    // Every body is a JSON object. serde would also read a struct from an array of its
    // fields in order (`[]` is a valid "change nothing"), which no client means.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "invalid JSON body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Percent-decodes `s` and tells whether it holds a NUL. `%00` is the only way to write one in
/// a URI or a header value.
fn percent_has_nul(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
}

/// The request part that carries a NUL: a query parameter's name, `"path"`, or the header.
fn nul_in_request(uri: &axum::http::Uri, headers: &HeaderMap) -> Option<String> {
    if percent_has_nul(uri.path()) {
        return Some("path".into());
    }
    if let Some(q) = uri.query() {
        if percent_has_nul(q) {
            let name = q
                .split('&')
                .find(|pair| percent_has_nul(pair))
                .map(|pair| pair.split('=').next().unwrap_or(pair))
                .filter(|name| !percent_has_nul(name))
                .unwrap_or("query");
            return Some(name.to_string());
        }
    }
    for name in ["x-audit-log-reason"] {
        if let Some(v) = headers.get(name) {
            if v.as_bytes().contains(&0) || v.to_str().is_ok_and(percent_has_nul) {
                return Some(name.into());
            }
        }
    }
    None
}

/// Middleware: refuses a request whose path, query or text headers hold a NUL.
pub async fn reject_nul(req: Request, next: Next) -> Response {
    if let Some(field) = nul_in_request(req.uri(), req.headers()) {
        return ApiError::from(ChatError::field(&field, NUL_MESSAGE)).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_escaped_nul_only() {
        assert!(json_has_nul(br#"{"content":"x\u0000y"}"#));
        assert!(json_has_nul(br#"{"content":"\\\u0000"}"#));
        assert!(!json_has_nul(br#"{"content":"\\u0000"}"#));
        assert!(!json_has_nul(br#"{"content":"x\u0001y"}"#));
        assert!(!json_has_nul(b""));
    }

    #[test]
    fn names_the_field() {
        assert_eq!(
            nul_field(&json!({"a": "ok", "content": "x\u{0}"})).as_deref(),
            Some("content")
        );
        assert_eq!(
            nul_field(&json!({"roles": ["1", "\u{0}"]})).as_deref(),
            Some("roles.1")
        );
        assert_eq!(nul_field(&json!("\u{0}")).as_deref(), Some("body"));
        assert_eq!(nul_field(&json!({"a": {"b": 1}})), None);
    }

    #[test]
    fn decode_refuses_with_the_field_name() {
        let err = decode_json::<Value>(br#"{"nonce":"a\u0000"}"#).unwrap_err();
        match err {
            ApiError::Chat(ChatError::Validation(m)) => assert!(m.contains_key("nonce")),
            other => panic!("expected a validation error, got {other:?}"),
        }
        assert!(decode_json::<Value>(br#"{"nonce":"a\\u0000"}"#).is_ok());
    }

    #[test]
    fn request_parts() {
        let h = HeaderMap::new();
        let uri: axum::http::Uri = "/api/v1/invites/ab%00c".parse().unwrap();
        assert_eq!(nul_in_request(&uri, &h).as_deref(), Some("path"));
        let uri: axum::http::Uri = "/api/v1/servers/1/audit-log?action=x%00&limit=5"
            .parse()
            .unwrap();
        assert_eq!(nul_in_request(&uri, &h).as_deref(), Some("action"));
        let uri: axum::http::Uri = "/api/v1/x?a=%100".parse().unwrap();
        assert_eq!(nul_in_request(&uri, &h), None);
        let mut h = HeaderMap::new();
        h.insert("x-audit-log-reason", "bad%00reason".parse().unwrap());
        let uri: axum::http::Uri = "/api/v1/x".parse().unwrap();
        assert_eq!(
            nul_in_request(&uri, &h).as_deref(),
            Some("x-audit-log-reason")
        );
    }
}
