//! The Starling server as a library: start a whole server from a config (the binary and the
//! protocol tests share this), and the admin command tree.

pub mod admin;
pub mod app;
pub mod datalock;
