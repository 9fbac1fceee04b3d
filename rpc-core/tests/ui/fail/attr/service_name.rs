#[rpc_core::service(name = "")]
pub trait Store {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service(name = "line\nbreak")]
pub trait Cache {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service(name = "*")]
pub trait Anything {
    async fn get(&self, key: String) -> u32;
}

#[rpc_core::service(crate = "not a path")]
pub trait Elsewhere {
    async fn get(&self, key: String) -> u32;
}

fn main() {}
