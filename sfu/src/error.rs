//! Errors returned by the SFU's public API.

/// Why an SFU call failed.
///
/// Every variant carries a message that is safe to show to the client that sent
/// the offer (no internal state, no addresses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuError {
    /// The SDP offer was rejected: malformed, too large, too many m-lines, no
    /// audio m-line, no Opus, …
    #[error("invalid SDP offer: {0}")]
    InvalidSdp(String),
    /// No participant with this id is known to the SFU.
    #[error("unknown participant")]
    UnknownParticipant,
    /// The media loop is not running (shut down or crashed).
    #[error("the SFU media loop is not running")]
    Stopped,
    /// The configuration cannot work (e.g. an unspecified public IP).
    #[error("invalid SFU configuration: {0}")]
    InvalidConfig(String),
    /// Binding or configuring the UDP socket failed.
    #[error("UDP socket error: {0}")]
    Io(String),
}
