//! The federation service against in-process fake Swift clusters (`support`): routing,
//! adoption, co-location, copies and symlinks across clusters, cluster-token renewal
//! and error mapping, all through `FederationService::handle`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use stackfed_http::{empty, full, HttpClient, Timeouts};

use support::fake_cluster::FakeCluster;
use support::{default_timeouts, Federation, DEFAULT_ACCOUNT, DEFAULT_KEY, DEFAULT_USER};

/// `/v1/AUTH_test/<rest>`.
fn p(rest: &str) -> String {
    Federation::path(rest)
}

const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

// ----- 0. the fake itself ---------------------------------------------------------------

/// One request straight to a fake cluster.
async fn raw(
    client: &HttpClient,
    cluster: &FakeCluster,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(format!("http://{}{path}", cluster.addr()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = if body.is_empty() { empty() } else { full(body) };
    let (parts, bytes) = client
        .send_collect(req.body(body).unwrap(), 1 << 20)
        .await
        .unwrap();
    (parts.status, parts.headers, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fake_cluster_behaves_as_swift() {
    let c = FakeCluster::start("solo").await;
    let client = HttpClient::new(default_timeouts());
    let (status, _, _) = raw(&client, &c, "GET", "/v1/AUTH_test", &[], "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a token is needed");
    let creds = |key| [("x-auth-user", DEFAULT_USER), ("x-auth-key", key)];
    let (status, _, _) = raw(&client, &c, "GET", "/auth/v1.0", &creds("nope"), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, h, _) = raw(&client, &c, "GET", "/auth/v1.0", &creds(DEFAULT_KEY), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h["x-storage-url"].to_str().unwrap(),
        format!("http://{}/v1/AUTH_test", c.addr())
    );
    let token = h["x-auth-token"].to_str().unwrap().to_owned();
    let (_, h2, _) = raw(&client, &c, "GET", "/auth/v1.0", &creds(DEFAULT_KEY), "").await;
    assert_ne!(
        h2["x-auth-token"].to_str().unwrap(),
        token,
        "random per login"
    );
    let t = [("x-auth-token", token.as_str())];
    let call = |method: &'static str, path: &'static str| {
        let (client, c, t) = (&client, &c, &t);
        async move { raw(client, c, method, path, t, "").await }
    };
    assert_eq!(call("GET", "/v1/AUTH_other").await.0, StatusCode::FORBIDDEN);
    assert_eq!(call("GET", "/v1/AUTH_test").await.0, StatusCode::NO_CONTENT);
    let (status, _, body) = call("GET", "/v1/AUTH_test?format=json").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"[]"[..]));
    assert_eq!(
        call("HEAD", "/v1/AUTH_test/c").await.0,
        StatusCode::NOT_FOUND
    );
    let put = |path: &'static str, headers: &'static [(&'static str, &'static str)], body| {
        let (client, c, token) = (&client, &c, token.clone());
        async move {
            let mut h = vec![("x-auth-token", token.as_str())];
            h.extend_from_slice(headers);
            raw(client, c, "PUT", path, &h, body).await
        }
    };
    assert_eq!(
        put("/v1/AUTH_test/c/o", &[], "x").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(put("/v1/AUTH_test/c", &[], "").await.0, StatusCode::CREATED);
    assert_eq!(
        put("/v1/AUTH_test/c", &[], "").await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call("GET", "/v1/AUTH_test/c").await.0,
        StatusCode::NO_CONTENT
    );
    let (status, h, _) = put("/v1/AUTH_test/c/o", &[], "hello").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h["etag"], HELLO_MD5);
    let once = &[("if-none-match", "*")];
    assert_eq!(
        put("/v1/AUTH_test/c/o", once, "again").await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let ranged = |range: &'static str| {
        let (client, c, token) = (&client, &c, token.clone());
        async move {
            let h = [("x-auth-token", token.as_str()), ("range", range)];
            raw(client, c, "GET", "/v1/AUTH_test/c/o", &h, "").await
        }
    };
    let (status, _, body) = ranged("bytes=-2").await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::PARTIAL_CONTENT, &b"lo"[..])
    );
    assert_eq!(
        ranged("bytes=10-20").await.0,
        StatusCode::RANGE_NOT_SATISFIABLE
    );
    // Symlinks: followed here, a missing target is a 404 naming it, loops stop.
    put(
        "/v1/AUTH_test/c/dangling",
        &[("x-symlink-target", "elsewhere/o")],
        "",
    )
    .await;
    let (status, h, _) = call("GET", "/v1/AUTH_test/c/dangling").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h["content-location"], "/v1/AUTH_test/elsewhere/o");
    let (status, h, _) = call("GET", "/v1/AUTH_test/c/dangling?symlink=get").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["x-symlink-target"], "elsewhere/o");
    put("/v1/AUTH_test/c/l3", &[("x-symlink-target", "c/o")], "").await;
    put("/v1/AUTH_test/c/l2", &[("x-symlink-target", "c/l3")], "").await;
    put("/v1/AUTH_test/c/l1", &[("x-symlink-target", "c/l2")], "").await;
    let (status, h, body) = call("GET", "/v1/AUTH_test/c/l2").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(h["content-location"], "/v1/AUTH_test/c/o");
    assert_eq!(
        call("GET", "/v1/AUTH_test/c/l1").await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        call("DELETE", "/v1/AUTH_test/c").await.0,
        StatusCode::CONFLICT
    );
    // Controls.
    assert!(c
        .log()
        .iter()
        .any(|r| r.token && r.path == "/v1/AUTH_test/c/o"));
    assert!(c
        .log()
        .iter()
        .any(|r| !r.token && r.path == "/v1/AUTH_test"));
    c.forget_tokens();
    assert_eq!(
        call("HEAD", "/v1/AUTH_test/c").await.0,
        StatusCode::UNAUTHORIZED
    );
    c.set_disk_usage(1000, 400);
    let (_, _, body) = raw(&client, &c, "GET", "/recon/diskusage", &[], "").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["avail"], 600);
}

// ----- 1. routing -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn login_gives_one_proxy_token_for_every_cluster() {
    let fed = Federation::start(3).await;
    let r = fed.login().await;
    assert_eq!(
        r.header("x-storage-url"),
        Some("http://proxy.test/v1/AUTH_test")
    );
    let token = r.header("x-auth-token").unwrap();
    assert!(token.starts_with("AUTH_tk"), "{token}");
    assert_eq!(r.header("x-storage-token"), Some(token));
    for c in &fed.clusters {
        assert_eq!(c.logins(), 1, "the proxy logged in on {}", c.name());
    }
    let wrong = fed
        .request("GET", "/auth/v1.0")
        .anonymous()
        .header("x-auth-user", DEFAULT_USER)
        .header("x-auth-key", "wrong")
        .send()
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // An unknown proxy token is refused by the proxy itself.
    let bogus = fed
        .request("HEAD", &p(""))
        .anonymous()
        .header("x-auth-token", "AUTH_tkbogus")
        .send()
        .await;
    assert_eq!(bogus.status, StatusCode::UNAUTHORIZED);
    // Without a token the clusters refuse (they need one).
    let anonymous = fed.request("GET", &p("")).anonymous().send().await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // The proxy's token is its own: the clusters never saw it.
    for c in &fed.clusters {
        assert!(c.log().iter().all(|r| r
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            != Some(token)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_and_objects_go_to_their_cluster_only() {
    let fed = Federation::start(3).await;
    fed.login().await;

    // Pinned.
    let r = fed
        .request("PUT", &p("pinned"))
        .header("x-container-attr-cluster", "west")
        .header("x-container-attr-owner", "alice")
        .header("x-container-meta-color", "blue")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("pinned"), ["west"]);
    let stored = fed
        .cluster("west")
        .container(DEFAULT_ACCOUNT, "pinned")
        .unwrap();
    assert_eq!(stored.meta.get("x-container-meta-color").unwrap(), "blue");
    // Attributes live in the proxy's store and never reach a cluster.
    for c in &fed.clusters {
        for req in c.log() {
            assert!(
                req.headers
                    .keys()
                    .all(|k| !k.as_str().starts_with("x-container-attr-")),
                "{} got {req:?}",
                c.name()
            );
        }
    }

    // Unpinned: wherever the policy says, on exactly one cluster.
    fed.put_container("free", None).await;
    let holders = fed.holders("free");
    assert_eq!(holders.len(), 1, "{holders:?}");
    let home = holders[0].to_owned();
    let head = fed.request("HEAD", &p("free")).send().await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(head.header("x-container-attr-cluster"), Some(home.as_str()));

    // Objects go to the container's cluster, and nowhere else.
    for c in &fed.clusters {
        c.clear_log();
    }
    let put = fed.put_object("pinned", "greeting.txt", b"hello").await;
    assert_eq!(put.header("etag"), Some(HELLO_MD5));
    let west = fed.cluster("west");
    let obj = west
        .object(DEFAULT_ACCOUNT, "pinned", "greeting.txt")
        .unwrap();
    assert_eq!(&obj.body[..], b"hello");
    for other in ["east", "north"] {
        assert_eq!(
            fed.cluster(other).count_under(&p("pinned")),
            0,
            "{other} must not see requests for west's container"
        );
    }
    let get = fed.request("GET", &p("pinned/greeting.txt")).send().await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.text(), "hello");
    assert_eq!(get.header("etag"), Some(HELLO_MD5));
    assert_eq!(get.header("content-length"), Some("5"));
    assert_eq!(west.count("GET", &p("pinned/greeting.txt")), 1);

    let ranged = fed
        .request("GET", &p("pinned/greeting.txt"))
        .header("range", "bytes=1-3")
        .send()
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.text(), "ell");
    assert_eq!(ranged.header("content-range"), Some("bytes 1-3/5"));

    let head = fed.request("HEAD", &p("pinned/greeting.txt")).send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("5"));
    assert!(head.body.is_empty());

    // Container HEAD and GET carry the attributes and the cluster.
    let head = fed.request("HEAD", &p("pinned")).send().await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(head.header("x-container-attr-cluster"), Some("west"));
    assert_eq!(head.header("x-container-attr-owner"), Some("alice"));
    assert_eq!(head.header("x-container-meta-color"), Some("blue"));
    assert_eq!(head.header("x-container-object-count"), Some("1"));
    let list = fed.request("GET", &p("pinned?format=json")).send().await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.names(), ["greeting.txt"]);
    assert_eq!(list.header("x-container-attr-owner"), Some("alice"));

    // Attributes change with a container POST (empty removes), on the proxy only.
    let post = fed
        .request("POST", &p("pinned"))
        .header("x-container-attr-owner", "bob")
        .header("x-container-attr-project", "apollo")
        .send()
        .await;
    assert_eq!(post.status, StatusCode::NO_CONTENT, "{post:?}");
    let head = fed.request("HEAD", &p("pinned")).send().await;
    assert_eq!(head.header("x-container-attr-owner"), Some("bob"));
    assert_eq!(head.header("x-container-attr-project"), Some("apollo"));
    let post = fed
        .request("POST", &p("pinned"))
        .header("x-container-attr-project", "")
        .send()
        .await;
    assert_eq!(post.status, StatusCode::NO_CONTENT, "{post:?}");
    let head = fed.request("HEAD", &p("pinned")).send().await;
    assert_eq!(head.header("x-container-attr-project"), None);
    assert_eq!(head.header("x-container-attr-owner"), Some("bob"));
    let stored = fed
        .cluster("west")
        .container(DEFAULT_ACCOUNT, "pinned")
        .unwrap();
    assert!(
        stored
            .meta
            .keys()
            .all(|k| !k.starts_with("x-container-attr-")),
        "{stored:?}"
    );

    // The unpinned container's objects stay on its cluster too.
    fed.put_object("free", "a", b"abc").await;
    for c in &fed.clusters {
        assert_eq!(
            c.object(DEFAULT_ACCOUNT, "free", "a").is_some(),
            c.name() == home,
            "{}",
            c.name()
        );
    }

    // Deletes go to the cluster; the record goes once the cluster confirms.
    let del = fed.request("DELETE", &p("free")).send().await;
    assert_eq!(del.status, StatusCode::CONFLICT, "not empty: {del:?}");
    let del = fed.request("DELETE", &p("free/a")).send().await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let del = fed.request("DELETE", &p("free")).send().await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert!(fed.holders("free").is_empty());
    let head = fed.request("HEAD", &p("free")).send().await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);

    // A container PUT again (existing) goes to its cluster: 202, still one holder.
    let again = fed.request("PUT", &p("pinned")).send().await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(fed.holders("pinned"), ["west"]);
    // Pinning an existing container elsewhere is refused: containers do not move.
    let moved = fed
        .request("PUT", &p("pinned"))
        .header("x-container-attr-cluster", "east")
        .send()
        .await;
    assert_eq!(moved.status, StatusCode::CONFLICT);
    assert_eq!(fed.holders("pinned"), ["west"]);
}

