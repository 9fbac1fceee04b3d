//! The `rpc` command; see the `rpc_cli` library for what it does.

fn main() {}
