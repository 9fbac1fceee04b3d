//! The `rpc` command's decoder fed arbitrary bytes as the reply of each method of the `Target`
//! service (and as its arguments), with the shapes the server describes: it must return a value
//! or a typed error, never panic, hang or allocate beyond its bounds; and a value it returns
//! must encode again to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_cli::codec;
use rpc_cli::remote::describe_schema;
use rpc_core::Client;
use rpc_fuzz::TargetClient;

fuzz_target!(|data: &[u8]| {
    let schema = <TargetClient as Client>::SERVICE.schema();
    let Some(describe) = describe_schema(schema) else {
        panic!("the Target service's schema converts");
    };
    for method in &describe.methods {
        for format in [&method.result_format, &method.args_format] {
            if let Ok(value) = codec::decode(data, format, &describe.registry, "value") {
                let again = codec::encode(&value, format, &describe.registry, "value")
                    .expect("a decoded value encodes");
                let back = codec::decode(&again, format, &describe.registry, "value")
                    .expect("an encoded value decodes");
                assert_eq!(back, value, "{}", method.name);
            }
        }
    }
});
