//! A service written inside another macro's input (a `macro_rules!` that adds the attribute) is
//! expanded as one written directly: the generated client's `self` and the user's tokens come
//! from different macro contexts.

macro_rules! service {
    ($($item:tt)*) => {
        #[rpc_core::service]
        $($item)*
    };
}

service! {
    pub trait Counter {
        /// Adds `n`; the total.
        async fn add(&self, n: u32) -> u32;
        /// Says something.
        #[rpc(oneway)]
        async fn note(&self, line: String);
        /// Every total from now on.
        async fn totals(&self, from: u32) -> rpc_core::Stream<u32>;
        /// Adds every value.
        async fn add_all(&self, values: rpc_core::Stream<u32>) -> Result<u32, String>;
    }
}

struct Memory;

impl Counter for Memory {
    async fn add(&self, n: u32) -> u32 {
        n
    }

    async fn note(&self, _line: String) {}

    async fn totals(&self, from: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::new(futures_util::stream::iter(from..from + 3))
    }

    async fn add_all(&self, _values: rpc_core::Stream<u32>) -> Result<u32, String> {
        Ok(0)
    }
}

fn main() {
    let _server = CounterServer::new(Memory);
    let _: fn(&CounterClient) = |client| {
        let _ = client.add(1);
        let _ = client.note(String::new());
    };
}
