//! Throwaway PostgreSQL clusters and the demo shop, against real servers.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ecobackup_core::postgres::binaries::installed_server_dirs;
use ecobackup_core::postgres::binaries::{find_program, program_major_version};
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;
use ecobackup_testkit::fixture::{load_shop, table_fingerprints};
use ecobackup_testkit::secure_pg::REPLICATOR_PASSWORD;
use ecobackup_testkit::{ClusterHooks as _, SecureOptions, SecurePg, TestPg, TESTED_MAJORS};

/// A throwaway cluster with fsync off, or `None` (the test is skipped) when this machine has no
/// PostgreSQL server programs and the tests run against an external server.
async fn local_cluster() -> Option<Cluster> {
    if installed_server_dirs(None).await.is_empty()
        && std::env::var_os("ECOBACKUP_TEST_DATABASE_URL").is_some()
    {
        eprintln!("no PostgreSQL server programs here: skipping a test of throwaway clusters");
        return None;
    }
    Some(
        Cluster::start(ClusterOptions {
            fsync: false,
            ..ClusterOptions::default()
        })
        .await
        .unwrap(),
    )
}

/// The server's unix socket (`.s.PGSQL.<port>` in its socket directory).
fn socket(cluster: &Cluster) -> PathBuf {
    cluster
        .socket_dir()
        .join(format!(".s.PGSQL.{}", cluster.port()))
}

