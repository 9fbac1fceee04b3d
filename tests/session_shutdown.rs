//! A session whose server shuts down gracefully: it moves on to connect again at once, while
//! the calls in flight on the old connection are still answered.

mod common;

use common::{within, Event, ProbeClient, TestServer};
use rpc_core::session::{Session, SessionConfig, SessionState};
use rpc_core::{ClientConfig, RpcError};

/// A session shows as soon as its server says it is shutting down that it has lost the
/// connection (and tries to connect again), while its call in flight is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_on_as_soon_as_its_server_says_it_is_shutting_down() {
    let mut server = TestServer::start();
    let (client, session): (ProbeClient, Session) = rpc_transport::session::connect_with(
        &server.endpoint,
        &ClientConfig::default(),
        &SessionConfig::default(),
    );
    within("the session connects", session.connected())
        .await
        .expect("connected");
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.compute(9002).await }
    });
    server.expect_event(&Event::Computing(9002)).await;
    let mut state = session.watch();
    server.shutdown.cancel();
    within(
        "the session hears the shutdown",
        state.wait_for(|state| {
            matches!(
                state,
                SessionState::Connecting {
                    lost: Some(RpcError::ShuttingDown),
                    ..
                }
            )
        }),
    )
    .await
    .expect("the session's state");
    assert!(!in_flight.is_finished(), "the call is held until released");
    common::release(9002);
    assert_eq!(
        within("the call in flight", in_flight)
            .await
            .expect("join")
            .expect("call"),
        9002
    );
}
