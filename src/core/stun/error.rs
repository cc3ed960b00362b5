//! Why a datagram is not a usable STUN message. The driver counts these; none is a panic.

use thiserror::Error;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StunError {
    #[error("shorter than the 20-byte STUN header")]
    TooShort,
    /// RFC 5389 §6: the two most significant bits of every STUN message are zero.
    #[error("the first two bits are not zero")]
    NotStun,
    /// RFC 5389 §6: the length excludes the header, is a multiple of 4, and the datagram holds
    /// exactly one message.
    #[error("message length {declared} does not fit the {actual}-byte datagram")]
    BadLength { declared: usize, actual: usize },
    #[error("attribute 0x{kind:04x} runs past the end of the message")]
    AttributeOverrun { kind: u16 },
    #[error("attribute 0x{kind:04x} has a malformed value")]
    MalformedAttribute { kind: u16 },
    /// RFC 5389 §15.5: the CRC does not match, so this is not (or no longer) a STUN message.
    #[error("FINGERPRINT does not match the message")]
    BadFingerprint,
    /// RFC 5389 §15.5: FINGERPRINT is always the last attribute.
    #[error("an attribute follows FINGERPRINT")]
    AttributeAfterFingerprint,
    #[error("not a Binding response (class {class:?}, method 0x{method:03x})")]
    NotBindingResponse { class: super::Class, method: u16 },
    #[error("not a Binding request")]
    NotBindingRequest,
    /// A Binding error response (RFC 5389 §7.3.4), with its ERROR-CODE (0 when it had none).
    #[error("the server answered with error {code}")]
    ErrorResponse {
        tid: super::TransactionId,
        code: u16,
    },
    /// RFC 5389 §7.3.3: a response with a comprehension-required attribute we do not know is
    /// discarded.
    #[error("unknown comprehension-required attribute 0x{kind:04x}")]
    UnknownRequired { kind: u16 },
    #[error("a Binding success response without a mapped address")]
    MissingMappedAddress,
    #[error("an RFC 3489 message where an RFC 5389 one (with the magic cookie) was expected")]
    Classic,
}
