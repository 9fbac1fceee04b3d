#[rpc_core::service]
pub trait Installer {
    async fn install(&self, package: String) -> bool;
}

/// It names a trait, not a string.
#[rpc_core::service(callbacks = "Prompt")]
pub trait Quoted {
    async fn ask(&self) -> bool;
}

/// Once.
#[rpc_core::service(callbacks = Installer, callbacks = Quoted)]
pub trait Twice {
    async fn ask(&self) -> bool;
}

fn main() {}
