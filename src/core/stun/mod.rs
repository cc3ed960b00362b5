//! STUN (RFC 5389) with the NAT behaviour discovery extensions of RFC 5780 and the RFC 3489
//! "classic" messages old clients still send: the codec (`message`, `attribute`,
//! `fingerprint`), client transactions with retransmission (`client`) and the server's sans-IO
//! responder (`server`).

pub mod attribute;
pub mod client;
mod error;
pub mod fingerprint;
pub mod message;
pub mod server;

pub use attribute::{Attribute, ChangeRequest, ErrorCode};
pub use client::ClientTransaction;
pub use error::StunError;
pub use message::{
    binding_request, parse_binding_request, parse_binding_response, BindingRequest,
    BindingResponse, Class, Message, MessageId, TransactionId, BINDING,
};
pub use server::{StunReply, StunResponder};
