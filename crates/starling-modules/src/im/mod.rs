//! RFC 6121 instant messaging (placeholder: being written).
use std::sync::Arc;
use starling_core::Module;
pub fn modules() -> Vec<Arc<dyn Module>> { Vec::new() }