fn accepts_connections(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// The postmaster's pid, from its pid file.
fn postmaster_pid(cluster: &Cluster) -> u32 {
    let text = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Whether process `pid` still runs (a zombie waiting for its parent does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Waits until `done` holds; panics naming `what` if it does not within a minute.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_shop_loads_and_fingerprints_follow_its_content() {
    let pg = TestPg::start().await;
    let url = pg.fresh_database("fixture").await;
    let client = connect(&url).await.unwrap();

    let started = Instant::now();
    let summary = load_shop(&client, 1).await.unwrap();
    eprintln!("scale 1 loaded in {:?}", started.elapsed());

    let names: Vec<&str> = summary.tables.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "public.tenants",
            "public.products",
            "public.customers",
            "public.orders",
            "public.order_items",
            "public.payments",
            "public.invoices"
        ]
    );
    assert_eq!(summary.rows("tenants"), Some(2));
    assert_eq!(summary.rows("products"), Some(250));
    assert_eq!(summary.rows("customers"), Some(1500));
    assert_eq!(summary.rows("orders"), Some(7000));
    assert_eq!(summary.rows("order_items"), Some(21000));
    let payments = summary.rows("payments").unwrap();
    let invoices = summary.rows("invoices").unwrap();
    assert!((5000..7000).contains(&payments), "{summary:?}");
    assert!((4500..payments).contains(&invoices), "{summary:?}");

    // What the schema promises: recent rows, random bytes, a sequence in use, a view, a
    // function and a read-only role.
    let size = count(&client, "SELECT pg_database_size(current_database())").await;
    assert!((8 << 20..40 << 20).contains(&size), "{size}");
    assert!(
        count(
            &client,
            "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'"
        )
        .await
            > 10
    );
    assert!(
        count(
            &client,
            "SELECT count(*) FROM orders WHERE created_at < now() - interval '80 days'"
        )
        .await
            > 10
    );
    assert_eq!(
        count(
            &client,
            "SELECT min(octet_length(card_token))::bigint FROM payments"
        )
        .await,
        96
    );
    assert_eq!(
        count(&client, "SELECT count(DISTINCT card_token) FROM payments").await,
        payments
    );
    assert_eq!(
        count(&client, "SELECT last_value FROM invoice_number_seq").await,
        100_000 + invoices
    );
    assert!(count(&client, "SELECT count(*) FROM reporting.daily_revenue").await >= 90);
    assert_eq!(
        count(&client, "SELECT count(*) FROM orders WHERE order_total(id) = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = orders.id)").await,
        7000
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM orders WHERE details #>> '{shipping,address,city}' IS NOT NULL"
        )
        .await,
        7000
    );
    let reader: bool = client
        .query_one(
            "SELECT has_table_privilege('shop_reader', 'public.orders', 'SELECT') \
             AND has_table_privilege('shop_reader', 'reporting.daily_revenue', 'SELECT') \
             AND NOT has_table_privilege('shop_reader', 'public.orders', 'UPDATE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reader);

    // Fingerprints: stable, complete, and sensitive to one changed value.
    let first = table_fingerprints(&client).await.unwrap();
    let second = table_fingerprints(&client).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(first.len(), 7, "{first:?}");
    for (table, rows) in &summary.tables {
        assert_eq!(first[table].rows, *rows, "{table}");
        assert_eq!(first[table].md5.len(), 32);
    }
    client
        .batch_execute("UPDATE orders SET details = jsonb_set(details, '{gift}', 'true') WHERE id = 4242 AND NOT (details->>'gift')::bool")
        .await
        .unwrap();
    client
        .batch_execute("UPDATE payments SET amount = amount + 0.01 WHERE id = 1")
        .await
        .unwrap();
    let changed = table_fingerprints(&client).await.unwrap();
    for (table, fingerprint) in &changed {
        match table.as_str() {
            "public.orders" | "public.payments" => {
                assert_ne!(fingerprint.md5, first[table].md5, "{table}");
                assert_eq!(fingerprint.rows, first[table].rows, "{table}");
            }
            _ => assert_eq!(fingerprint, &first[table], "{table}"),
        }
    }
    // Back to the same values (rows now stored elsewhere, in another order): same fingerprint.
    client
        .batch_execute("UPDATE payments SET amount = amount - 0.01 WHERE id = 1")
        .await
        .unwrap();
    let back = table_fingerprints(&client).await.unwrap();
    assert_eq!(back["public.payments"], first["public.payments"]);
    // A second shop in the same server (the role exists already).
    let other = connect(&pg.shop(1).await).await.unwrap();
    assert_eq!(
        count(&other, "SELECT count(*) FROM order_items").await,
        21000
    );
}

#[tokio::test]
async fn a_cluster_stops_starts_restarts_and_survives_a_crash() {
    let Some(mut cluster) = local_cluster().await else {
        return;
    };
    let port = cluster.port();
    let socket = socket(&cluster);
    assert!(cluster.is_running());
    assert!(accepts_connections(&socket));
    assert!(cluster.bin_dir().join("pg_ctl").is_file());
    assert!(cluster.major_version() >= 10);
    cluster.create_database("life").await.unwrap();
    let life = cluster.url("life");
    let insert = |n: i32| {
        let url = life.clone();
        async move {
            let client = connect(&url).await.unwrap();
            // synchronous_commit is off without fsync: make this commit survive a crash.
            client
                .batch_execute(&format!(
                    "SET synchronous_commit = on; CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t VALUES ({n})"
                ))
                .await
                .unwrap();
        }
    };
    let rows = |url: String| async move {
        let client = connect(&url).await.unwrap();
        count(&client, "SELECT count(*) FROM t").await
    };
    insert(1).await;

    cluster.stop().await.unwrap();
    assert!(!cluster.is_running());
    assert!(!accepts_connections(&socket));
    assert!(connect(&cluster.url("life")).await.is_err());
    cluster.stop().await.unwrap(); // stopping a stopped cluster is fine

    cluster.start_again().await.unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(rows(life.clone()).await, 1);

    cluster.restart().await.unwrap();
    assert_eq!(rows(life.clone()).await, 1);
    insert(2).await;

    cluster.crash().await.unwrap();
    assert!(!accepts_connections(&socket));
    cluster.start_again().await.unwrap();
    assert_eq!(rows(life.clone()).await, 2);
    let log = std::fs::read_to_string(cluster.log_file()).unwrap();
    assert!(
        log.contains("not properly shut down"),
        "no crash recovery in the log:\n{log}"
    );
}

#[tokio::test]
async fn dropping_a_cluster_stops_it_and_removes_its_directory() {
    let Some(cluster) = local_cluster().await else {
        return;
    };
    let dir = cluster.data_dir().parent().unwrap().to_owned();
    assert!(dir.join("data/PG_VERSION").is_file());
    let client = connect(&cluster.url("postgres")).await.unwrap();
    assert_eq!(count(&client, "SELECT 1::bigint").await, 1);
    let postmaster = postmaster_pid(&cluster);
    assert!(running(postmaster));
    drop(client);
    // Drop does not wait (it may run on an async task): the stop finishes in the background.
    drop(cluster);
    eventually("the dropped cluster's server still runs", || {
        !running(postmaster)
    })
    .await;
    eventually("the dropped cluster's directory is still there", || {
        !dir.exists()
    })
    .await;
}

#[tokio::test]
async fn shutdown_stops_the_server_and_removes_its_directory_before_it_returns() {
    let Some(cluster) = local_cluster().await else {
        return;
    };
    let dir = cluster.data_dir().parent().unwrap().to_owned();
    let postmaster = postmaster_pid(&cluster);
    cluster.shutdown().await.unwrap();
    assert!(!dir.exists(), "{} is still there", dir.display());
    // pg_ctl stop -w returned once the postmaster was gone.
    assert!(!running(postmaster));
}

/// What `drill` and `demo` restore production data into: a unix socket in a directory of mode
/// 0700 that belongs to the server's user, and nothing on TCP.
#[tokio::test]
async fn by_default_only_the_servers_user_can_reach_a_cluster() {
    let Some(cluster) = local_cluster().await else {
        return;
    };
    let url = cluster.url("postgres");
    assert!(url.starts_with("postgresql:///postgres?host=%2F"), "{url}");
    let client = connect(&url).await.unwrap();
    let listen: String = client
        .query_one("SELECT current_setting('listen_addresses')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(listen, "", "no TCP address");
    assert!(accepts_connections(&socket(&cluster)));
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", cluster.port()))
            .await
            .is_err(),
        "something accepts TCP connections on port {}",
        cluster.port()
    );
    let socket_dir = std::fs::metadata(cluster.socket_dir()).unwrap();
    assert_eq!(socket_dir.permissions().mode() & 0o777, 0o700);
    let server_user = std::fs::metadata(cluster.data_dir()).unwrap().uid();
    assert_eq!(socket_dir.uid(), server_user, "the server's user owns it");
    drop(client);
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cluster_with_tcp_also_listens_on_loopback() {
    if installed_server_dirs(None).await.is_empty()
        && std::env::var_os("ECOBACKUP_TEST_DATABASE_URL").is_some()
    {
        return;
    }
    let cluster = Cluster::start(ClusterOptions {
        fsync: false,
        tcp: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    let url = cluster.url("postgres");
    assert_eq!(
        url,
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    let client = connect(&url).await.unwrap();
    assert_eq!(count(&client, "SELECT 3::bigint").await, 3);
    drop(client);
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_kept_cluster_keeps_running_in_its_directory() {
    let Some(cluster) = local_cluster().await else {
        return;
    };
    let url = cluster.url("postgres");
    let data_dir = cluster.data_dir().to_owned();
    let dir = cluster.keep();
    assert_eq!(dir.join("data"), data_dir);
    let client = connect(&url).await.unwrap();
    assert_eq!(count(&client, "SELECT 2::bigint").await, 2);
    drop(client);
    // Clean up by hand: SIGQUIT is an immediate shutdown.
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim().to_owned();
    let killed = std::process::Command::new("kill")
        .args(["-QUIT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for_removal(&data_dir.join("postmaster.pid")).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn wait_for_removal(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} is still there",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_bad_setting_fails_the_start_and_quotes_the_server_log() {
    if installed_server_dirs(None).await.is_empty()
        && std::env::var_os("ECOBACKUP_TEST_DATABASE_URL").is_some()
    {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    // When running as root, the server runs as `postgres`, which must reach the directory.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let err = Cluster::start(ClusterOptions {
        conf: vec!["shared_buffers = 'lots'".to_owned()],
        fsync: false,
        base_dir: Some(base.path().to_owned()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("pg_ctl start failed (exit status 1): starting PostgreSQL"),
        "{err}"
    );
    assert!(err.contains("the server log says"), "{err}");
    assert!(
        err.contains("invalid value for parameter \"shared_buffers\": \"lots\""),
        "{err}"
    );
    assert!(err.contains("contains errors"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    // Nothing is left behind.
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0);

    let err = Cluster::start(ClusterOptions {
        bin_dir: Some(base.path().to_owned()),
        ..ClusterOptions::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("no PostgreSQL server programs"), "{err}");
    assert!(err.contains("another bin directory"), "{err}");
}

#[tokio::test]
async fn shops_load_side_by_side_in_one_server() {
    // Both loads create the cluster-wide role `shop_reader` if it is missing: neither may fail.
    let pg = TestPg::start().await;
    let (one, two) = tokio::join!(pg.shop(1), pg.shop(1));
    assert_ne!(one, two);
    for url in [one, two] {
        let client = connect(&url).await.unwrap();
        assert_eq!(count(&client, "SELECT count(*) FROM orders").await, 7000);
    }
}

#[tokio::test]
async fn each_tested_major_runs_its_own_version_and_the_shop() {
    for major in TESTED_MAJORS {
        let pg = TestPg::start_major(major).await;
        assert_eq!(pg.major_version(), major);
        let client = pg.client("postgres").await;
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version / 10_000, major as i32);
        if let Some(bin_dir) = pg.bin_dir() {
            for program in ["pg_dump", "pg_restore", "psql", "pg_basebackup"] {
                assert_eq!(
                    program_major_version(&bin_dir.join(program)).await,
                    Some(major),
                    "{program} in {}",
                    bin_dir.display()
                );
            }
        }
        let shop = pg.shop(1).await;
        let shop = connect(&shop).await.unwrap();
        assert!(count(&shop, "SELECT count(*) FROM orders").await > 0);
    }
}

/// The server the physical backup and WAL tests start: extra settings (archiving), and a
/// `replicator` role that may connect for replication over TLS with its SCRAM password, and
/// only that way.
#[tokio::test]
async fn a_secure_server_takes_extra_settings_and_a_replication_role() {
    let pg = SecurePg::start_with(SecureOptions {
        conf: vec![
            "wal_level = replica".to_owned(),
            "archive_mode = on".to_owned(),
            "archive_command = '/bin/true %p'".to_owned(),
            "archive_timeout = 120".to_owned(),
        ],
        ..SecureOptions::default()
    })
    .await;
    let admin = pg.superuser("postgres").await;
    for (name, value) in [
        ("wal_level", "replica"),
        ("archive_mode", "on"),
        ("archive_command", "/bin/true %p"),
        ("archive_timeout", "120"),
        ("ssl", "on"),
    ] {
        let row = admin
            .query_one("SELECT setting FROM pg_settings WHERE name = $1", &[&name])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), value, "{name}");
    }
    let rolreplication: bool = admin
        .query_one(
            "SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(rolreplication);

    let psql = find_program("psql", pg.major_version(), Some(pg.cluster().bin_dir()))
        .await
        .unwrap();
    let password_file = pg.password_file();
    assert!(std::fs::read_to_string(&password_file)
        .unwrap()
        .contains(&format!(
            ":replicator:{}",
            REPLICATOR_PASSWORD.replace(':', "\\:")
        )));
    let identify = |user: &str, sslmode: &str| {
        let conninfo = format!(
            "host=localhost port={} user={user} dbname=replication replication=true sslmode={sslmode} sslrootcert={}",
            pg.port(),
            pg.ca_file().display()
        );
        let out = std::process::Command::new(&psql)
            .args(["-X", "-At", "-c", "IDENTIFY_SYSTEM", &conninfo])
            .env("PGPASSFILE", &password_file)
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let system_identifier: String = admin
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (ok, said) = identify("replicator", "verify-full");
    assert!(ok && said.starts_with(&system_identifier), "{said}");
    // Without TLS, and as a role without REPLICATION: refused.
    let (ok, said) = identify("replicator", "disable");
    assert!(!ok && said.contains("no pg_hba.conf entry"), "{said}");
    let (ok, said) = identify("backup", "verify-full");
    assert!(!ok, "{said}");
    // The replicator connected over TLS, as the log says.
    assert!(
        pg.connections().iter().any(|l| l
            .contains("replication connection authorized: user=replicator")
            && l.contains("SSL enabled")),
        "{:?}",
        pg.connections()
    );
}
