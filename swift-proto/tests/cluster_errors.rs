//! Whose fault a failed exchange with a cluster is, as the metrics count it: a client's
//! request body that stalls while it is streamed to a cluster (in-process fake Swift over
//! loopback) is the client's (408), not a backend error of the cluster; a cluster that
//! cannot be reached is the cluster's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use federation_core::ClusterId;
use http::{HeaderMap, StatusCode};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use stackfed_http::{HttpClient, RequestBodyTimeout};
use support::{default_timeouts, FakeCluster, DEFAULT_ACCOUNT, DEFAULT_KEY, DEFAULT_USER};
use swift_proto::cluster::{Auth, Credentials, Origin, SwiftCluster};
use swift_proto::error::SwiftError;

/// The counters counted since the last call, by name and labels.
type Counts = Vec<(metrics_util::CompositeKey, DebugValue)>;

fn since_last(snapshotter: &Snapshotter) -> Counts {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(k, _, _, v)| (k, v))
        .collect()
}

/// The counter `name` whose labels include `labels`, summed.
fn counter(counts: &Counts, name: &str, labels: &[(&str, &str)]) -> u64 {
    counts
        .iter()
        .filter(|(k, ..)| k.key().name() == name)
        .filter(|(k, ..)| {
            let have: Vec<_> = k.key().labels().map(|l| (l.key(), l.value())).collect();
            labels.iter().all(|l| have.contains(l))
        })
        .map(|(_, v)| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_client_body_that_stalls_is_the_clients_fault_not_the_clusters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let fake = FakeCluster::start("east").await;
    let id = ClusterId::new("east").unwrap();
    let cluster = SwiftCluster::new(
        id.clone(),
        &fake.endpoint(),
        &[],
        HttpClient::new(default_timeouts()),
    );
    let token = cluster
        .login(&Credentials {
            user: DEFAULT_USER.into(),
            key: DEFAULT_KEY.into(),
        })
        .await
        .unwrap()
        .token;
    let account = federation_core::AccountName::new(DEFAULT_ACCOUNT).unwrap();
    let container = federation_core::ContainerName::new("c").unwrap();
    let put = cluster
        .put_container(
            &account,
            &container,
            HeaderMap::new(),
            stackfed_http::body::empty(),
            Auth::Token(&token),
        )
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());

    // What the proxy's server hands on when the client stops sending mid-body: a body
    // that ends in `RequestBodyTimeout` after its first bytes.
    let stalled = futures::stream::iter([
        Ok(Bytes::from_static(b"the first bytes")),
        Err(RequestBodyTimeout {
            after: Duration::from_secs(1),
        }),
    ]);
    let e = cluster
        .put_object(
            &account,
            &container,
            "o",
            HeaderMap::new(),
            stackfed_http::body::from_stream(stalled),
            Auth::Token(&token),
        )
        .await
        .expect_err("the upload cannot succeed");
    assert!(e.is_client_body_timeout(), "{e:?}");
    assert_eq!(e.origin(), Origin::Client, "{e:?}");
    assert!(!e.is_temporary() && !e.is_timeout(), "{e:?}");
    assert_eq!(SwiftError::from(e).status, StatusCode::REQUEST_TIMEOUT);
    let backend = ("cluster", "east");
    let counts = since_last(&snapshotter);
    assert_eq!(
        counter(&counts, "stackfed_swift_backend_errors_total", &[backend]),
        0,
        "a client's stalled body was counted against the cluster"
    );
    assert_eq!(
        counter(&counts, "stackfed_swift_client_body_timeouts_total", &[]),
        1
    );

    // A cluster that nobody answers for (a port just freed): that one is the cluster's,
    // and counted so.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", gone.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(gone);
    let cluster = SwiftCluster::new(id, &endpoint, &[], HttpClient::new(default_timeouts()));
    let e = cluster
        .put_object(
            &account,
            &container,
            "o",
            HeaderMap::new(),
            stackfed_http::body::full("x"),
            Auth::Token(&token),
        )
        .await
        .expect_err("nobody listens");
    let counts = since_last(&snapshotter);
    assert!(!e.is_client_body_timeout(), "{e:?}");
    assert_eq!(e.origin(), Origin::Upstream, "{e:?}");
    assert_eq!(
        counter(
            &counts,
            "stackfed_swift_backend_errors_total",
            &[backend, ("kind", "connect")]
        ),
        1
    );
    assert_eq!(
        counter(&counts, "stackfed_swift_client_body_timeouts_total", &[]),
        0
    );
}
