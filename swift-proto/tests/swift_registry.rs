//! The attribute-store conformance suite against a real Swift cluster.
//!
//! Ignored by a plain `cargo test` (it needs a cluster); `tests/interop` starts a real
//! Swift cluster and runs it with `--ignored`, passing the cluster in
//! `STACKFED_REGISTRY_ENDPOINT`, `STACKFED_REGISTRY_USER` and `STACKFED_REGISTRY_KEY`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use stackfed_http::{HttpClient, Timeouts};
use swift_proto::registry::{SwiftAttributeStore, SwiftStoreConfig};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must name the registry cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real Swift cluster; run by tests/interop"]
async fn swift_store_passes_the_conformance_suite() {
    let config = SwiftStoreConfig::new(
        env("STACKFED_REGISTRY_ENDPOINT").parse().unwrap(),
        env("STACKFED_REGISTRY_USER"),
        env("STACKFED_REGISTRY_KEY"),
    )
    .container(format!("conformance-{}", std::process::id()));
    let store = SwiftAttributeStore::new(config, HttpClient::new(Timeouts::default()));
    federation_core::attrs::conformance::run_all(Arc::new(store), "swift").await;
}
