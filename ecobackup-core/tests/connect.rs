//! Connections as libpq makes them, against a server configured like a managed production one
//! (TLS only, SCRAM only, a least-privilege role): every connection string form, the `PG*`
//! environment, password files and `sslmode`, for ecobackup's own connections and for the
//! programs it starts alike.

use ecobackup_core::postgres::binaries::find_program;
use ecobackup_core::postgres::{DbUrl, PgEnv};
use ecobackup_core::process::ChildCommand;
use ecobackup_testkit::secure_pg::{BACKUP_PASSWORD, RESTORER_PASSWORD};
use ecobackup_testkit::SecurePg;

/// What the server says about a session: user, database, TLS, application name.
const WHO: &str = "SELECT current_user, current_database(), \
    (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
    current_setting('application_name')";

async fn who_we_are(url: &DbUrl) -> (String, String, bool, String) {
    let client = url
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", url.redacted()));
    let row = client.query_one(WHO, &[]).await.unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

/// The same question asked by psql, started as ecobackup starts pg_dump.
async fn who_the_child_is(pg: &SecurePg, url: &DbUrl) -> (String, String, bool, String) {
    let major = pg
        .superuser("postgres")
        .await
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap();
    let major: u32 = major.get::<_, String>(0).parse::<u32>().unwrap() / 10_000;
    let psql = find_program("psql", major, None).await.unwrap();
    let out = url
        .apply(
            ChildCommand::new(psql)
                .arg("-X")
                .arg("--no-password")
                .arg("-A")
                .arg("-t")
                .arg("-F|")
                .arg(format!("--command={WHO}")),
        )
        .output()
        .await
        .unwrap_or_else(|e| panic!("psql with {}: {e}", url.redacted()));
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields.len(), 4, "{out}");
    (
        fields[0].to_owned(),
        fields[1].to_owned(),
        fields[2] == "t",
        fields[3].to_owned(),
    )
}

fn base_env(pg: &SecurePg) -> PgEnv {
    // No inherited PG* variables, no ~/.pgpass: only what each case sets.
    PgEnv::without_variables()
        .with_home(pg.dir())
        .with_var("PGPASSFILE", pg.password_file().display().to_string())
}

#[tokio::test]
async fn every_connection_string_form_reaches_the_same_database_as_the_same_user() {
    let pg = SecurePg::start().await;
    let shop = pg.shop(1).await;
    let port = pg.port();
    let ca = pg.ca_file().display().to_string();
    let socket = pg.socket_dir().display().to_string();
    let encoded_socket = socket.replace('/', "%2F");
    let forms = [
        pg.url("backup", &shop),
        format!("postgres://backup@localhost:{port}/{shop}?sslrootcert={ca}&sslmode=verify-full"),
        // libpq's documented socket forms, the first one the issue's.
        format!("postgresql://backup@/{shop}?host={socket}&port={port}"),
        format!("postgresql:///{shop}?user=backup&host={encoded_socket}&port={port}"),
        format!("postgresql://backup@{encoded_socket}:{port}/{shop}"),
        // key/value
        format!("host=localhost port={port} dbname={shop} user=backup sslmode=verify-full sslrootcert={ca}"),
        // several hosts: the first is down, the second answers
        format!("postgresql://backup@localhost:1,localhost:{port}/{shop}?sslmode=verify-full&sslrootcert={ca}"),
        // sslmode=prefer (the default) reaches a TLS-only server
        format!("postgresql://backup@localhost:{port}/{shop}"),
        format!("host=localhost port={port} dbname={shop} user=backup sslmode=require"),
    ];
    let env = base_env(&pg);
    for form in &forms {
        let url = DbUrl::parse_with(form, &env).unwrap_or_else(|e| panic!("{form}: {e}"));
        let ours = who_we_are(&url).await;
        assert_eq!(
            (ours.0.as_str(), ours.1.as_str()),
            ("backup", shop.as_str()),
            "{form}"
        );
        assert_eq!(ours.3, "ecobackup", "{form}");
        let child = who_the_child_is(&pg, &url).await;
        assert_eq!(
            (child.0.as_str(), child.1.as_str()),
            ("backup", shop.as_str()),
            "{form}"
        );
        assert_eq!(child.3, "ecobackup/psql", "{form}");
        // Over TCP both halves use TLS; over the socket neither does (as libpq).
        let tcp = !form.contains(&socket) && !form.contains(&encoded_socket);
        assert_eq!((ours.2, child.2), (tcp, tcp), "{form}");
    }
}

#[tokio::test]
async fn children_are_pinned_to_the_server_that_answered() {
    let pg = SecurePg::start().await;
    let port = pg.port();
    let ca = pg.ca_file().display();
    let url = DbUrl::parse_with(
        &format!("postgresql://backup@localhost:1,localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}&load_balance_hosts=random"),
        &base_env(&pg),
    )
    .unwrap();
    assert_eq!(url.endpoints().len(), 2);
    let (_, pinned) = url.connect_pinned().await.unwrap();
    assert_eq!(pinned.endpoints().len(), 1);
    assert_eq!(pinned.endpoints()[0].port, port);
    assert_eq!(who_the_child_is(&pg, &pinned).await.0, "backup");
}

