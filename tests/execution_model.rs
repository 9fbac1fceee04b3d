//! The execution model of a connection: handlers that wait run in parallel, one-way calls take
//! effect in the order sent.

mod common;

use common::{release, within, Event, TestServer};

/// A handler that computes after its first `.await` holds its own thread, not the connection:
/// a second call on the same connection is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_computing_handler_does_not_hold_up_its_connection() {
    let mut server = TestServer::start();
    let client = server.client().await;
    let computing = tokio::spawn({
        let client = client.clone();
        async move { client.compute(7).await }
    });
    server.expect_event(&Event::Computing(7)).await;
    // Same connection, while the handler above holds its thread.
    assert_eq!(
        within("a call beside a computing handler", client.add(2, 3))
            .await
            .expect("add"),
        5
    );
    assert!(
        !computing.is_finished(),
        "compute finished before it was released"
    );
    release(7);
    assert_eq!(
        within("the computing call", computing)
            .await
            .expect("join")
            .expect("compute"),
        7
    );
}

/// One-way handlers of a connection run one after another in the order sent, even when each
/// waits before its effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_take_effect_in_the_order_sent() {
    let mut server = TestServer::start();
    let client = server.client().await;
    const COUNT: u32 = 1000;
    for n in 0..COUNT {
        client.append(n).await.expect("append");
    }
    let mut seen = Vec::new();
    while seen.len() < COUNT as usize {
        match within("the next append", server.events.recv()).await {
            Some(Event::Appended(n)) => seen.push(n),
            Some(_) => {}
            None => panic!("server gone after {} appends", seen.len()),
        }
    }
    let out_of_order = seen.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(out_of_order, 0, "{out_of_order} appends out of order");
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
}
