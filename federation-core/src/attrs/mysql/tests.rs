//! Against a real MariaDB (or MySQL) server: ignored by a plain `cargo test`;
//! `tests/interop` starts one (Debian's package, loopback, a temporary directory, a
//! user with a password) and runs these with `--ignored`, naming it in
//! `STACKFED_MYSQL_URL` (and the password file in `STACKFED_MYSQL_PASSWORD_FILE`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::attrs::sql::checks;

fn config() -> MysqlConfig {
    let url =
        std::env::var("STACKFED_MYSQL_URL").expect("STACKFED_MYSQL_URL names the test database");
    MysqlConfig {
        password_file: std::env::var_os("STACKFED_MYSQL_PASSWORD_FILE").map(PathBuf::from),
        ..MysqlConfig::new(url)
    }
}

async fn store() -> MysqlStore {
    MysqlStore::open(&config()).await.unwrap()
}

#[test]
fn configuration_hides_the_password_and_refuses_bad_values() {
    let c = MysqlConfig::new("mysql://fed:s3cret@db.example:3307/fed");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("3307"),
        "{shown}"
    );
    assert!(MysqlConfig::new("postgres://x@y/z").opts().is_err());
    let zero = MysqlConfig {
        timeout_seconds: 0.0,
        ..MysqlConfig::new("mysql://x@127.0.0.1/x")
    };
    assert!(matches!(zero.opts(), Err(StoreError::InvalidInput { .. })));
    let missing = MysqlConfig {
        password_file: Some("/nonexistent/stackfed-password".into()),
        ..MysqlConfig::new("mysql://x@127.0.0.1/x")
    };
    assert!(matches!(
        missing.opts(),
        Err(StoreError::InvalidInput { .. })
    ));
}

#[test]
fn errors_say_whether_a_retry_helps() {
    let server = |code| {
        my_error(mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "m".into(),
            state: "HY000".into(),
        }))
    };
    assert!(server(1213).is_retryable(), "deadlock");
    assert!(server(1040).is_retryable(), "too many connections");
    assert!(
        !server(1045).is_retryable(),
        "access denied: an operator must look"
    );
    assert!(!server(1146).is_retryable(), "missing table");
    let io = my_error(mysql_async::Error::Io(mysql_async::IoError::Io(
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    )));
    assert!(io.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn mysql_passes_the_conformance_suite() {
    crate::attrs::conformance::run_all(Arc::new(store().await), "my").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn two_pools_race_with_one_winner() {
    // Two independent pools, as two proxy processes have, 8 tasks each per name;
    // both opened at once (both migrate under the lock).
    let (one, two) = tokio::join!(store(), store());
    let (one, two) = (Arc::new(one), Arc::new(two));
    crate::attrs::conformance::two_stores_race_with_one_winner(one.clone(), two, "my").await;
    // A lost race is a no-op update: it logged no change.
    let mut conn = one.pool.get_conn().await.unwrap();
    let logged: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM stackfed_changes WHERE account LIKE 'AUTH_my_race2_%'")
        .await
        .unwrap();
    assert_eq!(logged, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn sessions_are_shared_bounded_and_expire() {
    let config = MysqlConfig {
        max_sessions: 3,
        ..config()
    };
    let one = MysqlStore::open(&config).await.unwrap();
    let two = MysqlStore::open(&config).await.unwrap();
    let mut conn = one.pool.get_conn().await.unwrap();
    conn.query_drop("DELETE FROM stackfed_sessions")
        .await
        .unwrap();
    let conn = tokio::sync::Mutex::new(conn);
    let count = || async {
        let n: Option<u64> = conn
            .lock()
            .await
            .query_first("SELECT COUNT(*) FROM stackfed_sessions")
            .await
            .unwrap();
        n.unwrap()
    };
    checks::sessions_are_shared_bounded_and_expire(&one, &two, count).await;
    conn.lock()
        .await
        .query_drop("DELETE FROM stackfed_sessions")
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn a_database_that_is_not_there_is_unavailable_quickly() {
    // A closed port on loopback: connection refused, a retryable error, no hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = MysqlConfig {
        timeout_seconds: 2.0,
        ..MysqlConfig::new(format!("mysql://x@127.0.0.1:{port}/x"))
    };
    let start = Instant::now();
    let err = MysqlStore::open(&config).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn a_wrong_password_is_refused_and_not_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let config = MysqlConfig {
        password_file: Some(wrong),
        ..config()
    };
    let err = MysqlStore::open(&config).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("Access denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn polling_the_change_log_bounds_how_long_a_stale_record_is_used() {
    let fed = store().await;
    let label = format!("change log polled every {:?}", fed.poll_interval);
    checks::feed_bounds_staleness(store().await, store().await, fed, |s, f| s.watch(f), &label)
        .await;
}

#[tokio::test]
#[ignore = "needs a real MariaDB; run by tests/interop"]
async fn connections_and_statements_are_reused() {
    // A pool that closed every connection on return (mysql_async's default with no
    // idle TTL) costs a connect, a login and a prepare per call: ten times slower.
    let store = store().await;
    let status = |name: &'static str| {
        let pool = store.pool.clone();
        async move {
            let mut conn = pool.get_conn().await.unwrap();
            let row: Option<(String, u64)> = conn
                .exec_first("SHOW GLOBAL STATUS WHERE Variable_name = ?", (name,))
                .await
                .unwrap();
            row.unwrap().1
        }
    };
    let (connections, prepares) = (
        status("Connections").await,
        status("Com_stmt_prepare").await,
    );
    let a = AccountName::new("AUTH_reuse").unwrap();
    for i in 0..100 {
        let c = ContainerName::new(format!("c{i}")).unwrap();
        assert!(store.get(&a, &c).await.unwrap().is_none());
    }
    let new_connections = status("Connections").await - connections;
    let new_prepares = status("Com_stmt_prepare").await - prepares;
    assert!(
        new_connections <= 3,
        "{new_connections} connections for 100 calls"
    );
    assert!(new_prepares <= 5, "{new_prepares} prepares for 100 calls");
}