/// A record whose container its cluster does not hold (a proxy killed between recording
/// a new container and the cluster's PUT): absent to clients, and a PUT pinned to another
/// cluster places it afresh once no creation can still be in flight (twice the connect
/// and response timeouts); a record whose container exists still refuses the move.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_without_its_container_is_absent_and_a_pinned_put_replaces_it() {
    let timeouts = Timeouts {
        connect: Duration::from_millis(200),
        response: Duration::from_millis(800),
        idle: Duration::from_secs(2),
    };
    let grace = (timeouts.connect + timeouts.response) * 2;
    let fed = Federation::start_with(2, timeouts).await;
    fed.login().await;
    let pinned_put = |name: &str, pin: &str| {
        fed.request("PUT", &Federation::path(name))
            .header("x-container-attr-cluster", pin)
            .send()
    };
    for name in ["lost", "kept"] {
        fed.put_container(name, Some("east")).await;
    }
    fed.cluster("east")
        .remove_container_direct(DEFAULT_ACCOUNT, "lost");
    let placed = Instant::now();
    let path = Federation::path("lost");
    assert_eq!(
        fed.request("HEAD", &path).send().await.status,
        StatusCode::NOT_FOUND
    );
    let listed = fed
        .request("GET", &Federation::path("?format=json"))
        .send()
        .await
        .names();
    assert!(!listed.contains(&"lost".to_owned()), "{listed:?}");
    // Within the grace it could be another proxy's creation in flight: kept.
    if placed.elapsed() < grace / 2 {
        let r = pinned_put("lost", "west").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    }
    tokio::time::sleep(grace.saturating_sub(placed.elapsed()) + Duration::from_millis(100)).await;
    let r = pinned_put("lost", "west").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("lost"), ["west"]);
    let r = fed.request("HEAD", &path).send().await;
    assert_eq!(r.header("x-container-attr-cluster"), Some("west"), "{r:?}");
    // Its container there: a pinned PUT elsewhere is still a move, refused.
    let r = pinned_put("kept", "west").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(fed.holders("kept"), ["east"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn account_listing_merges_every_cluster_and_sums_usage() {
    let fed = Federation::start(3).await;
    fed.login().await;
    let empty = fed.request("GET", &p("?format=json")).send().await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json(), serde_json::json!([]));
    let empty = fed.request("GET", &p("")).send().await;
    assert_eq!(empty.status, StatusCode::NO_CONTENT);

    for (name, cluster) in [
        ("apple", "east"),
        ("banana", "west"),
        ("blueberry", "north"),
        ("cherry", "north"),
        ("date", "east"),
        ("elder", "west"),
    ] {
        fed.put_container(name, Some(cluster)).await;
    }
    fed.put_object("apple", "1", b"abc").await;
    fed.put_object("banana", "1", b"hello").await;
    fed.put_object("banana", "2", b"1234567").await;
    for c in &fed.clusters {
        c.clear_log();
    }

    let all = fed.request("GET", &p("?format=json")).send().await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(
        all.names(),
        ["apple", "banana", "blueberry", "cherry", "date", "elder"]
    );
    let banana = all.json()[1].clone();
    assert_eq!(banana["count"], 2);
    assert_eq!(banana["bytes"], 12);
    for c in &fed.clusters {
        let asked = c
            .log()
            .iter()
            .filter(|r| r.method == "GET" && r.path == p(""))
            .count();
        assert_eq!(asked, 1, "{} asked once", c.name());
    }
    assert_eq!(all.header("x-account-container-count"), Some("6"));
    assert_eq!(all.header("x-account-object-count"), Some("3"));
    assert_eq!(all.header("x-account-bytes-used"), Some("15"));

    let plain = fed.request("GET", &p("")).send().await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(
        plain.text(),
        "apple\nbanana\nblueberry\ncherry\ndate\nelder\n"
    );

    let page = |q: &'static str| {
        let fed = &fed;
        async move {
            let r = fed
                .request("GET", &p(&format!("?format=json&{q}")))
                .send()
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {r:?}");
            r.names()
        }
    };
    assert_eq!(page("limit=2").await, ["apple", "banana"]);
    assert_eq!(page("limit=2&marker=banana").await, ["blueberry", "cherry"]);
    assert_eq!(
        page("end_marker=cherry").await,
        ["apple", "banana", "blueberry"]
    );
    assert_eq!(page("prefix=b").await, ["banana", "blueberry"]);
    assert_eq!(page("reverse=true&limit=2").await, ["elder", "date"]);
    assert_eq!(
        page("reverse=true&marker=cherry").await,
        ["blueberry", "banana", "apple"]
    );

    let head = fed.request("HEAD", &p("")).send().await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(head.header("x-account-container-count"), Some("6"));
    assert_eq!(head.header("x-account-object-count"), Some("3"));
    assert_eq!(head.header("x-account-bytes-used"), Some("15"));
    assert_eq!(
        head.header("x-account-storage-policy-gold-container-count"),
        Some("6")
    );

    // Account POST reaches every cluster (e.g. a temp URL key).
    let post = fed
        .request("POST", &p(""))
        .header("x-account-meta-temp-url-key", "secret")
        .send()
        .await;
    assert_eq!(post.status, StatusCode::NO_CONTENT);
    for c in &fed.clusters {
        assert_eq!(
            c.account_meta(DEFAULT_ACCOUNT)
                .get("x-account-meta-temp-url-key")
                .map(String::as_str),
            Some("secret"),
            "{}",
            c.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn account_listing_folds_subdirs_across_clusters() {
    let fed = Federation::start(3).await;
    fed.login().await;
    for (name, cluster) in [
        ("photos-2023", "east"),
        ("photos-2024", "west"),
        ("music", "north"),
        ("zebra", "east"),
    ] {
        fed.put_container(name, Some(cluster)).await;
    }
    let r = fed
        .request("GET", &p("?format=json&delimiter=-"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let v = r.json();
    assert_eq!(r.names(), ["music", "photos-", "zebra"]);
    assert_eq!(v[1]["subdir"], "photos-", "{v}");
    let r = fed
        .request("GET", &p("?format=json&delimiter=-&prefix=photos-"))
        .send()
        .await;
    assert_eq!(r.names(), ["photos-2023", "photos-2024"]);
    let r = fed
        .request("GET", &p("?delimiter=-&reverse=true"))
        .send()
        .await;
    assert_eq!(r.text(), "zebra\nphotos-\nmusic\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn info_merges_the_clusters() {
    let fed = Federation::start(2).await;
    let health = fed.request("GET", "/healthcheck").send().await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.text(), "OK");
    let info = fed.request("GET", "/info").send().await;
    assert_eq!(info.status, StatusCode::OK);
    let v = info.json();
    let policies: Vec<&str> = v["swift"]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(policies, ["gold"]);
    assert_eq!(v["symlink"]["symloop_max"], 2);
    let ids: Vec<&str> = v["federation"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["east", "west"]);
    for c in &fed.clusters {
        assert_eq!(c.count("GET", "/info"), 1);
    }
}

// ----- 2. adoption ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_container_on_one_cluster_without_a_record_is_adopted() {
    let fed = Federation::start(3).await;
    fed.login().await;
    let west = fed.cluster("west");
    west.put_object_direct(DEFAULT_ACCOUNT, "legacy", "o", b"data");

    let get = fed.request("GET", &p("legacy/o")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "data");
    let head = fed.request("HEAD", &p("legacy")).send().await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(head.header("x-container-attr-cluster"), Some("west"));
    // Probed once; afterwards the record answers.
    let east = fed.cluster("east");
    assert_eq!(east.count("HEAD", &p("legacy")), 1);
    fed.request("GET", &p("legacy/o")).send().await;
    assert_eq!(east.count("HEAD", &p("legacy")), 1);

    // A container HEAD adopts as well.
    fed.cluster("north")
        .put_container_direct(DEFAULT_ACCOUNT, "legacy2");
    let head = fed.request("HEAD", &p("legacy2")).send().await;
    assert_eq!(head.status, StatusCode::NO_CONTENT);
    assert_eq!(head.header("x-container-attr-cluster"), Some("north"));

    // A container PUT of such a name adopts it instead of creating a twin.
    fed.cluster("north")
        .put_container_direct(DEFAULT_ACCOUNT, "legacy3");
    let put = fed.request("PUT", &p("legacy3")).send().await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{put:?}");
    assert_eq!(fed.holders("legacy3"), ["north"]);

    // The adopted container shows in the account listing once.
    let list = fed.request("GET", &p("?format=json")).send().await;
    assert_eq!(list.names(), ["legacy", "legacy2", "legacy3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_on_no_cluster_is_not_found() {
    let fed = Federation::start(3).await;
    fed.login().await;
    let get = fed.request("GET", &p("nowhere/o")).send().await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    let head = fed.request("HEAD", &p("nowhere")).send().await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    let put = fed.request("PUT", &p("nowhere/o")).body("x").send().await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    // Every cluster was asked, none created anything.
    for c in &fed.clusters {
        assert!(c.count_under(&p("nowhere")) >= 1, "{}", c.name());
    }
    assert!(fed.holders("nowhere").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_on_two_clusters_is_a_conflict_naming_both() {
    let fed = Federation::start(3).await;
    fed.login().await;
    fed.cluster("east")
        .put_object_direct(DEFAULT_ACCOUNT, "twin", "o", b"east");
    fed.cluster("north")
        .put_object_direct(DEFAULT_ACCOUNT, "twin", "o", b"north");
    for path in [p("twin/o"), p("twin")] {
        let r = fed.request("GET", &path).send().await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{path}: {r:?}");
        let text = r.text();
        assert!(text.contains("east") && text.contains("north"), "{text}");
        assert!(!text.contains("west"), "{text}");
    }
    // Nothing was adopted: still a conflict, and a PUT does not create a third one.
    let head = fed.request("HEAD", &p("twin")).send().await;
    assert_eq!(head.status, StatusCode::CONFLICT);
    let put = fed.request("PUT", &p("twin")).send().await;
    assert_eq!(put.status, StatusCode::CONFLICT);
    assert_eq!(fed.holders("twin"), ["east", "north"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_cannot_answer_blocks_adoption_and_twins() {
    let fed = Federation::start(2).await;
    fed.login().await;
    let east = fed.cluster("east");
    east.put_container_direct(DEFAULT_ACCOUNT, "legacy");
    // East drops connections but the health probe has not marked it offline: east may
    // hold any unrecorded name, so the proxy neither says 404 nor creates one elsewhere.
    east.set_down(true);
    let put = fed.request("PUT", &p("legacy")).send().await;
    assert_eq!(put.status, StatusCode::SERVICE_UNAVAILABLE, "{put:?}");
    assert!(put.text().contains("east"), "{put:?}");
    let get = fed.request("GET", &p("unknown/o")).send().await;
    assert_eq!(get.status, StatusCode::SERVICE_UNAVAILABLE, "{get:?}");
    assert!(!fed.cluster("west").has_container(DEFAULT_ACCOUNT, "legacy"));
    // Back: the container is adopted where it is.
    east.set_down(false);
    let put = fed.request("PUT", &p("legacy")).send().await;
    assert_eq!(put.status, StatusCode::ACCEPTED, "{put:?}");
    assert_eq!(fed.holders("legacy"), ["east"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_nobody_holds_gets_the_clusters_own_answer() {
    let fed = Federation::start(2).await;
    fed.login().await;
    // Another account: Swift refuses the token there (403 with the fake, as tempauth),
    // and the proxy passes that on rather than claiming "not found".
    let r = fed.request("GET", "/v1/AUTH_other/c").send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = fed.request("GET", &p("nothing/o")).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    assert_eq!(r.version, http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_named_in_connection_stay_with_the_proxy() {
    let fed = Federation::start(1).await;
    fed.login().await;
    fed.put_container("c", None).await;
    let r = fed
        .request("PUT", &p("c/o"))
        .header("connection", "keep-alive, X-Object-Meta-Secret")
        .header("x-object-meta-secret", "s")
        .header("x-object-meta-kept", "k")
        .body("x")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let stored = fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "c", "o")
        .unwrap();
    assert_eq!(
        stored.meta.get("x-object-meta-kept").map(String::as_str),
        Some("k")
    );
    assert!(
        !stored.meta.contains_key("x-object-meta-secret"),
        "{:?}",
        stored.meta
    );
}

// ----- 3. co-location ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn segments_live_with_their_container() {
    let fed = Federation::start(3).await;
    fed.login().await;
    fed.put_container("big", Some("west")).await;
    fed.put_container("big_segments", None).await;
    assert_eq!(fed.holders("big_segments"), ["west"]);

    // The other way round: segments first, the container follows them.
    fed.put_container("x_segments", Some("north")).await;
    fed.put_container("x", None).await;
    assert_eq!(fed.holders("x"), ["north"]);

    // Pinning the segments elsewhere is refused.
    fed.put_container("big2", Some("west")).await;
    let r = fed
        .request("PUT", &p("big2_segments"))
        .header("x-container-attr-cluster", "east")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(fed.holders("big2_segments").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_locations_must_exist_on_the_same_cluster() {
    let fed = Federation::start(3).await;
    fed.login().await;

    // A location that does not exist yet is accepted (as Swift accepts it) and recorded
    // on the container's cluster, not created: the client's later PUT of it lands
    // there. Raw UTF-8 names count too.
    for (name, location, encoded) in [
        ("drafts", "drafts-versions", "drafts-versions"),
        ("brouillons", "brouillons-é", "brouillons-%C3%A9"),
    ] {
        let r = fed
            .request("PUT", &p(name))
            .header("x-versions-location", location)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        let home = fed.holders(name);
        assert_eq!(home.len(), 1);
        assert!(fed.holders(location).is_empty(), "only recorded");
        let r = fed.request("HEAD", &p(encoded)).send().await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
        fed.put_container(encoded, None).await;
        assert_eq!(fed.holders(location), home);
    }

    // A location on another cluster than the one the container is pinned to.
    fed.put_container("docs-versions", Some("east")).await;
    let r = fed
        .request("PUT", &p("docs"))
        .header("x-versions-location", "docs-versions")
        .header("x-container-attr-cluster", "west")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(fed.holders("docs").is_empty());
    let r = fed
        .request("PUT", &p("hist"))
        .header("x-history-location", "docs-versions")
        .header("x-container-attr-cluster", "north")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");

    // Unpinned, it follows its versions.
    let r = fed
        .request("PUT", &p("docs"))
        .header("x-versions-location", "docs-versions")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("docs"), ["east"]);
    let stored = fed
        .cluster("east")
        .container(DEFAULT_ACCOUNT, "docs")
        .unwrap();
    assert_eq!(
        stored.meta.get("x-versions-location").map(String::as_str),
        Some("docs-versions")
    );
    // Pointing an existing, non-empty container at a non-empty location elsewhere is
    // refused too (an empty one of the two would move: see section 9).
    fed.put_container("elsewhere", Some("north")).await;
    fed.put_object("docs", "kept", b"1").await;
    fed.put_object("elsewhere", "kept", b"1").await;
    let r = fed
        .request("POST", &p("docs"))
        .header("x-versions-location", "elsewhere")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let stored = fed
        .cluster("east")
        .container(DEFAULT_ACCOUNT, "docs")
        .unwrap();
    assert_eq!(
        stored.meta.get("x-versions-location").map(String::as_str),
        Some("docs-versions")
    );
}

// ----- 4. copies across clusters ----------------------------------------------------------

/// `src` on east with `src/o` (typed, with metadata); `dst` on west.
async fn copy_setup() -> Federation {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("src", Some("east")).await;
    fed.put_container("dst", Some("west")).await;
    let r = fed
        .request("PUT", &p("src/o"))
        .header("content-type", "text/x-greeting")
        .header("x-object-meta-color", "blue")
        .body("hello")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    fed
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_copy_from_copies_across_clusters() {
    let fed = copy_setup().await;
    let east = fed.cluster("east");
    let west = fed.cluster("west");
    let r = fed
        .request("PUT", &p("dst/copy"))
        .header("x-copy-from", "src/o")
        .header("x-object-meta-size", "small")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("x-copied-from"), Some("src/o"));
    let copy = west.object(DEFAULT_ACCOUNT, "dst", "copy").unwrap();
    assert_eq!(&copy.body[..], b"hello");
    assert_eq!(copy.etag, HELLO_MD5);
    assert_eq!(copy.content_type, "text/x-greeting");
    assert_eq!(copy.meta.get("x-object-meta-color").unwrap(), "blue");
    assert_eq!(copy.meta.get("x-object-meta-size").unwrap(), "small");
    // The proxy carried the bytes: east was read, never asked to write.
    assert_eq!(east.count("GET", &p("src/o")), 1);
    assert!(east.object(DEFAULT_ACCOUNT, "dst", "copy").is_none());
    assert!(west
        .log()
        .iter()
        .all(|r| !r.headers.contains_key("x-copy-from")));
    // Read back through the proxy.
    let get = fed.request("GET", &p("dst/copy")).send().await;
    assert_eq!(get.text(), "hello");

    // A missing source is a 404, nothing written.
    let r = fed
        .request("PUT", &p("dst/none"))
        .header("x-copy-from", "src/missing")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(west.object(DEFAULT_ACCOUNT, "dst", "none").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_with_destination_copies_across_clusters() {
    let fed = copy_setup().await;
    let r = fed
        .request("COPY", &p("src/o"))
        .header("destination", "dst/copy2")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "copy2")
        .unwrap();
    assert_eq!(&copy.body[..], b"hello");
    assert_eq!(copy.content_type, "text/x-greeting");
    assert_eq!(copy.meta.get("x-object-meta-color").unwrap(), "blue");
    // The source is untouched.
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "src", "o")
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_metadata_drops_the_source_metadata() {
    let fed = copy_setup().await;
    let r = fed
        .request("PUT", &p("dst/fresh"))
        .header("x-copy-from", "src/o")
        .header("x-fresh-metadata", "true")
        .header("x-object-meta-size", "small")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "fresh")
        .unwrap();
    assert_eq!(&copy.body[..], b"hello");
    assert!(!copy.meta.contains_key("x-object-meta-color"), "{copy:?}");
    assert_eq!(copy.meta.get("x-object-meta-size").unwrap(), "small");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_within_one_cluster_is_left_to_swift() {
    let fed = copy_setup().await;
    let east = fed.cluster("east");
    let r = fed
        .request("PUT", &p("src/again"))
        .header("x-copy-from", "src/o")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let put = east
        .log()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path == p("src/again"))
        .unwrap();
    assert_eq!(
        put.headers.get("x-copy-from").and_then(|v| v.to_str().ok()),
        Some("src/o")
    );
    assert_eq!(
        east.object(DEFAULT_ACCOUNT, "src", "again").unwrap().meta["x-object-meta-color"],
        "blue"
    );
}

// ----- 5. symlinks across clusters --------------------------------------------------------

/// `links` and `links2` on east, `data` on west with `data/target` = "payload".
async fn symlink_setup() -> Federation {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("links", Some("east")).await;
    fed.put_container("links2", Some("east")).await;
    fed.put_container("data", Some("west")).await;
    fed.put_object("data", "target", b"payload").await;
    fed
}

async fn put_link(fed: &Federation, link: &str, target: &str) {
    let r = fed
        .request("PUT", &p(link))
        .header("x-symlink-target", target)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{link} → {target}: {r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_to_another_cluster_is_followed_by_the_proxy() {
    let fed = symlink_setup().await;
    put_link(&fed, "links/l", "data/target").await;
    // Stored on east as a link, as Swift stores it.
    let stored = fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "links", "l")
        .unwrap();
    assert_eq!(stored.symlink.unwrap().container, "data");

    let get = fed.request("GET", &p("links/l")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "payload");
    assert_eq!(
        get.header("content-location"),
        Some("/v1/AUTH_test/data/target")
    );
    let head = fed.request("HEAD", &p("links/l")).send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("7"));
    let ranged = fed
        .request("GET", &p("links/l"))
        .header("range", "bytes=1-3")
        .send()
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.text(), "ayl");

    // ?symlink=get returns the link itself; the target's cluster is not asked.
    let west = fed.cluster("west");
    west.clear_log();
    let link = fed.request("GET", &p("links/l?symlink=get")).send().await;
    assert_eq!(link.status, StatusCode::OK);
    assert_eq!(link.header("x-symlink-target"), Some("data/target"));
    assert!(link.body.is_empty());
    assert_eq!(west.count_under(&p("data")), 0);

    // A static link to another cluster: checked by the proxy (Swift's 409 for another
    // ETag, nothing stored), stored on the link's cluster as a marked dynamic link.
    let r = fed
        .request("PUT", &p("links/wrong"))
        .header("x-symlink-target", "data/target")
        .header("x-symlink-target-etag", "0123456789abcdef0123456789abcdef")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(
        r.text(),
        "Object Etag '321c3cf486ed509164edec1e1981fec8' does not match \
         X-Symlink-Target-Etag header '0123456789abcdef0123456789abcdef'"
    );
    assert_eq!(
        r.header("content-location"),
        Some("/v1/AUTH_test/data/target")
    );
    let east = fed.cluster("east");
    assert!(east.object(DEFAULT_ACCOUNT, "links", "wrong").is_none());
    let r = fed
        .request("PUT", &p("links/static"))
        .header("x-symlink-target", "data/target")
        .header(
            "x-symlink-target-etag",
            "\"321c3cf486ed509164edec1e1981fec8\"",
        )
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let stored = east.object(DEFAULT_ACCOUNT, "links", "static").unwrap();
    assert!(stored.symlink.is_some());
    assert!(
        stored
            .content_type
            .ends_with(";stackfed_link=321c3cf486ed509164edec1e1981fec8-7"),
        "{}",
        stored.content_type
    );
    let link = fed
        .request("HEAD", &p("links/static?symlink=get"))
        .send()
        .await;
    assert_eq!(
        link.header("x-symlink-target-etag"),
        Some("321c3cf486ed509164edec1e1981fec8")
    );
    assert_eq!(link.header("x-symlink-target-bytes"), Some("7"));
    assert!(!link.header("content-type").unwrap().contains("stackfed"));
    let get = fed.request("GET", &p("links/static")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "payload");
    let listing = fed.request("GET", &p("links?format=json")).send().await;
    assert!(
        listing.text().contains(
            r#""symlink_etag": "321c3cf486ed509164edec1e1981fec8", "symlink_bytes": 7, "symlink_path""#
        ),
        "{}",
        listing.text()
    );
    // The target changes: the link is broken.
    fed.put_object("data", "target", b"changed").await;
    let get = fed.request("GET", &p("links/static")).send().await;
    assert_eq!(get.status, StatusCode::CONFLICT, "{get:?}");
    assert_eq!(
        get.header("content-location"),
        Some("/v1/AUTH_test/data/target")
    );
    // A client may not set the marker.
    let r = fed
        .request("PUT", &p("links/forged"))
        .header("content-type", "text/plain;stackfed_link=x-1")
        .body("x")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chains_of_links_cross_clusters() {
    let fed = symlink_setup().await;
    // east → east → west: east follows the first link, the proxy the last hop.
    put_link(&fed, "links2/l2", "data/target").await;
    put_link(&fed, "links/l1", "links2/l2").await;
    let get = fed.request("GET", &p("links/l1")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "payload");
    assert_eq!(
        get.header("content-location"),
        Some("/v1/AUTH_test/data/target")
    );

    // east → west → east: two hops by the proxy.
    fed.put_object("links2", "final", b"back east").await;
    put_link(&fed, "data/back", "links2/final").await;
    put_link(&fed, "links/there-and-back", "data/back").await;
    let get = fed.request("GET", &p("links/there-and-back")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "back east");
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_a_link_within_its_cluster_copies_the_target_from_another() {
    let fed = symlink_setup().await;
    put_link(&fed, "links/l", "data/target").await;
    let r = fed
        .request("PUT", &p("links2/copy"))
        .header("x-copy-from", "links/l")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "links2", "copy")
        .unwrap();
    assert_eq!(&copy.body[..], b"payload");
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_a_link_across_clusters_copies_its_target() {
    let fed = symlink_setup().await;
    put_link(&fed, "links/l", "data/target").await;
    let r = fed
        .request("COPY", &p("links/l"))
        .header("destination", "data/copy")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "data", "copy")
        .unwrap();
    assert_eq!(&copy.body[..], b"payload");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dangling_link_is_not_found() {
    let fed = symlink_setup().await;
    put_link(&fed, "links/dangling", "data/missing").await;
    let get = fed.request("GET", &p("links/dangling")).send().await;
    assert_eq!(get.status, StatusCode::NOT_FOUND, "{get:?}");
    // The target's cluster was asked (and said 404).
    assert_eq!(fed.cluster("west").count("GET", &p("data/missing")), 1);
    // A link into a container no cluster holds.
    put_link(&fed, "links/ghost", "ghost/o").await;
    let get = fed.request("GET", &p("links/ghost")).send().await;
    assert_eq!(get.status, StatusCode::NOT_FOUND, "{get:?}");
}

// ----- 6. cluster-token renewal -----------------------------------------------------------
//
// Each test makes one cluster forget the tokens it issued, then sends one request: the
// proxy must answer as if nothing happened, logging in on that cluster exactly once.

/// `here` on west with `here/o` = "data"; `there` on east with `there/o` = "hello".
async fn renewal_setup() -> Federation {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("here", Some("west")).await;
    fed.put_object("here", "o", b"data").await;
    fed.put_container("there", Some("east")).await;
    fed.put_object("there", "o", b"hello").await;
    fed
}

/// Forgets `cluster`'s tokens; returns a check that it was logged into exactly once more.
fn forget(fed: &Federation, cluster: &str) -> impl Fn(&Federation) {
    let c = fed.cluster(cluster);
    c.forget_tokens();
    let before = c.logins();
    let name = cluster.to_owned();
    move |fed: &Federation| {
        assert_eq!(
            fed.cluster(&name).logins(),
            before + 1,
            "the proxy renews its token on {name} once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_object_get() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed.request("GET", &p("here/o")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.text(), "data");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_object_put_with_a_body() {
    // A streamed body cannot be sent twice: the first PUT after the cluster forgot the
    // token gets the cluster's 401 (Swift clients log in again and retry), but the
    // refused token is dropped, so the retry works without a new login by the client.
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let put = || {
        fed.request("PUT", &p("here/new"))
            .body("fresh bytes")
            .send()
    };
    let r = put().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = put().await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let stored = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "here", "new")
        .unwrap();
    assert_eq!(&stored.body[..], b"fresh bytes");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_object_head_and_delete() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed.request("HEAD", &p("here/o")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    renewed(&fed);
    let renewed = forget(&fed, "west");
    let r = fed.request("DELETE", &p("here/o")).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_container_head() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed.request("HEAD", &p("here")).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(r.header("x-container-object-count"), Some("1"));
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_container_put_of_a_new_container() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed
        .request("PUT", &p("newbie"))
        .header("x-container-attr-cluster", "west")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("newbie"), ["west"]);
    // Renewed exactly once (by the adoption probe; the PUT then uses the new token).
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_account_listing() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed.request("GET", &p("?format=json")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.names(), ["here", "there"]);
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_account_head() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed.request("HEAD", &p("")).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(r.header("x-account-container-count"), Some("2"));
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_account_post() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "east");
    let r = fed
        .request("POST", &p(""))
        .header("x-account-meta-k", "v")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_symlink_hop() {
    let fed = renewal_setup().await;
    put_link(&fed, "there/link", "here/o").await;
    let renewed = forget(&fed, "west");
    let r = fed.request("GET", &p("there/link")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.text(), "data");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_adoption_probe() {
    let fed = renewal_setup().await;
    fed.cluster("west")
        .put_object_direct(DEFAULT_ACCOUNT, "legacy", "o", b"old");
    let renewed = forget(&fed, "west");
    let r = fed.request("GET", &p("legacy/o")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.text(), "old");
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_adoption_probe_never_makes_a_twin() {
    let fed = renewal_setup().await;
    fed.cluster("west")
        .put_container_direct(DEFAULT_ACCOUNT, "legacy");
    let _renewed = forget(&fed, "west");
    let r = fed.request("PUT", &p("legacy")).send().await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{r:?}, holders {:?}",
        fed.holders("legacy")
    );
    assert_eq!(fed.holders("legacy"), ["west"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_cross_cluster_copy_source() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "east");
    let r = fed
        .request("PUT", &p("here/copy"))
        .header("x-copy-from", "there/o")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        &fed.cluster("west")
            .object(DEFAULT_ACCOUNT, "here", "copy")
            .unwrap()
            .body[..],
        b"hello"
    );
    renewed(&fed);
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_cross_cluster_copy_destination() {
    let fed = renewal_setup().await;
    let renewed = forget(&fed, "west");
    let r = fed
        .request("COPY", &p("there/o"))
        .header("destination", "here/copy")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "here", "copy")
        .is_some());
    renewed(&fed);
}

// ----- 7. error mapping -------------------------------------------------------------------

/// `on-east/o` and `on-west/o`.
async fn two_homes(fed: &Federation) {
    fed.login().await;
    fed.put_container("on-east", Some("east")).await;
    fed.put_object("on-east", "o", b"east").await;
    fed.put_container("on-west", Some("west")).await;
    fed.put_object("on-west", "o", b"west").await;
}

fn assert_swift_error(r: &support::Reply, status: StatusCode, mentions: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=UTF-8"),
        "{r:?}"
    );
    assert_eq!(
        r.header("content-length").map(str::to_owned),
        Some(r.body.len().to_string())
    );
    assert!(r.text().contains(mentions), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_stopped_listening_answers_503() {
    let fed = Federation::start(2).await;
    two_homes(&fed).await;
    fed.cluster("east").shutdown().await;

    let get = fed.request("GET", &p("on-east/o")).send().await;
    assert_swift_error(&get, StatusCode::SERVICE_UNAVAILABLE, "east");
    let put = fed.request("PUT", &p("on-east/new")).body("x").send().await;
    assert_swift_error(&put, StatusCode::SERVICE_UNAVAILABLE, "east");
    let head = fed.request("HEAD", &p("on-east")).send().await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(head.body.is_empty());
    // The other cluster's containers are unaffected.
    let ok = fed.request("GET", &p("on-west/o")).send().await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.text(), "west");
    // The account cannot be answered completely (no partial listings configured).
    let list = fed.request("GET", &p("")).send().await;
    assert_swift_error(&list, StatusCode::SERVICE_UNAVAILABLE, "east");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_drops_connections_answers_503_then_recovers() {
    let fed = Federation::start(2).await;
    two_homes(&fed).await;
    let east = fed.cluster("east");
    east.set_down(true);
    let get = fed.request("GET", &p("on-east/o")).send().await;
    assert_swift_error(&get, StatusCode::SERVICE_UNAVAILABLE, "east");
    east.set_down(false);
    let get = fed.request("GET", &p("on-east/o")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
    assert_eq!(get.text(), "east");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_slower_than_the_response_timeout_answers_504() {
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        response: Duration::from_millis(300),
        idle: Duration::from_millis(300),
    };
    let fed = Federation::start_with(2, timeouts).await;
    two_homes(&fed).await;
    fed.cluster("west").set_delay(Duration::from_secs(2));

    let started = Instant::now();
    let get = fed.request("GET", &p("on-west/o")).send().await;
    assert_swift_error(&get, StatusCode::GATEWAY_TIMEOUT, "west");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the proxy gave up at its timeout, not after the cluster answered"
    );
    let head = fed.request("HEAD", &p("on-west")).send().await;
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
    // The other cluster answers as usual.
    let ok = fed.request("GET", &p("on-east/o")).send().await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.text(), "east");
    let head = fed.request("HEAD", &p("")).send().await;
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);
}

// ----- cluster health and capacity ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_cluster_answers_503_at_once_and_comes_back() {
    let fed = Federation::start(2).await;
    two_homes(&fed).await;
    let probe = fed.health_probe();
    let east = fed.cluster("east");
    east.set_down(true);
    probe.probe_once().await;
    east.clear_log();
    let get = fed.request("GET", &p("on-east/o")).send().await;
    assert_swift_error(&get, StatusCode::SERVICE_UNAVAILABLE, "offline");
    assert!(east.log().is_empty(), "an offline cluster is not asked");
    let list = fed.request("GET", &p("")).send().await;
    assert_swift_error(&list, StatusCode::SERVICE_UNAVAILABLE, "east");
    // New containers avoid it.
    fed.put_container("while-down", None).await;
    assert_eq!(fed.holders("while-down"), ["west"]);
    east.set_down(false);
    probe.probe_once().await;
    let get = fed.request("GET", &p("on-east/o")).send().await;
    assert_eq!(get.status, StatusCode::OK, "{get:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_hysteresis_needs_consecutive_failures_and_successes() {
    let fed = Federation::start(2).await;
    two_homes(&fed).await;
    let probe = fed.health_probe().with_hysteresis(2, 2);
    let east = fed.cluster("east");
    let state = || {
        fed.service
            .locator()
            .registry()
            .get(&federation_core::ClusterId::new("east").unwrap())
            .unwrap()
            .state
    };
    east.set_down(true);
    probe.probe_once().await;
    assert_eq!(
        state(),
        federation_core::ClusterState::Online,
        "one failed probe is not an outage"
    );
    east.set_down(false);
    probe.probe_once().await;
    east.set_down(true);
    probe.probe_once().await;
    assert_eq!(
        state(),
        federation_core::ClusterState::Online,
        "failures must be consecutive"
    );
    probe.probe_once().await;
    assert_eq!(state(), federation_core::ClusterState::Offline);
    east.set_down(false);
    probe.probe_once().await;
    assert_eq!(
        state(),
        federation_core::ClusterState::Offline,
        "one good probe is not enough with rise 2"
    );
    probe.probe_once().await;
    assert_eq!(state(), federation_core::ClusterState::Online);
}

#[tokio::test(flavor = "multi_thread")]
async fn capacity_from_recon_steers_placement() {
    let fed = Federation::start(2).await;
    fed.login().await;
    // East is past its high-water mark, west nearly empty.
    fed.cluster("east").set_disk_usage(1_000_000, 950_000);
    fed.cluster("west").set_disk_usage(1_000_000, 10_000);
    fed.usage_probe().refresh_once().await;
    for name in ["one", "two", "three"] {
        fed.put_container(name, None).await;
        assert_eq!(fed.holders(name), ["west"], "{name}");
    }
    let info = fed.request("GET", "/info").send().await.json();
    let east = info["federation"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "east")
        .unwrap()
        .clone();
    assert_eq!(east["capacity_bytes"], 1_000_000);
    assert_eq!(east["used_bytes"], 950_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_to_a_full_cluster_is_insufficient_storage() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.cluster("east").set_disk_usage(1_000_000, 950_000);
    fed.usage_probe().refresh_once().await;
    let r = fed
        .request("PUT", &p("four"))
        .header("x-container-attr-cluster", "east")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{r:?}");
    assert!(fed.holders("four").is_empty());
}

// ----- 8. background work has an owner --------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_probes_stop_when_their_owner_shuts_down() {
    let east = FakeCluster::start("east").await;
    let toml = format!(
        r#"
        store = {{ kind = "memory" }}
        probe_interval_seconds = 0.02
        usage_interval_seconds = 0.02
        [[clusters]]
        id = "east"
        endpoint = "{endpoint}"
        capacity_bytes = 1000
        recon_endpoints = ["{endpoint}"]
        "#,
        endpoint = east.endpoint()
    );
    let config = swift_proto::config::ProxyConfig::from_toml(&toml).unwrap();
    let (_service, background) = config.build().unwrap();
    let probes = || east.count("GET", "/healthcheck") + east.count("GET", "/recon/diskusage");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while east.count("GET", "/healthcheck") < 3 || east.count("GET", "/recon/diskusage") < 3 {
        assert!(std::time::Instant::now() < deadline, "the probes never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(background.running(), 2, "the health and the usage probe");
    background.shutdown().await;
    assert_eq!(background.running(), 0);
    let after = probes();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(probes(), after, "no probe after shutdown");
}

// ----- 8. copies across clusters as Swift's copy middleware makes them -------------------

/// `src/o` on east as [`copy_setup`] makes it, with the headers Swift's object server
/// keeps besides metadata.
async fn copy_setup_with_headers() -> Federation {
    let fed = copy_setup().await;
    let r = fed
        .request("PUT", &p("src/dressed"))
        .header("content-type", "application/test")
        .header("content-encoding", "gzip")
        .header("content-disposition", "attachment; filename=myfile")
        .header("content-language", "fr")
        .header("cache-control", "no-cache")
        .header("x-delete-at", "9999999999")
        .header("x-object-meta-color", "blue")
        .body("hello")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    fed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_across_clusters_keeps_what_swift_keeps_and_says_where_it_came_from() {
    let fed = copy_setup_with_headers().await;
    let r = fed
        .request("COPY", &p("src/dressed"))
        .header("destination", "/dst/copy")
        .header("x-object-meta-extra", "fresh")
        .header("content-language", "de")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "copy")
        .unwrap();
    assert_eq!(&copy.body[..], b"hello");
    assert_eq!(copy.content_type, "application/test");
    for (k, v) in [
        ("content-encoding", "gzip"),
        ("content-disposition", "attachment; filename=myfile"),
        ("cache-control", "no-cache"),
        ("x-delete-at", "9999999999"),
        ("x-object-meta-color", "blue"),
        ("x-object-meta-extra", "fresh"),
        // The request's own headers win.
        ("content-language", "de"),
    ] {
        assert_eq!(
            copy.meta.get(k).map(String::as_str),
            Some(v),
            "{k}: {copy:?}"
        );
    }
    // Swift's answer headers.
    assert_eq!(r.header("x-copied-from"), Some("src/dressed"));
    assert_eq!(r.header("x-copied-from-account"), Some(DEFAULT_ACCOUNT));
    let source = fed.request("HEAD", &p("src/dressed")).send().await;
    assert_eq!(
        r.header("x-copied-from-last-modified"),
        source.header("last-modified")
    );
    assert!(r.header("x-copied-from-last-modified").is_some());
    assert_eq!(r.header("x-object-meta-extra"), Some("fresh"));
    assert_eq!(r.header("x-object-meta-color"), Some("blue"));
    // The source's ETag went with the PUT, so the destination could verify the bytes.
    let put = fed
        .cluster("west")
        .log()
        .into_iter()
        .find(|l| l.method == "PUT" && l.path == p("dst/copy"))
        .unwrap();
    assert_eq!(put.headers["etag"], HELLO_MD5);

    // X-Fresh-Metadata drops them all but what the request says.
    let r = fed
        .request("PUT", &p("dst/fresh"))
        .header("x-copy-from", "src/dressed")
        .header("x-fresh-metadata", "true")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let fresh = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "fresh")
        .unwrap();
    assert!(fresh.meta.is_empty(), "{fresh:?}");
    assert_eq!(fresh.content_type, "application/test");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_across_clusters_copies_a_range() {
    let fed = copy_setup().await;
    let r = fed
        .request("PUT", &p("dst/part"))
        .header("x-copy-from", "src/o")
        .header("range", "bytes=1-3")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "part")
        .unwrap();
    assert_eq!(&copy.body[..], b"ell");
    // A 206 never passes the whole object's ETag on.
    let put = fed
        .cluster("west")
        .log()
        .into_iter()
        .find(|l| l.method == "PUT" && l.path == p("dst/part"))
        .unwrap();
    assert!(!put.headers.contains_key("etag"), "{:?}", put.headers);
    assert!(!put.headers.contains_key("range"), "{:?}", put.headers);
    // An unsatisfiable range is Swift's 416, nothing written.
    let r = fed
        .request("PUT", &p("dst/none"))
        .header("x-copy-from", "src/o")
        .header("range", "bytes=100-200")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{r:?}");
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "none")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_across_clusters_honours_conditions_on_the_source() {
    let fed = copy_setup().await;
    let west = fed.cluster("west");
    let copy = |name: &'static str, h: &'static str, v: &'static str| {
        fed.request("PUT", &p(&format!("dst/{name}")))
            .header("x-copy-from", "src/o")
            .header(h, v)
            .send()
    };
    let r = copy("a", "if-match", "\"not-the-etag\"").await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    let r = copy("b", "if-none-match", HELLO_MD5).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r:?}");
    assert!(west.object(DEFAULT_ACCOUNT, "dst", "a").is_none());
    assert!(west.object(DEFAULT_ACCOUNT, "dst", "b").is_none());
    let r = copy("c", "if-match", HELLO_MD5).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        &west.object(DEFAULT_ACCOUNT, "dst", "c").unwrap().body[..],
        b"hello"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_across_clusters_of_a_manifest_copies_the_manifest() {
    let fed = copy_setup().await;
    let r = fed
        .request("PUT", &p("src/dlo"))
        .header("x-object-manifest", "src/seg-")
        .body("")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // Without ?multipart-manifest=get, the assembled object is copied and the manifest
    // header is not.
    let r = fed
        .request("PUT", &p("dst/assembled"))
        .header("x-copy-from", "src/dlo")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "assembled")
        .unwrap();
    assert!(!copy.meta.contains_key("x-object-manifest"), "{copy:?}");
    // With it, the manifest itself: a DLO manifest PUT through the proxy into `dst`
    // (not empty now, so it stays on west), whose segments live on east: stored by the
    // proxy, read back with its X-Object-Manifest.
    let r = fed
        .request("PUT", &p("dst/dlo?multipart-manifest=get"))
        .header("x-copy-from", "src/dlo")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert!(fed
        .cluster("east")
        .log()
        .into_iter()
        .any(|l| l.method == "GET"
            && l.path == p("src/dlo")
            && l.query.as_deref() == Some("multipart-manifest=get&format=raw")));
    assert_eq!(fed.holders("dst"), ["west"]);
    let r = fed
        .request("HEAD", &p("dst/dlo?multipart-manifest=get"))
        .send()
        .await;
    assert_eq!(r.header("x-object-manifest"), Some("src/seg-"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_a_link_itself_across_clusters_copies_the_link() {
    let fed = symlink_setup().await;
    put_link(&fed, "links/l", "data/target").await;
    let r = fed
        .request("COPY", &p("links/l?symlink=get"))
        .header("destination", "data/l-copy")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let copy = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "data", "l-copy")
        .unwrap();
    let link = copy.symlink.expect("a link, not the target's bytes");
    assert_eq!(
        (link.container.as_str(), link.object.as_str()),
        ("data", "target")
    );
    assert!(copy.body.is_empty());
    let get = fed.request("GET", &p("data/l-copy")).send().await;
    assert_eq!(get.text(), "payload");
}

#[tokio::test(flavor = "multi_thread")]
async fn copied_names_may_be_raw_utf8_or_percent_encoded() {
    let fed = copy_setup().await;
    let r = fed
        .request("PUT", &p("src/%C3%BCn%C3%AFcode%20name"))
        .body("hello")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    for (i, from) in ["src/ünïcode name", "/src/%C3%BCn%C3%AFcode%20name"]
        .into_iter()
        .enumerate()
    {
        let r = fed
            .request("PUT", &p(&format!("dst/c{i}")))
            .header("x-copy-from", from)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{from}: {r:?}");
        assert_eq!(
            r.header("x-copied-from"),
            Some("src/%C3%BCn%C3%AFcode%20name")
        );
    }
    let r = fed
        .request("COPY", &p("src/o"))
        .header("destination", "dst/ü")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "dst", "ü")
        .is_some());
    // Swift's 412s, in Swift's words.
    for (method, path, header, value, says) in [
        (
            "PUT",
            "dst/x",
            "x-copy-from",
            "no-slash",
            "X-Copy-From header must be of the form <container name>/<object name>",
        ),
        (
            "PUT",
            "dst/x",
            "x-copy-from",
            "//src/o",
            "X-Copy-From header must be of the form <container name>/<object name>",
        ),
        (
            "COPY",
            "src/o",
            "destination",
            "dst/",
            "Destination header must be of the form <container name>/<object name>",
        ),
        (
            "PUT",
            "dst/x",
            "x-copy-from",
            "src/%FF",
            "Invalid UTF8 or contains NULL",
        ),
    ] {
        let r = fed
            .request(method, &p(path))
            .header(header, value)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{value}: {r:?}");
        assert!(r.text().contains(says), "{value}: {r:?}");
    }
    let r = fed
        .request("PUT", &p("dst/x"))
        .header("x-copy-from", "src/o")
        .header("x-copy-from-account", "a/b")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{r:?}");
    assert!(
        r.text().contains("Account name cannot contain slashes"),
        "{r:?}"
    );
}

/// Logs `other:tester` (account `AUTH_other`) in through the proxy; its token.
async fn login_other(fed: &Federation) -> String {
    for c in &fed.clusters {
        c.add_user("other:tester", "otherkey");
    }
    let r = fed
        .request("GET", "/auth/v1.0")
        .anonymous()
        .header("x-auth-user", "other:tester")
        .header("x-auth-key", "otherkey")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.header("x-auth-token").unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_between_accounts_resolve_each_side_in_its_account() {
    let fed = copy_setup().await;
    let other = login_other(&fed).await;
    let as_other = |method: &str, path: &str| {
        fed.request(method, path)
            .anonymous()
            .header("x-auth-token", &other)
    };
    // AUTH_other/shared on west, open to test:tester; AUTH_other/private on west.
    for (name, acl) in [("shared", true), ("private", false)] {
        let mut call = as_other("PUT", &format!("/v1/AUTH_other/{name}"))
            .header("x-container-attr-cluster", "west");
        if acl {
            call = call
                .header("x-container-read", "test:tester")
                .header("x-container-write", "test:tester");
        }
        assert_eq!(call.send().await.status, StatusCode::CREATED);
        let r = as_other("PUT", &format!("/v1/AUTH_other/{name}/theirs"))
            .body("theirs")
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let west = fed.cluster("west");
    // From another account (east ← west).
    let r = fed
        .request("PUT", &p("src/taken"))
        .header("x-copy-from", "shared/theirs")
        .header("x-copy-from-account", "AUTH_other")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("x-copied-from-account"), Some("AUTH_other"));
    assert_eq!(
        &fed.cluster("east")
            .object(DEFAULT_ACCOUNT, "src", "taken")
            .unwrap()
            .body[..],
        b"theirs"
    );
    // To another account (east → west).
    let r = fed
        .request("COPY", &p("src/o"))
        .header("destination", "shared/given")
        .header("destination-account", "AUTH_other")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(
        &west.object("AUTH_other", "shared", "given").unwrap().body[..],
        b"hello"
    );
    assert!(west.object(DEFAULT_ACCOUNT, "shared", "given").is_none());
    // Where the caller may not read or write, the cluster's 403 is the answer.
    let r = fed
        .request("PUT", &p("src/stolen"))
        .header("x-copy-from", "private/theirs")
        .header("x-copy-from-account", "AUTH_other")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let r = fed
        .request("COPY", &p("src/o"))
        .header("destination", "private/pushed")
        .header("destination-account", "AUTH_other")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(west.object("AUTH_other", "private", "pushed").is_none());
    // Within one cluster, the request goes to the cluster as it came.
    west.clear_log();
    let r = fed
        .request("PUT", &p("dst/same"))
        .header("x-copy-from", "shared/theirs")
        .header("x-copy-from-account", "AUTH_other")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(west.count("GET", "/v1/AUTH_other/shared/theirs"), 0);
    let put = west
        .log()
        .into_iter()
        .find(|l| l.method == "PUT" && l.path == p("dst/same"))
        .unwrap();
    assert_eq!(put.headers["x-copy-from-account"], "AUTH_other");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_point_at_the_proxy_not_the_cluster() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("site", Some("west")).await;
    let r = fed
        .request("POST", &p("site"))
        .header("x-container-meta-web-index", "index.html")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let r = fed.request("GET", &p("site")).anonymous().send().await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some(format!("http://{}{}/", support::PROXY_HOST, p("site")).as_str())
    );
}

// ----- 9. references across clusters: empty containers move ------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_container_moves_to_its_versions_location() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("docs", Some("east")).await;
    fed.put_container("archive", Some("west")).await;
    fed.put_object("archive", "old", b"v0").await;
    let meta = fed
        .request("POST", &p("docs"))
        .header("x-container-meta-color", "blue")
        .send()
        .await;
    assert_eq!(meta.status, StatusCode::NO_CONTENT);
    let r = fed
        .request("POST", &p("docs"))
        .header("x-versions-location", "archive")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(fed.holders("docs"), ["west"], "the empty container moved");
    let head = fed.request("HEAD", &p("docs")).send().await;
    assert_eq!(head.header("x-container-attr-cluster"), Some("west"));
    assert_eq!(
        head.header("x-container-meta-color"),
        Some("blue"),
        "settings kept"
    );
    assert_eq!(head.header("x-versions-location"), Some("archive"));
    // Objects now go to west.
    fed.put_object("docs", "a", b"1").await;
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "docs", "a")
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_non_empty_containers_do_not_move() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("docs", Some("east")).await;
    fed.put_container("archive", Some("west")).await;
    fed.put_object("docs", "a", b"1").await;
    fed.put_object("archive", "old", b"v0").await;
    let r = fed
        .request("POST", &p("docs"))
        .header("x-versions-location", "archive")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(fed.holders("docs"), ["east"]);
    assert_eq!(fed.holders("archive"), ["west"]);
    // A static link into a non-empty container elsewhere is checked by the proxy (here
    // another ETag: Swift's 409), nothing stored.
    fed.put_object("archive", "t", b"target").await;
    let r = fed
        .request("PUT", &p("docs/link"))
        .header("x-symlink-target", "archive/t")
        .header("x-symlink-target-etag", "d2f0f8bcbe1c7a4e3d1e9c2a7fb0b5a5")
        .body("")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(r.text().contains("does not match"), "{r:?}");
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "docs", "link")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_container_moves_to_the_segments_it_refers_to() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("segs", Some("west")).await;
    fed.put_object("segs", "s1", b"aaa").await;
    // SLO: the manifest's (empty) container follows its segments; the manifest body is
    // sent on unchanged.
    fed.put_container("m", Some("east")).await;
    let manifest = r#"[{"path": "/segs/s1", "etag": null, "size_bytes": null}]"#;
    let r = fed
        .request("PUT", &p("m/big?multipart-manifest=put"))
        .body(manifest)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("m"), ["west"]);
    let stored = fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "m", "big")
        .unwrap();
    assert_eq!(&stored.body[..], manifest.as_bytes());
    // DLO and static symlinks likewise.
    fed.put_container("dlo", Some("east")).await;
    let r = fed
        .request("PUT", &p("dlo/d"))
        .header("x-object-manifest", "segs/s")
        .body("")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("dlo"), ["west"]);
    fed.put_container("links", Some("east")).await;
    let r = fed
        .request("PUT", &p("links/l"))
        .header("x-symlink-target", "segs/s1")
        .header("x-symlink-target-etag", "47bce5c74f589f4867dbd57e9ca9f808")
        .body("")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(fed.holders("links"), ["west"]);
}

// ----- bulk delete (values from a real Swift 2.38 cluster with the bulk middleware) ------

/// Whether the proxy still has a record of `container`.
async fn has_record(fed: &Federation, container: &str) -> bool {
    let account = federation_core::AccountName::new(DEFAULT_ACCOUNT).unwrap();
    let container = federation_core::ContainerName::new(container).unwrap();
    fed.service
        .locator()
        .locate_fresh(&account, &container)
        .await
        .unwrap()
        .is_some()
}

/// A bulk delete through the proxy with a `text/plain` list.
async fn bulk_delete(fed: &Federation, accept: Option<&str>, list: &str) -> support::Reply {
    let mut call = fed
        .request("POST", &p("?bulk-delete"))
        .header("content-type", "text/plain")
        .body(list.to_owned());
    if let Some(a) = accept {
        call = call.header("accept", a);
    }
    call.send().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_delete_splits_over_clusters_and_merges_as_swift_does() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("a", Some("east")).await;
    fed.put_container("b", Some("west")).await;
    fed.put_container("full", Some("west")).await;
    fed.put_container("empty", Some("east")).await;
    for i in 0..5 {
        fed.put_object("a", &format!("o{i}"), b"x").await;
        fed.put_object("b", &format!("o%20{i}"), b"x").await;
    }
    fed.put_object("full", "keep", b"x").await;
    let mut list = String::new();
    for i in 0..5 {
        list.push_str(&format!("/a/o{i}\n/b/o%20{i}\n"));
    }
    // Containers listed before their objects are still deleted after them.
    let list = format!("/a\n/b\n{list}/a/missing\n/nowhere/o\n/full\n/empty\n/nowhere\n\n");
    let reply = bulk_delete(&fed, Some("application/json"), &list).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 13, "Number Not Found": 3, "Errors": [["/full", "409 Conflict"]]}"#
    );
    for c in ["a", "b", "empty"] {
        assert!(
            fed.holders(c).is_empty(),
            "{c} still on {:?}",
            fed.holders(c)
        );
        assert!(!has_record(&fed, c).await, "{c} kept its record");
    }
    assert_eq!(fed.holders("full"), ["west"]);
    assert!(has_record(&fed, "full").await);
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "full", "keep")
        .is_some());
    // Each item went to its own container's cluster only.
    assert_eq!(fed.cluster("west").count("DELETE", &p("a/o0")), 0);
    assert_eq!(fed.cluster("east").count("DELETE", &p("a/o0")), 1);
    assert_eq!(fed.cluster("east").count("DELETE", &p("b/o%201")), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_delete_answers_in_the_negotiated_format() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("full", Some("east")).await;
    fed.put_object("full", "o", b"x").await;
    let list = "/full\n/nowhere/o\n";
    let plain = bulk_delete(&fed, None, list).await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.header("content-type"), Some("text/plain"));
    assert_eq!(
        plain.text(),
        "Number Deleted: 0\nNumber Not Found: 1\nResponse Body: \nResponse Status: 400 Bad Request\nErrors:\n/full, 409 Conflict\n"
    );
    let xml = bulk_delete(&fed, Some("text/xml"), list).await;
    assert_eq!(xml.header("content-type"), Some("text/xml"));
    assert_eq!(
        xml.text(),
        "<delete>\n<number_deleted>0</number_deleted>\n<number_not_found>1</number_not_found>\n<response_body></response_body>\n<response_status>400 Bad Request</response_status>\n<errors>\n<object><name>/full</name><status>409 Conflict</status></object>\n</errors>\n</delete>\n"
    );
    // `?format` is not Swift's way here: plain text still.
    let reply = fed
        .request("POST", &p("?bulk-delete&format=json"))
        .header("content-type", "text/plain")
        .body("/nowhere/o\n")
        .send()
        .await;
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert!(reply
        .text()
        .starts_with("Number Deleted: 0\nNumber Not Found: 1\n"));
    // Nothing acceptable: 200 all the same, the refusal inside, as Swift writes it.
    let reply = bulk_delete(&fed, Some("image/png"), list).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=UTF-8")
    );
    assert_eq!(
        reply.text(),
        "Number Deleted: 0\nNumber Not Found: 0\nResponse Body: \nResponse Status: 406 Not Acceptable\nErrors:\n"
    );
    // Only text/plain lists.
    let reply = fed
        .request("POST", &p("?bulk-delete"))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body("/full\n")
        .send()
        .await;
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "406 Not Acceptable", "Response Body": "", "Number Deleted": 0, "Number Not Found": 0, "Errors": []}"#
    );
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "full", "o")
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_delete_refuses_bad_lists_as_swift_does() {
    let fed = Federation::start(2).await;
    fed.login().await;
    // The cap comes from the clusters' /info (which the proxy caches for a minute).
    for c in &fed.clusters {
        c.set_bulk_delete_max(Some(3));
    }
    fed.put_container("c", Some("east")).await;
    fed.put_object("c", "o", b"x").await;
    let json = |r: &support::Reply| r.json();
    let reply = bulk_delete(&fed, Some("application/json"), "/c/o\n/c/x\n\n/c/y\n").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "413 Request Entity Too Large", "Response Body": "Maximum Bulk Deletes: 3 per request", "Number Deleted": 0, "Number Not Found": 0, "Errors": []}"#
    );
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "c", "o")
        .is_some());
    // A name longer than twice Swift's longest path.
    let long = format!("/c/{}\n", "o".repeat(2563));
    let reply = bulk_delete(&fed, Some("application/json"), &long).await;
    assert_eq!(json(&reply)["Response Status"], "400 Bad Request");
    assert_eq!(json(&reply)["Response Body"], "Invalid File Name");
    // An empty list, and no length at all.
    let reply = fed
        .request("POST", &p("?bulk-delete"))
        .header("accept", "application/json")
        .header("content-length", "0")
        .send()
        .await;
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "400 Bad Request", "Response Body": "Invalid bulk delete.", "Number Deleted": 0, "Number Not Found": 0, "Errors": []}"#
    );
    let reply = fed
        .request("POST", &p("?bulk-delete"))
        .header("accept", "application/json")
        .send()
        .await;
    assert_eq!(json(&reply)["Response Status"], "411 Length Required");
    // Names that are not UTF-8 or hold NUL: 412 each, nothing sent.
    let reply = bulk_delete(&fed, Some("application/json"), "/x/%FF\n/x/a%00b\n").await;
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 0, "Number Not Found": 0, "Errors": [["/x/%FF", "412 Precondition Failed"], ["/x/a%00b", "412 Precondition Failed"]]}"#
    );
    // A token nobody knows: 200, every item 401.
    let reply = fed
        .request("POST", &p("?bulk-delete"))
        .anonymous()
        .header("x-auth-token", "AUTH_tkbogus")
        .header("accept", "application/json")
        .header("content-type", "text/plain")
        .body("/c/o\n/c\n")
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.text(),
        r#"{"Response Status": "400 Bad Request", "Response Body": "", "Number Deleted": 0, "Number Not Found": 0, "Errors": [["/c/o", "401 Unauthorized"], ["/c", "401 Unauthorized"]]}"#
    );
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "c", "o")
        .is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_federation_advertises_bulk_delete() {
    let fed = Federation::start(2).await;
    let info = fed.request("GET", "/info").send().await.json();
    assert_eq!(info["bulk_delete"]["max_deletes_per_request"], 10_000);
    assert_eq!(info["bulk_delete"]["max_failed_deletes"], 1_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_delete_sends_whitespace_while_it_works() {
    let timeouts = Timeouts {
        response: Duration::from_secs(25),
        ..default_timeouts()
    };
    let fed = Federation::start_with(2, timeouts).await;
    fed.login().await;
    fed.put_container("slow", Some("east")).await;
    fed.put_object("slow", "o", b"x").await;
    // /info (the cap) is read and cached before the cluster slows down.
    bulk_delete(&fed, None, "/nowhere/o\n").await;
    fed.cluster("east").set_delay(Duration::from_millis(10_500));
    let started = Instant::now();
    let reply = bulk_delete(&fed, Some("text/xml"), "/slow/o\n").await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert_eq!(reply.status, StatusCode::OK);
    // As Swift's middleware: the XML declaration as the first beat, then a separator.
    assert_eq!(
        reply.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\r\n\r\n<delete>\n<number_deleted>1</number_deleted>\n<number_not_found>0</number_not_found>\n<response_body></response_body>\n<response_status>200 OK</response_status>\n<errors>\n</errors>\n</delete>\n"
    );
}

// ----- the wire level: URL checks, trans-ids, request checks, listing parameters ------

/// `tx<21 hex>-<10 hex>`, Swift's transaction id.
fn is_swift_trans_id(id: &str) -> bool {
    let b = id.as_bytes();
    id.len() >= 34
        && id.starts_with("tx")
        && b[2..23].iter().all(u8::is_ascii_hexdigit)
        && b[23] == b'-'
        && b[24..34].iter().all(u8::is_ascii_hexdigit)
}

#[tokio::test(flavor = "multi_thread")]
async fn urls_are_checked_as_swifts_proxy_does() {
    let fed = Federation::start(1).await;
    fed.login().await;
    // Status and text from a real Swift 2.38 cluster.
    for (path, status, text) in [
        ("/v1/", 412, Some("Bad URL")),
        ("/v1", 412, Some("Bad URL")),
        ("/info%20asdf", 412, Some("Bad URL")),
        ("/v2/AUTH_test", 400, None),
        ("/v1//c/o", 404, None),
        ("/v1/AUTH_test//o", 404, None),
        ("/v1///o", 404, None),
        ("/", 404, None),
    ] {
        let r = fed.request("GET", path).send().await;
        assert_eq!(r.status.as_u16(), status, "{path}: {r:?}");
        if let Some(t) = text {
            assert_eq!(r.text(), t, "{path}");
        }
        let tx = r.header("x-trans-id").unwrap_or_default();
        assert!(is_swift_trans_id(tx), "{path}: {r:?}");
        assert_eq!(r.header("x-openstack-request-id"), Some(tx), "{path}");
    }
    assert!(
        fed.cluster("east")
            .log()
            .iter()
            .all(|l| !l.path.starts_with("/v")),
        "the proxy answered these itself"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trans_ids_reach_the_clusters_and_answers_carry_the_proxys() {
    let fed = Federation::start(1).await;
    fed.login().await;
    fed.put_container("c", None).await;
    fed.cluster("east").clear_log();
    let r = fed
        .request("HEAD", &p("c"))
        .header("x-trans-id-extra", "job-7")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let tx = r.header("x-trans-id").unwrap().to_owned();
    assert!(is_swift_trans_id(&tx) && tx.ends_with("-job-7"), "{tx}");
    assert_eq!(r.header("x-openstack-request-id"), Some(tx.as_str()));
    let log = fed.cluster("east").log();
    let sent = log
        .iter()
        .find(|l| l.method == Method::HEAD)
        .and_then(|l| l.headers.get("x-trans-id-extra"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(sent, tx, "the cluster's logs can name the proxy's id");
}

#[tokio::test(flavor = "multi_thread")]
async fn object_puts_are_refused_on_their_head_as_swift_does() {
    let fed = Federation::start(1).await;
    fed.login().await;
    fed.put_container("c", None).await;
    fed.cluster("east").clear_log();
    // Values from a real Swift 2.38 cluster; the fake's /info says max_file_size
    // 5368709122.
    for (headers, status, text) in [
        (
            vec![("transfer-encoding", "gzip,chunked")],
            501,
            "Unsupported Transfer-Coding header value specified in Transfer-Encoding header",
        ),
        (
            vec![("content-length", "5368709123")],
            413,
            "Your request is too large.",
        ),
        (vec![], 411, "Missing Content-Length header."),
    ] {
        let mut call = fed.request("PUT", &p("c/o"));
        for (k, v) in &headers {
            call = call.header(k, v);
        }
        let r = call.send().await;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (status, text),
            "{headers:?}"
        );
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
    assert!(
        fed.cluster("east")
            .log()
            .iter()
            .all(|l| l.method != Method::PUT),
        "nothing reached the cluster"
    );
    // A copy makes its own body: no length needed.
    fed.put_object("c", "src", b"hello").await;
    let r = fed
        .request("PUT", &p("c/dst"))
        .header("x-copy-from", "c/src")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn account_listings_take_what_swift_takes() {
    let fed = Federation::start(2).await;
    fed.login().await;
    for (name, pin) in [
        ("xab1", "east"),
        ("xab2", "west"),
        ("yab", "west"),
        ("z", "east"),
    ] {
        fed.put_container(name, Some(pin)).await;
    }
    // A real cluster: `?delimiter=ab` rolls up at the first "ab", 200.
    let r = fed.request("GET", &p("?delimiter=ab")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.text(), "xab\nyab\nz\n");
    // Limits that are not all digits are the default; only > 10000 is refused.
    for q in ["?limit=-1", "?limit=abc", "?limit="] {
        let r = fed.request("GET", &p(q)).send().await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {r:?}");
        assert_eq!(r.text().lines().count(), 4, "{q}");
    }
    let r = fed.request("GET", &p("?limit=10001")).send().await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (412, "Maximum limit is 10000")
    );
    // An empty listing: 204 with Content-Length 0 and the listing's type.
    let r = fed.request("GET", &p("?prefix=nothing")).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
}

#[tokio::test(flavor = "multi_thread")]
async fn account_methods_the_proxy_does_not_handle_go_to_a_cluster() {
    let fed = Federation::start(2).await;
    fed.login().await;
    let r = fed.request("OPTIONS", &p("")).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.header("allow"),
        Some("GET, HEAD, POST, PUT, OPTIONS, DELETE")
    );
    let r = fed.request("LICK", &p("")).send().await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_storage_policy_is_the_default() {
    let fed = Federation::start(2).await;
    fed.login().await;
    let r = fed
        .request("PUT", &p("c"))
        .header("x-storage-policy", "")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_temp_url_manifest_put_is_left_to_the_cluster() {
    // Swift's tempurl middleware refuses manifests and links itself; the proxy neither
    // moves containers nor answers 409 for such a request.
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("segs", Some("west")).await;
    fed.put_object("segs", "s1", b"aaa").await;
    fed.put_container("m", Some("east")).await;
    fed.put_object("m", "kept", b"1").await;
    let r = fed
        .request(
            "PUT",
            &p("m/d?temp_url_sig=abc&temp_url_expires=9999999999"),
        )
        .header("x-object-manifest", "segs/s")
        .body("")
        .send()
        .await;
    assert_ne!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert_eq!(fed.holders("m"), ["east"], "nothing moved");
    assert!(
        fed.cluster("east").count("PUT", &p("m/d")) >= 1,
        "the cluster was asked"
    );
}

// ----- large objects across clusters (the proxy stores and assembles them) -------------

#[tokio::test(flavor = "multi_thread")]
async fn an_slo_across_clusters_is_stored_marked_and_assembled_by_the_proxy() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("m", Some("east")).await;
    fed.put_object("m", "filler", b"f").await;
    fed.put_container("segs", Some("west")).await;
    fed.put_object("segs", "s1", b"aaaa").await;
    fed.put_object("segs", "s2", b"bbbbbb").await;
    let manifest =
        r#"[{"path": "/segs/s1"}, {"path": "/segs/s2", "range": "1-3"}, {"data": "Y2M="}]"#;
    let r = fed
        .request("PUT", &p("m/big?multipart-manifest=put"))
        .header("content-type", "application/test")
        .body(manifest)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // The SLO ETag: md5 of the segments' etags (a ranged one as `etag:range;`) and of
    // the inline data's md5.
    let md5 = |b: &[u8]| {
        use md5::Digest;
        md5::Md5::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let expected = md5(format!("{}{}:1-3;{}", md5(b"aaaa"), md5(b"bbbbbb"), md5(b"cc")).as_bytes());
    assert_eq!(r.header("etag"), Some(format!("\"{expected}\"").as_str()));
    // Stored on the manifest's cluster as a plain, marked object; nothing on the other.
    let stored = fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "m", "big")
        .unwrap();
    assert_eq!(
        stored.content_type,
        format!("application/test;stackfed_slo={expected}-9")
    );
    let entries: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
    assert_eq!(entries[0]["name"], "/segs/s1");
    assert_eq!(entries[1]["range"], "1-3");
    assert!(fed
        .cluster("west")
        .object(DEFAULT_ACCOUNT, "m", "big")
        .is_none());
    // Read back: whole, a range across three parts, a part number; the marker never shows.
    let r = fed.request("GET", &p("m/big")).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"aaaabbbcc");
    assert_eq!(r.header("content-type"), Some("application/test"));
    assert_eq!(r.header("x-static-large-object"), Some("True"));
    let r = fed
        .request("GET", &p("m/big"))
        .header("range", "bytes=3-7")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"abbbc");
    assert_eq!(r.header("content-range"), Some("bytes 3-7/9"));
    let r = fed.request("GET", &p("m/big?part-number=2")).send().await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], b"bbb");
    assert_eq!(r.header("x-parts-count"), Some("3"));
    let r = fed.request("GET", &p("m?format=json")).send().await;
    let big = r.json()[0].clone();
    assert_eq!(big["bytes"], 9);
    assert_eq!(big["content_type"], "application/test");
    assert_eq!(big["slo_etag"], format!("\"{expected}\""));
    // A client may not forge the marker.
    let r = fed
        .request("PUT", &p("m/forged"))
        .header("content-type", "a/b;stackfed_slo=x-1")
        .body("[]")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_segment_elsewhere_is_swifts_400() {
    let fed = Federation::start(2).await;
    fed.login().await;
    fed.put_container("m", Some("east")).await;
    fed.put_object("m", "filler", b"f").await;
    fed.put_container("segs", Some("west")).await;
    fed.put_object("segs", "s1", b"aaaa").await;
    let r = fed
        .request("PUT", &p("m/big?multipart-manifest=put"))
        .body(r#"[{"path": "/segs/s1", "size_bytes": 3}, {"path": "/segs/gone"}]"#)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(
        r.text(),
        "Errors:\n/segs/s1, Size Mismatch\n/segs/gone, 404 Not Found\n"
    );
    assert!(fed
        .cluster("east")
        .object(DEFAULT_ACCOUNT, "m", "big")
        .is_none());
}

/// A container listing longer than any buffer the proxy keeps streams through, its
/// marked entries rewritten on the way. (Swift's own limits make such listings valid:
/// 10,000 entries of 1,024-byte names of 3-byte characters are over 20 MB of JSON; here
/// 3,000 names of control characters, six bytes each escaped, make 18 MB. Past 16 MiB
/// they were answered 502.)
#[tokio::test]
async fn a_listing_longer_than_any_buffer_streams_through_rewritten() {
    let fed = Federation::start(1).await;
    fed.login().await;
    fed.put_container("big", Some("east")).await;
    let east = fed.cluster("east");
    let names: Vec<String> = (0..3000)
        .map(|i| format!("{}{i:04}", "\u{1}".repeat(1020)))
        .collect();
    for n in &names {
        east.put_object_direct(DEFAULT_ACCOUNT, "big", n, b"x");
    }
    east.set_content_type_direct(
        DEFAULT_ACCOUNT,
        "big",
        &names[1500],
        "text/plain;stackfed_slo=0123abcd-12345",
    );
    let list = fed
        .request("GET", &p("big?format=json&limit=3000"))
        .send()
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.header("content-length"), None);
    let entries = list.json();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 3000);
    assert_eq!(entries[1500]["bytes"], 12345);
    assert_eq!(entries[1500]["content_type"], "text/plain");
    assert_eq!(entries[1500]["slo_etag"], "\"0123abcd\"");
    assert!(list.body.len() > 16 * 1024 * 1024, "{}", list.body.len());
    // Every other entry as the cluster lists it.
    for (i, (e, name)) in entries.iter().zip(&names).enumerate() {
        assert_eq!(e["name"], name.as_str(), "entry {i}");
        if i != 1500 {
            assert_eq!(e["bytes"], 1, "entry {i}");
            assert_eq!(e["content_type"], "application/octet-stream", "entry {i}");
            assert!(e.get("slo_etag").is_none(), "entry {i}");
        }
    }
}

// ----- the operator's admin API (`/federation/v1/...`) ------------------------------------

const OPERATOR: &str = "test:tester";

/// The admin API over `service` (operator: the fake's own user), and its background.
fn admin_over(
    service: &swift_proto::FederationService,
) -> (
    swift_proto::migrate::AdminService,
    swift_proto::migrate::Migrations,
    stackfed_http::Background,
) {
    let config: swift_proto::migrate::MigrationConfig = serde_json::from_value(serde_json::json!({
        "operator_user": OPERATOR, "operator_key": DEFAULT_KEY,
        "lease": "3s", "settle": "100ms", "resume_interval": "1h",
    }))
    .unwrap();
    let background = stackfed_http::Background::new();
    let migrations = swift_proto::migrate::Migrations::start(
        service,
        config,
        Duration::from_millis(100),
        &background,
    );
    (
        swift_proto::migrate::AdminService::new(service.clone(), migrations.clone()),
        migrations,
        background,
    )
}

/// One admin request: (status, headers, JSON body or null).
async fn admin_call(
    admin: &swift_proto::migrate::AdminService,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path);
    if let Some(t) = token {
        req = req.header("x-auth-token", t);
    }
    if path.ends_with("/auth") {
        req = req
            .header("x-auth-user", OPERATOR)
            .header("x-auth-key", DEFAULT_KEY);
    }
    let reply = admin
        .handle(
            req.body(http_body_util::Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await;
    let (parts, body) = reply.into_parts();
    let bytes = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

async fn operator_token(admin: &swift_proto::migrate::AdminService) -> String {
    let (status, headers, _) = admin_call(admin, "GET", "/federation/v1/auth", None, "").await;
    assert_eq!(status, StatusCode::OK);
    headers["x-auth-token"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_a_missing_container_is_not_found() {
    let fed = Federation::start(2).await;
    let (admin, _, background) = admin_over(&fed.service);
    let token = operator_token(&admin).await;
    let (status, headers, body) = admin_call(
        &admin,
        "POST",
        "/federation/v1/migrations",
        Some(&token),
        r#"{"account": "AUTH_test", "container": "no-such-container", "to": "west"}"#,
    )
    .await;
    // As Swift answers for a missing container; in the admin API's JSON format.
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no-such-container"),
        "{body}"
    );
    // A destination that is not configured is named first (409), whatever the container.
    let (status, _, body) = admin_call(
        &admin,
        "POST",
        "/federation/v1/migrations",
        Some(&token),
        r#"{"account": "AUTH_test", "container": "no-such-container", "to": "esat"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("esat"), "{body}");
    background.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_path_answers_other_methods_with_405_and_allow() {
    let fed = Federation::start(2).await;
    let (admin, _, background) = admin_over(&fed.service);
    let token = operator_token(&admin).await;
    let paths: [(&str, &[&str]); 8] = [
        ("/federation/v1/auth", &["GET"]),
        ("/federation/v1/migrations", &["GET", "POST"]),
        ("/federation/v1/migrations/m1-x", &["GET", "DELETE"]),
        ("/federation/v1/migrations/m1-x/cancel", &["POST"]),
        ("/federation/v1/drains", &["GET", "POST"]),
        ("/federation/v1/drains/d1-x", &["GET"]),
        ("/federation/v1/rebalances", &["GET", "POST"]),
        ("/federation/v1/rebalances/r1-x", &["GET"]),
    ];
    for (path, allowed) in paths {
        for method in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "COPY",
        ] {
            for (with_token, slash) in [(Some(token.as_str()), ""), (None, "/")] {
                let path = format!("{path}{slash}");
                let (status, headers, body) =
                    admin_call(&admin, method, &path, with_token, "{}").await;
                if allowed.contains(&method) {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    assert!(headers.get("allow").is_none(), "{method} {path}");
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path}: {body}"
                    );
                    assert_eq!(headers["allow"], allowed.join(", "), "{method} {path}");
                    assert_eq!(headers["content-type"], "application/json");
                    assert!(body["error"].is_string(), "{method} {path}: {body}");
                }
            }
        }
    }
    // A path the admin API does not have stays 404.
    for path in [
        "/federation/v1/nothing",
        "/federation/v1/drains/d1/x",
        "/federation/v2/drains",
    ] {
        let (status, _, _) = admin_call(&admin, "PUT", path, Some(&token), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    background.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_asked_to_drain_one_cluster_at_once_start_one_drain() {
    for round in 0..3 {
        let fed = Federation::start(2).await;
        fed.login().await;
        fed.put_container(&format!("held-{round}"), Some("east"))
            .await;
        // Two proxies sharing one attribute store, each with its own admin API.
        let (a, _, bg_a) = admin_over(&fed.service);
        let (b, _, bg_b) = admin_over(&fed.another_proxy());
        let (ta, tb) = (operator_token(&a).await, operator_token(&b).await);
        let body = r#"{"account": "AUTH_test", "cluster": "east", "concurrency": 1}"#;
        let (ra, rb) = tokio::join!(
            admin_call(&a, "POST", "/federation/v1/drains", Some(&ta), body),
            admin_call(&b, "POST", "/federation/v1/drains", Some(&tb), body),
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::ACCEPTED, StatusCode::CONFLICT],
            "round {round}: {} / {}",
            ra.2,
            rb.2
        );
        let (won, lost) = if ra.0 == StatusCode::ACCEPTED {
            (ra.2, rb.2)
        } else {
            (rb.2, ra.2)
        };
        let id = won["id"].as_str().unwrap();
        // The loser names the drain that runs.
        assert!(lost["error"].as_str().unwrap().contains(id), "{lost}");
        for (admin, token) in [(&a, &ta), (&b, &tb)] {
            let (_, _, all) =
                admin_call(admin, "GET", "/federation/v1/drains", Some(token), "").await;
            let ids: Vec<&str> = all["drains"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, [id], "round {round}");
        }
        bg_a.shutdown().await;
        bg_b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_migration_the_admin_api_says_it_is_not_enabled() {
    let fed = Federation::start(2).await;
    let admin = swift_proto::migrate::AdminService::disabled(fed.service.clone());
    for (method, path) in [
        ("GET", "/federation/v1/drains"),
        ("GET", "/federation/v1/auth"),
        ("POST", "/federation/v1/migrations"),
        ("PUT", "/federation/v1/drains"),
        ("GET", "/federation/v1/nothing"),
    ] {
        let (status, headers, body) = admin_call(&admin, method, path, Some("x"), "{}").await;
        assert_eq!(
            status,
            StatusCode::NOT_IMPLEMENTED,
            "{method} {path}: {body}"
        );
        assert_eq!(headers["content-type"], "application/json");
        assert!(
            body["error"].as_str().unwrap().contains("[migration]"),
            "{body}"
        );
    }
    // Swift's own paths are the proxy's, as before.
    let (status, _, _) = admin_call(&admin, "GET", "/healthcheck", None, "").await;
    assert_eq!(status, StatusCode::OK);
}
