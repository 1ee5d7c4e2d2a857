//! Sans-I/O XMPP protocol: JIDs (RFC 7622), stanza and stream errors (RFC 6120 §4.9, §8.3),
//! stream headers (RFC 6120 §4.7, RFC 7395 §3.3), SASL mechanisms (RFC 6120 §6, RFC 5802,
//! RFC 7677, RFC 4616, RFC 5929, RFC 9266), server-to-server negotiation and Server Dialback
//! (XEP-0178, XEP-0220).

pub mod dialback;
pub mod error;
pub mod jid;
pub mod s2s;
pub mod sasl;
pub mod stream;

pub use error::{
    error_reply, iq_result, ErrorType, StanzaError, StanzaErrorCondition, StreamError,
    StreamErrorCondition,
};
pub use jid::{Jid, JidError};
pub use stream::{new_stream_id, StreamHeader};
