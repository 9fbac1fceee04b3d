/// A callback service that returns a stream.
#[rpc_core::service]
pub trait Progress {
    async fn updates(&self) -> rpc_core::Stream<u32>;
}

/// One that takes a stream.
#[rpc_core::service]
pub trait Upload {
    async fn send(&self, chunks: rpc_core::Stream<u8>) -> u64;
}

/// Neither can be a callback service: both directions' stream frames would share one id space.
#[rpc_core::service(callbacks = Progress)]
pub trait Installer {
    async fn install(&self, package: String) -> bool;
}

#[rpc_core::service(callbacks = Upload)]
pub trait Uploader {
    async fn run(&self) -> bool;
}

fn main() {}
