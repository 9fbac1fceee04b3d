/// The callback service must be a service trait in scope: its generated client is named.
#[rpc_core::service(callbacks = Missing)]
pub trait Installer {
    async fn install(&self, package: String) -> bool;
}

fn main() {}
