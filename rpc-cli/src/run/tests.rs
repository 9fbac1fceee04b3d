//! The commands as a user types them, against a backend that answers from memory.

use clap::Parser;

use super::*;
use crate::cli::Cli;
use crate::error::Exit;
use crate::fixture::{calculator, MathError, Point};

/// Answers like a calculator server would, and remembers what it was asked.
struct Fake {
    describe: Describe,
    calls: Vec<(String, u32, Vec<u8>, Option<Duration>)>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            describe: calculator(),
            calls: Vec::new(),
        }
    }
}

impl Backend for Fake {
    fn list(&mut self) -> Result<Vec<ServiceEntry>, CliError> {
        Ok(vec![ServiceEntry {
            name: "calc".to_owned(),
            interface: "Calculator".to_owned(),
        }])
    }

    fn describe(&mut self, name: &str) -> Result<Describe, CliError> {
        match name {
            "calc" => Ok(self.describe.clone()),
            _ => Err(CliError::NotConnected {
                target: name.to_owned(),
            }),
        }
    }

    fn call(
        &mut self,
        name: &str,
        method: &MethodSchema,
        args: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Reply, CliError> {
        self.calls
            .push((name.to_owned(), method.id, args.clone(), timeout));
        let postcard = |value: Result<Vec<u8>, postcard::Error>| value.expect("encodes");
        Ok(match method.name.as_str() {
            "add" => {
                let (a, b): (i64, i64) = postcard::from_bytes(&args).expect("arguments decode");
                Reply::Ok(postcard(postcard::to_stdvec(&(a + b))))
            }
            "divide" => {
                let (a, b): (i64, i64) = postcard::from_bytes(&args).expect("arguments decode");
                match a.checked_div(b) {
                    Some(q) => Reply::Ok(postcard(postcard::to_stdvec(&q))),
                    None => Reply::Err(postcard(postcard::to_stdvec(&MathError::DivideByZero))),
                }
            }
            // A reply that does not match the described result type.
            "plot" => Reply::Ok(vec![7]),
            _ => Reply::Ok(Vec::new()),
        })
    }

    fn watch(
        &mut self,
        _: &str,
        _: &MethodSchema,
        args: Vec<u8>,
        item: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        let count: u64 = postcard::from_bytes(&args).expect("argument decodes");
        for i in 0..count.min(3) {
            item(&postcard::to_stdvec(&i).expect("encodes"))?;
        }
        Ok(())
    }
}

/// Runs `rpc` with these words against `backend`; returns what it printed or the error.
fn rpc_with(backend: &mut dyn Backend, words: &[&str]) -> Result<String, CliError> {
    let cli = Cli::try_parse_from(std::iter::once("rpc").chain(words.iter().copied()))
        .expect("the command line parses");
    let mut out = Vec::new();
    run(cli.command, backend, &mut out)?;
    Ok(String::from_utf8(out).expect("output is UTF-8"))
}

fn rpc(words: &[&str]) -> Result<String, CliError> {
    rpc_with(&mut Fake::new(), words)
}

/// The message and exit code of a failing command.
fn failure(words: &[&str]) -> (String, Exit) {
    match rpc(words) {
        Ok(out) => panic!("{words:?} printed {out:?}; expected an error"),
        Err(e) => (e.to_string(), e.exit()),
    }
}

#[test]
fn call_prints_the_result_as_json() {
    assert_eq!(
        rpc(&["call", "calc", "add", "2", "3"]).ok(),
        Some("5\n".to_owned())
    );
    assert_eq!(
        rpc(&["call", "calc", "add", "-5", "3"]).ok(),
        Some("-2\n".to_owned())
    );
}

#[test]
fn call_passes_the_timeout_and_the_method_id() {
    let mut fake = Fake::new();
    let out = rpc_with(
        &mut fake,
        &["call", "calc", "add", "1", "2", "--timeout", "1.5"],
    );
    assert_eq!(out.ok(), Some("3\n".to_owned()));
    let expected_args = postcard::to_stdvec(&(1i64, 2i64)).expect("encodes");
    let expected = (
        "calc".to_owned(),
        1,
        expected_args,
        Some(Duration::from_millis(1500)),
    );
    assert_eq!(fake.calls, [expected]);
}

#[test]
fn an_application_error_is_json_with_exit_code_1() {
    match rpc(&["call", "calc", "divide", "1", "0"]) {
        Err(CliError::Application(value)) => assert_eq!(value, serde_json::json!("DivideByZero")),
        other => panic!("expected the application error, got {other:?}"),
    }
    assert_eq!(
        failure(&["call", "calc", "divide", "1", "0"]).1,
        Exit::ApplicationError
    );
}

#[test]
fn bad_arguments_name_the_argument_the_type_and_the_word() {
    let two = failure(&["call", "calc", "add", "two", "3"]);
    assert_eq!(
        two,
        ("a: expected i64, got \"two\"".to_owned(), Exit::Usage)
    );
    let big = failure(&["call", "calc", "add", "1", "9223372036854775808"]);
    let message = "b: 9223372036854775808 is out of range for i64 \
                   (-9223372036854775808 to 9223372036854775807)";
    assert_eq!(big, (message.to_owned(), Exit::Usage));
    let point = failure(&["call", "calc", "plot", r#"[{"x": 1, "y": 2.5}]"#]);
    assert_eq!(
        point,
        ("points[0].y: expected i32, got 2.5".to_owned(), Exit::Usage)
    );
}

#[test]
fn the_argument_count_is_checked_with_the_signature() {
    let (message, exit) = failure(&["call", "calc", "add", "1"]);
    assert_eq!(
        message,
        "add takes 2 arguments (add(a: i64, b: i64) -> i64), got 1"
    );
    assert_eq!(exit, Exit::Usage);
}

#[test]
fn json_mode_reads_every_argument_as_json() {
    let out = rpc(&["call", "calc", "log", "--json", "\"hello\""]);
    assert_eq!(
        out.ok(),
        Some(String::new()),
        "a one-way call prints nothing"
    );
    let (message, exit) = failure(&["call", "calc", "log", "--json", "hello"]);
    assert_eq!(
        message,
        "line: expected String, got \"hello\", which is not valid JSON (expected value at line 1 column 1)"
    );
    assert_eq!(exit, Exit::Usage);
    assert_eq!(
        rpc(&["call", "calc", "log", "hello world"]).ok(),
        Some(String::new())
    );
}

#[test]
fn unknown_methods_and_wrong_commands_are_usage_errors() {
    let (message, exit) = failure(&["call", "calc", "sub", "1", "2"]);
    assert_eq!(
        message,
        "Calculator has no method `sub`; its methods: add, divide, log, ticks, plot"
    );
    assert_eq!(exit, Exit::Usage);
    let (message, exit) = failure(&["call", "calc", "ticks", "5"]);
    assert_eq!(
        (message.as_str(), exit),
        ("ticks is a stream method: use `rpc watch`", Exit::Usage)
    );
    let (message, _) = failure(&["watch", "calc", "add", "1", "2"]);
    assert_eq!(message, "add is a call method: use `rpc call`");
}

/// A method that takes a stream from its caller is refused before anything is sent: `rpc`
/// has no items to send, and the call would wait for them until its deadline.
#[test]
fn a_method_that_takes_a_stream_is_refused_before_it_is_called() {
    let mut fake = Fake::new();
    for method in &mut fake.describe.methods {
        if method.name == "add" || method.name == "ticks" {
            method.upload = Some("numbers".to_owned());
        }
    }
    for words in [
        ["call", "calc", "add", "1", "2"].as_slice(),
        ["watch", "calc", "ticks", "5"].as_slice(),
    ] {
        let error = rpc_with(&mut fake, words).expect_err("refused");
        assert_eq!(error.exit(), Exit::Usage);
        assert!(
            error.to_string().contains("its argument `numbers`"),
            "{error}"
        );
    }
    assert!(fake.calls.is_empty(), "nothing was sent");
}

#[test]
fn a_reply_that_does_not_match_its_type_is_a_remote_error() {
    let (message, exit) = failure(&["call", "calc", "plot", "[]"]);
    assert_eq!(
        (message.as_str(), exit),
        (
            "the reply of plot does not match its described type",
            Exit::Remote
        )
    );
}

#[test]
fn watch_prints_one_line_per_item() {
    assert_eq!(
        rpc(&["watch", "calc", "ticks", "5"]).ok(),
        Some("0\n1\n2\n".to_owned())
    );
}

#[test]
fn list_and_describe_print_for_people() -> Result<(), CliError> {
    assert_eq!(rpc(&["list"])?, "calc   Calculator\n");
    let text = rpc(&["describe", "calc"])?;
    assert!(
        text.starts_with("service Calculator (fingerprint 0x0000000000001234)\n"),
        "{text}"
    );
    let json: Describe =
        serde_json::from_str(&rpc(&["describe", "calc", "--json"])?).expect("JSON");
    assert_eq!(json, calculator());
    Ok(())
}

#[test]
fn without_a_connection_every_command_fails_with_exit_code_3() {
    for words in [
        &["list"][..],
        &["describe", "calc"],
        &["call", "calc", "add", "two", "3"],
        &["watch", "calc", "ticks", "1"],
    ] {
        match rpc_with(&mut NotConnected, words) {
            Err(e) => assert_eq!(e.exit(), Exit::Connection, "{words:?}: {e}"),
            Ok(out) => panic!("{words:?} printed {out:?}"),
        }
    }
    let message = rpc_with(&mut NotConnected, &["describe", "calc"])
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        message.as_deref(),
        Some("cannot reach calc: this backend connects to no service")
    );
}

#[test]
fn the_command_line_is_checked_by_clap() {
    let missing = Cli::try_parse_from(["rpc", "call", "calc"]).map(|_| ());
    assert_eq!(missing.map_err(|e| e.exit_code()), Err(2));
    let timeout =
        Cli::try_parse_from(["rpc", "call", "calc", "add", "--timeout", "soon"]).map(|_| ());
    assert_eq!(timeout.map_err(|e| e.exit_code()), Err(2));
    let negative =
        Cli::try_parse_from(["rpc", "call", "calc", "add", "--timeout", "-1"]).map(|_| ());
    assert_eq!(negative.map_err(|e| e.exit_code()), Err(2));
    let help = Cli::try_parse_from(["rpc", "--help"]).map(|_| ());
    assert_eq!(help.map_err(|e| e.exit_code()), Err(0));
}

#[test]
fn points_are_plotted_from_json_words() {
    let mut fake = Fake::new();
    let _ = rpc_with(
        &mut fake,
        &["call", "calc", "plot", r#"[{"x": 1, "y": -2}]"#],
    );
    let expected = postcard::to_stdvec(&(vec![Point { x: 1, y: -2 }],)).expect("encodes");
    assert_eq!(fake.calls.first().map(|c| &c.2), Some(&expected));
}
