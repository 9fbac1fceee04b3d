//! A service's schema committed to the repository, and the test that flags a breaking change
//! against it: a method removed, or one whose arguments or result changed shape. Adding methods
//! is not breaking. After a deliberate change, write the file again:
//!
//! ```text
//! RPC_WRITE_SCHEMAS=1 cargo test --test schema_file
//! ```

mod common;

use std::path::PathBuf;

use common::ProbeClient;
use rpc_core::schema::ServiceSchema;
use rpc_core::Client;

fn committed_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/probe.json")
}

#[test]
fn the_probe_service_keeps_its_committed_schema() {
    let current = <ProbeClient as Client>::SERVICE.schema();
    let path = committed_file();
    if std::env::var_os("RPC_WRITE_SCHEMAS").is_some() {
        let json = serde_json::to_string_pretty(current).expect("a schema is JSON");
        std::fs::write(&path, json + "\n").expect("write the schema");
        return;
    }
    // Compiled in, so that the check runs where the sources are not (under Wine).
    let text = include_str!("schemas/probe.json");
    let committed: ServiceSchema = serde_json::from_str(text).expect("the committed schema reads");
    let breaking = current.breaking_changes(&committed);
    assert!(
        breaking.is_empty(),
        "breaking changes against {}: {breaking:?}",
        path.display()
    );
    // Not breaking, but not committed either: the file is out of date.
    assert_eq!(
        current.fingerprint(),
        committed.fingerprint(),
        "{} is out of date: write it again (RPC_WRITE_SCHEMAS=1)",
        path.display()
    );
}

/// The check fails when it must: against a committed schema in which a method took other
/// arguments.
#[test]
fn a_changed_method_is_flagged() {
    let current = <ProbeClient as Client>::SERVICE.schema();
    let mut older = current.clone();
    let add = older
        .methods
        .iter_mut()
        .find(|m| m.name == "add")
        .expect("add");
    add.args_shape = rpc_core::schema::Shape::Tuple(vec![rpc_core::schema::Shape::I32]);
    let breaking = current.breaking_changes(&older);
    assert_eq!(
        breaking,
        [rpc_core::schema::Change::Arguments {
            method: "add".to_owned()
        }]
    );
}
