//! What the store's focused test files share: one macro that runs each test
//! body against SQLite (a temporary file) and PostgreSQL (a fresh schema per
//! test). The PostgreSQL half fails, never skips, when the server is
//! unreachable.

/// `both_backends! { test_a, test_b }`: each `async fn test_a(store: Store)`
/// in the calling file runs as `sqlite::test_a` and `postgres::test_a`.
macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = bulwark_store::Store::open(
                        &bulwark_store::testing::sqlite_test_url(dir.path()),
                    )
                    .await
                    .unwrap();
                    assert_eq!(store.backend(), bulwark_store::Backend::Sqlite);
                    super::$test(store.clone()).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (url, guard) = bulwark_store::testing::postgres_test_url()
                        .await
                        .unwrap_or_else(|error| {
                            panic!(
                                "PostgreSQL is required for these tests (set BULWARK_TEST_POSTGRES_URL; \
                                 default postgres://postgres@127.0.0.1:5432/test): {error:?}"
                            )
                        });
                    let store = bulwark_store::Store::open(&url).await.unwrap();
                    assert_eq!(store.backend(), bulwark_store::Backend::Postgres);
                    super::$test(store.clone()).await;
                    store.close().await;
                    guard.drop().await;
                }
            )*
        }
    };
}
