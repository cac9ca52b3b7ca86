//! The gateway's WebSocket upgrade (RFC 6455 §4.2 over HTTP/1.1, the only HTTP Confab serves)
//! and the socket it yields.
//!
//! Done here rather than with axum's `WebSocketUpgrade` because an idle connection's memory is
//! decided by the socket's buffers, which axum's wrapper does not let us shape: large dispatches
//! (READY above all) must go out as fragments so tungstenite's frame buffer stays small, and
//! writes go through `ShrinkingWriter`, which gives its buffer back once flushed.

use super::shrinking_writer::ShrinkingWriter;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

/// A gateway connection's socket.
pub type Socket = WebSocketStream<ShrinkingWriter<TokioIo<hyper::upgrade::Upgraded>>>;

/// A request that asks to become a WebSocket.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Why a request cannot be upgraded; answered with a status and a short reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(StatusCode, &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Checks an upgrade request's method and headers (RFC 6455 §4.2.1).
fn check(parts: &Parts) -> Result<HeaderValue, Refused> {
    if parts.method != Method::GET {
        return Err(Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        ));
    }
    if !has_token(&parts.headers, header::CONNECTION, "upgrade")
        || !has_token(&parts.headers, header::UPGRADE, "websocket")
    {
        return Err(Refused(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint only speaks WebSocket",
        ));
    }
    if parts
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Version must be 13",
        ));
    }
    parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
        .cloned()
        .ok_or(Refused(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key is missing",
        ))
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Refused> {
        let key = check(parts)?;
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or(Refused(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded",
            ))?;
        Ok(Self { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the socket once the client has it.
    pub fn serve<F, Fut>(self, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = tungstenite::handshake::derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // A client gone before the switch leaves nothing to serve.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let io = ShrinkingWriter::new(TokioIo::new(upgraded));
            serve(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await).await;
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (
                    header::SEC_WEBSOCKET_ACCEPT,
                    HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
                ),
            ],
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri("/api/v1/gateway");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_browser_upgrade_is_accepted_with_the_rfc_accept_key() {
        let key = check(&parts(Method::GET, &GOOD)).unwrap();
        // RFC 6455 §1.3's worked example.
        assert_eq!(
            tungstenite::handshake::derive_accept_key(key.as_bytes()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn requests_that_are_not_upgrades_are_refused_with_the_reason() {
        let without = |name: &str| -> Vec<(&str, &str)> {
            GOOD.iter().copied().filter(|(k, _)| *k != name).collect()
        };
        assert_eq!(
            check(&parts(Method::POST, &GOOD)).unwrap_err().0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            check(&parts(Method::GET, &without("upgrade")))
                .unwrap_err()
                .0,
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            check(&parts(Method::GET, &without("connection")))
                .unwrap_err()
                .0,
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            check(&parts(Method::GET, &without("sec-websocket-key")))
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
        let mut old = without("sec-websocket-version");
        old.push(("sec-websocket-version", "8"));
        assert_eq!(
            check(&parts(Method::GET, &old)).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        // "Upgrade" as part of another token is not the upgrade token.
        let mut sly = without("connection");
        sly.push(("connection", "no-upgrade-please"));
        assert_eq!(
            check(&parts(Method::GET, &sly)).unwrap_err().0,
            StatusCode::UPGRADE_REQUIRED
        );
    }
}
