//! The crate's one error enum. Every variant says which broker and which API it concerns, so an
//! operator can tell a refused connection from a broker-side error code at a glance.

use kafka_protocol::error::ResponseError;
use thiserror::Error;

/// Everything `chronik-ctl` can fail with.
#[derive(Debug, Error)]
pub enum CtlError {
    /// A socket or stdio operation (resolve, connect, read, write) failed. The I/O error is
    /// part of the message rather than a `source`, so `{:#}` chains do not print it twice.
    #[error("{op} {addr}: {err}")]
    Io {
        op: &'static str,
        addr: String,
        err: std::io::Error,
    },
    /// The broker answered with a frame size outside `[4, MAX_RESPONSE_BYTES]`.
    #[error("{addr}: response frame of {size} bytes is outside 4..={max}")]
    FrameSize { addr: String, size: i64, max: usize },
    /// A response carried another request's correlation id (the connection is out of step).
    #[error("{addr}: expected correlation id {expected}, got {got}")]
    Correlation {
        addr: String,
        expected: i32,
        got: i32,
    },
    /// `kafka-protocol` could not encode or decode a message.
    #[error("{api} v{version}: {what}: {message}")]
    Codec {
        api: &'static str,
        version: i16,
        what: &'static str,
        message: String,
    },
    /// The broker does not serve a version of this API that this tool speaks.
    #[error("{addr} does not support {api} in a version this tool speaks ({ours_min}..={ours_max}; broker: {broker})")]
    Unsupported {
        addr: String,
        api: &'static str,
        ours_min: i16,
        ours_max: i16,
        broker: String,
    },
    /// The broker returned a Kafka error code.
    #[error("{context}: {}{}", code_name(*.code), .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        context: String,
        code: i16,
        message: Option<String>,
    },
    /// A topic, partition, group or broker the command needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The command line or stdin held something this tool cannot use.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Offsets of an active group cannot be reset (Kafka's tool refuses the same way).
    #[error("assignments can only be reset if group '{group}' is inactive (Empty or Dead), but the current state is {state}")]
    GroupActive { group: String, state: String },
    /// The broker answered with bytes that make no sense (bad batch, wrong topic in response).
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Kafka's symbolic name for an error code, with the number (`UNKNOWN_TOPIC_OR_PARTITION (3)`).
pub fn code_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE (0)".to_string(),
        Some(ResponseError::Unknown(c)) => format!("error code {c}"),
        Some(e) => format!("{} ({code})", screaming_snake(&format!("{e}"))),
    }
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`, the spelling in Kafka's docs.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Turns a non-zero error code into [`CtlError::Kafka`].
pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
    check_msg(code, None, context)
}

/// Like [`check`], with the broker's error message when it sent one.
pub fn check_msg(code: i16, message: Option<&str>, context: impl FnOnce() -> String) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(CtlError::Kafka {
        context: context(),
        code,
        message: message.map(str::to_string),
    })
}

pub type Result<T> = std::result::Result<T, CtlError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_follow_kafka_spelling() {
        assert_eq!(code_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(code_name(0), "NONE (0)");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(code_name(9999), "error code 9999");
    }

    #[test]
    fn check_passes_zero_and_wraps_the_rest() {
        assert!(check(0, || unreachable!()).is_ok());
        let e = check_msg(36, Some("exists"), || "create t".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "create t: TOPIC_ALREADY_EXISTS (36) (exists)"
        );
    }
}
