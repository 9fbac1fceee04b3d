//! The `rpc` binary as a user runs it: exit codes and messages.

use std::process::{Command, Output};

fn rpc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(args)
        .output()
        .expect("the rpc binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn commands_that_cannot_reach_their_service_exit_with_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_rpc"))
        .args(["call", "nobody", "add", "2", "3", "--timeout", "5"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .expect("the rpc binary runs");
    assert_eq!(output.status.code(), Some(3));
    let message = stderr(&output);
    assert!(
        message.starts_with("rpc: connection to nobody failed: no server is listening"),
        "{message}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn usage_errors_exit_with_2() {
    let missing = rpc(&["call", "calc"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("METHOD"), "{}", stderr(&missing));
    assert_eq!(rpc(&["frobnicate"]).status.code(), Some(2));
    let timeout = rpc(&["call", "calc", "add", "--timeout", "soon"]);
    assert_eq!(timeout.status.code(), Some(2));
    assert!(
        stderr(&timeout).contains("expected a number of seconds"),
        "{}",
        stderr(&timeout)
    );
}

#[test]
fn help_lists_the_commands_and_exits_with_0() {
    let help = rpc(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["list", "describe", "call", "watch"] {
        assert!(text.contains(command), "{text}");
    }
}
