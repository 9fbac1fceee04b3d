//! The `rpc` command.
pub mod codec;
