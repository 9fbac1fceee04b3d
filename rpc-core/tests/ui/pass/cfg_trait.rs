//! `#[cfg]` written after `#[service]` applies to everything the macro generates with the trait:
//! a service configured out leaves no client or server behind that names the missing trait.

#[rpc_core::service]
#[cfg(any())]
pub trait Gone {
    async fn ping(&self) -> u32;
}

#[rpc_core::service]
#[cfg(all())]
pub trait Kept {
    async fn ping(&self) -> u32;
}

/// A client and a server of the same name as those of `Gone` would have clashed with them.
pub struct GoneClient;
pub struct GoneServer;

fn main() {
    use rpc_core::Client;
    assert_eq!(KeptClient::SERVICE.name, "Kept");
    let _ = (GoneClient, GoneServer);
}
