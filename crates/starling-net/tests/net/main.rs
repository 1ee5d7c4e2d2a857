//! Transports and listeners over real sockets on port 0: STARTTLS (RFC 6120 §5), Direct TLS
//! with ALPN (XEP-0368), SNI certificate choice, channel bindings (RFC 5929, RFC 9266),
//! WebSocket framing (RFC 7395) and host-meta (XEP-0156), connection limits and shutdown,
//! HTTP timeouts and the budgets that keep HTTP clients from starving XMPP streams.

mod http;
mod support;
mod tcp;
mod websocket;
