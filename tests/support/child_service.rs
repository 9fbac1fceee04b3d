//! The service that `rpc-test-child` serves to the child-process tests.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

#[rpc_core::service]
pub trait Helper {
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Echoes bytes.
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Sleeps, then answers `ms`.
    async fn sleep(&self, ms: u64) -> u64;
    /// How many `sleep` handlers the child holds now (a handler dropped is no longer counted).
    async fn sleeping(&self) -> u32;
    /// Prints `line` to the child's stdout with `println!`, as careless code would.
    async fn print(&self, line: String);
    /// Prints `line` to the child's stdout with the C runtime's `printf` (and flushes it), as C
    /// code in the child would.
    async fn c_print(&self, line: String);
    /// The child's process id.
    async fn pid(&self) -> u32;
    /// The value of an environment variable in the child, if it is set.
    async fn env(&self, name: String) -> Option<String>;
    /// The numbers from 0 to `count`, as a stream.
    async fn count(&self, count: u32) -> rpc_core::Stream<u32>;
    /// The sum of a stream of numbers from the parent.
    async fn total(&self, numbers: rpc_core::Stream<u32>) -> u64;
}

pub struct HelperImpl;

/// The `sleep` handlers alive in this process.
static SLEEPING: AtomicU32 = AtomicU32::new(0);

impl Helper for HelperImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn sleep(&self, ms: u64) -> u64 {
        /// Counts a handler while it lives.
        struct Asleep;
        impl Drop for Asleep {
            fn drop(&mut self) {
                SLEEPING.fetch_sub(1, Ordering::Relaxed);
            }
        }
        SLEEPING.fetch_add(1, Ordering::Relaxed);
        let _asleep = Asleep;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn sleeping(&self) -> u32 {
        SLEEPING.load(Ordering::Relaxed)
    }

    async fn print(&self, line: String) {
        println!("{line}");
    }

    async fn c_print(&self, line: String) {
        let Ok(line) = std::ffi::CString::new(line) else {
            return;
        };
        // SAFETY: a "%s\n" format with one NUL-terminated string argument; fflush(NULL)
        // flushes every output stream of the C runtime.
        unsafe {
            libc::printf(c"%s\n".as_ptr(), line.as_ptr());
            libc::fflush(std::ptr::null_mut());
        }
    }

    async fn pid(&self) -> u32 {
        std::process::id()
    }

    async fn env(&self, name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    async fn count(&self, count: u32) -> rpc_core::Stream<u32> {
        rpc_core::Stream::iter(0..count)
    }

    async fn total(&self, numbers: rpc_core::Stream<u32>) -> u64 {
        futures_util::StreamExt::fold(numbers, 0, |sum, n| async move { sum + u64::from(n) }).await
    }
}

/// What the parent serves back to the child (callbacks).
#[rpc_core::service]
pub trait Notes {
    /// The parent's answer to `question`.
    async fn answer(&self, question: String) -> String;
}

/// A service of the child that calls its parent back.
#[rpc_core::service(callbacks = Notes)]
pub trait Relay {
    /// Asks the parent `question` and answers with what it said.
    async fn ask(&self, question: String) -> String;
}

pub struct RelayImpl;

impl Relay for RelayImpl {
    async fn ask(&self, question: String) -> String {
        let parent: Result<NotesClient, _> = rpc_core::CallContext::current()
            .ok_or(rpc_core::CallbackError::NotInCall)
            .and_then(|context| context.callbacks());
        match parent {
            Ok(parent) => match parent.answer(question).await {
                Ok(answer) => format!("child heard: {answer}"),
                Err(error) => format!("child could not ask: {error}"),
            },
            Err(error) => format!("child has no parent to ask: {error}"),
        }
    }
}
