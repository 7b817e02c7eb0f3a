use super::*;

#[test]
fn identifiers_and_urls_are_quoted() {
    assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    assert_eq!(conf_string("/tmp/it's"), "'/tmp/it''s'");
}

#[tokio::test]
async fn a_cluster_starts_serves_and_vanishes() {
    let cluster = Cluster::start(ClusterOptions {
        fsync: false,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    cluster
        .create_database("with \"quotes\" and spaces")
        .await
        .unwrap();
    let client = connect(&cluster.url("with \"quotes\" and spaces"))
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('server_version_num')::int",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "with \"quotes\" and spaces");
    assert_eq!(row.get::<_, i32>(1) as u32 / 10000, cluster.major_version());
    let root = cluster.data_dir().parent().unwrap().to_owned();
    drop(client);
    cluster.shutdown().await.unwrap();
    assert!(!root.exists());
}

#[tokio::test]
async fn connection_errors_name_the_url_without_its_password() {
    let port = free_port().unwrap();
    let err = connect(&format!("postgres://me:hunter2@127.0.0.1:{port}/db"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("connecting to postgres://me@127.0.0.1:{port}/db")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("refused"), "{err}");
}