#[tokio::test]
async fn pg_variables_reach_ecobackup_and_its_children_alike() {
    let pg = SecurePg::start().await;
    let shop = pg.shop(1).await;
    let env = PgEnv::without_variables()
        .with_home(pg.dir())
        .with_var("PGHOST", "localhost")
        .with_var("PGPORT", pg.port().to_string())
        .with_var("PGUSER", "restorer")
        .with_var("PGDATABASE", &shop)
        .with_var("PGSSLMODE", "verify-full")
        .with_var("PGSSLROOTCERT", pg.ca_file().display().to_string())
        .with_var("PGPASSWORD", RESTORER_PASSWORD)
        .with_var("PGAPPNAME", "nightly-backup");
    let url = DbUrl::parse_with("", &env).unwrap();
    let ours = who_we_are(&url).await;
    let child = who_the_child_is(&pg, &url).await;
    let expected = (
        "restorer".to_owned(),
        shop.clone(),
        true,
        "nightly-backup".to_owned(),
    );
    assert_eq!(ours, expected);
    assert_eq!(child, expected);
    // An explicit user wins over PGUSER, on both sides.
    let url = DbUrl::parse_with(
        "user=backup",
        &env.clone().with_var("PGPASSWORD", BACKUP_PASSWORD),
    )
    .unwrap();
    assert_eq!(who_we_are(&url).await.0, "backup");
    assert_eq!(who_the_child_is(&pg, &url).await.0, "backup");
    // The server log agrees: every TCP connection of the roles was over TLS.
    let lines = pg.connections();
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("user=restorer") || l.contains("user=backup"))
        .collect();
    assert!(ours.len() >= 4, "{lines:#?}");
    assert!(ours.iter().all(|l| l.contains("SSL enabled")), "{ours:#?}");
}

#[tokio::test]
async fn tls_and_password_failures_say_what_to_do() {
    let pg = SecurePg::start().await;
    let port = pg.port();
    let env = base_env(&pg);
    let fails = |form: String, env: PgEnv| async move {
        let url = DbUrl::parse_with(&form, &env).unwrap_or_else(|e| panic!("{form}: {e}"));
        let err = url
            .connect()
            .await
            .map(|_| ())
            .expect_err(&form)
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(!err.contains(BACKUP_PASSWORD), "{err}");
        err
    };
    let ca = pg.ca_file().display().to_string();

    // A TLS-only server reached without TLS.
    let err = fails(
        format!("host=localhost port={port} dbname=postgres user=backup sslmode=disable"),
        env.clone(),
    )
    .await;
    assert!(
        err.contains("accepts only TLS") && err.contains("sslmode=disable"),
        "{err}"
    );

    // The wrong CA.
    let err = fails(
        format!("host=localhost port={port} dbname=postgres user=backup sslmode=verify-full sslrootcert={}", pg.other_ca_file().display()),
        env.clone(),
    )
    .await;
    assert!(
        err.contains("does not verify") && err.contains("sslrootcert"),
        "{err}"
    );

    // The right CA but a host name the certificate does not list: verify-full fails,
    // verify-ca (chain only) passes.
    let err = fails(
        format!("host=127.0.0.1 port={port} dbname=postgres user=backup sslmode=verify-full sslrootcert={ca}"),
        env.clone(),
    )
    .await;
    assert!(
        err.contains("not valid for host") && err.contains("verify-ca"),
        "{err}"
    );
    let url = DbUrl::parse_with(
        &format!("host=127.0.0.1 port={port} dbname=postgres user=backup sslmode=verify-ca sslrootcert={ca}"),
        &env,
    )
    .unwrap();
    assert!(who_we_are(&url).await.2);

    // No password anywhere: the message lists what was tried.
    let no_file = PgEnv::without_variables()
        .with_home(pg.dir())
        .with_var("PGPASSFILE", pg.dir().join("absent").display().to_string());
    let err = fails(
        format!("host=localhost port={port} dbname=postgres user=backup"),
        no_file,
    )
    .await;
    assert!(
        err.contains("none was found")
            && err.contains("PGPASSWORD")
            && err.contains("does not exist"),
        "{err}"
    );

    // A password file others can read is ignored, and the message says so.
    let loose = pg.dir().join("loose-pgpass");
    std::fs::copy(pg.password_file(), &loose).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let err = fails(
        format!(
            "host=localhost port={port} dbname=postgres user=backup passfile={}",
            loose.display()
        ),
        env.clone(),
    )
    .await;
    assert!(err.contains("ignored") && err.contains("0600"), "{err}");

    // A wrong password: SCRAM fails, and the message says where the password came from.
    let err = fails(
        format!("host=localhost port={port} dbname=postgres user=backup"),
        env.clone().with_var("PGPASSWORD", "wrong"),
    )
    .await;
    assert!(
        err.contains("password authentication failed") && err.contains("PGPASSWORD"),
        "{err}"
    );
}
