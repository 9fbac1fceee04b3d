#[rpc_core::service]
pub struct Store {
    size: u32,
}

fn main() {}
