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

/// A device of `tenant_id` enrolled at `at` with the one-use token and
/// public key `[key; 32]`.
#[allow(dead_code)] // Not every test file enrols devices.
pub async fn enrolled_device(
    store: &bulwark_store::Store,
    tenant_id: &str,
    key: u8,
    hostname: &str,
    at: i64,
) -> bulwark_store::Device {
    store
        .create_enrollment_token([key; 32], tenant_id, None, at, at + 60_000, &[])
        .await
        .unwrap();
    store
        .enroll_device(
            [key; 32],
            bulwark_store::NewDevice {
                id: uuid::Uuid::new_v4().to_string(),
                public_key: [key; 32],
                hostname: hostname.to_owned(),
                agent_version: "0.1.0".to_owned(),
            },
            at,
        )
        .await
        .unwrap()
}
