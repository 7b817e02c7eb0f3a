use super::*;
use crate::crypto::ExposeSecret;

fn env() -> PgEnv {
    PgEnv {
        vars: BTreeMap::new(),
        home: None,
        os_user: Some("osuser".to_owned()),
    }
}

fn child_env(url: &DbUrl) -> BTreeMap<String, String> {
    url.apply_env(ChildCommand::new("/bin/true"))
        .env_for_tests()
        .into_iter()
        .collect()
}

#[test]
fn the_password_leaves_the_url_and_goes_to_the_environment() {
    let url = DbUrl::parse_with(
        "postgres://app:s%40cret@db.internal:6432/shop?sslmode=require",
        &env(),
    )
    .unwrap();
    assert_eq!(url.database(), "shop");
    assert_eq!(
        url.redacted(),
        "postgres://app@db.internal:6432/shop?sslmode=require"
    );
    assert!(url.has_password());
    let other = url.with_database("my db");
    assert_eq!(other.database(), "my db");
    assert!(!other.redacted().contains("cret"));
    assert!(!format!("{other:?}").contains("cret"));
    let vars = child_env(&url);
    assert_eq!(vars["PGPASSWORD"], "s@cret");
    assert_eq!(vars["PGHOST"], "db.internal");
    assert_eq!(vars["PGPORT"], "6432");
    assert_eq!(vars["PGUSER"], "app");
    assert_eq!(vars["PGSSLMODE"], "require");
}

#[test]
fn a_password_in_the_query_string_counts_as_in_the_url() {
    for text in [
        "postgres://u@h/db?password=hunter2",
        "host=h dbname=db password=hunter2",
    ] {
        let url = DbUrl::parse_with(text, &env()).unwrap();
        assert!(url.has_password(), "{text}");
        assert!(!url.redacted().contains("hunter2"), "{text}");
    }
}

#[test]
fn every_form_resolves_to_the_same_settings() {
    let forms = [
        "postgresql://backup@/shop?host=/var/run/postgresql&port=5433",
        "postgresql:///shop?user=backup&host=%2Fvar%2Frun%2Fpostgresql&port=5433",
        "postgresql://backup@%2Fvar%2Frun%2Fpostgresql:5433/shop",
        "host=/var/run/postgresql port=5433 dbname=shop user=backup",
        "dbname=shop",
    ];
    let env = env()
        .with_var("PGHOST", "/var/run/postgresql")
        .with_var("PGPORT", "5433")
        .with_var("PGUSER", "backup");
    for text in forms {
        let url = DbUrl::parse_with(text, &env).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(url.user(), "backup", "{text}");
        assert_eq!(url.database(), "shop", "{text}");
        assert_eq!(
            url.endpoints(),
            [Endpoint {
                host: "/var/run/postgresql".to_owned(),
                hostaddr: None,
                port: 5433
            }],
            "{text}"
        );
    }
}

#[test]
fn explicit_settings_win_over_the_environment_and_defaults_fill_the_rest() {
    let vars = env()
        .with_var("PGHOST", "envhost")
        .with_var("PGUSER", "envuser")
        .with_var("PGDATABASE", "envdb")
        .with_var("PGSSLMODE", "require")
        .with_var("PGAPPNAME", "nightly")
        .with_var("PGCONNECT_TIMEOUT", "7");
    let url = DbUrl::parse_with("host=db user=me", &vars).unwrap();
    assert_eq!(url.endpoints()[0].host, "db");
    assert_eq!(url.user(), "me");
    assert_eq!(url.database(), "envdb");
    assert_eq!(url.tls().mode, SslMode::Require);
    assert_eq!(url.application_name(None), "nightly");
    assert_eq!(child_env(&url)["PGCONNECT_TIMEOUT"], "7");

    let url = DbUrl::parse_with("host=db", &env()).unwrap();
    assert_eq!(url.user(), "osuser");
    assert_eq!(url.database(), "osuser");
    assert_eq!(url.endpoints()[0].port, 5432);
    assert_eq!(url.tls().mode, SslMode::Prefer);
    assert_eq!(url.application_name(None), APPLICATION_NAME);
    assert_eq!(url.application_name(Some("pg_dump")), "ecobackup/pg_dump");
}

#[test]
fn several_hosts_ports_and_addresses_pair_up_as_in_libpq() {
    let url = DbUrl::parse_with("postgres://u@a:1,b:2,[::1]:3/db", &env()).unwrap();
    let hosts: Vec<(&str, u16)> = url
        .endpoints()
        .iter()
        .map(|e| (e.host.as_str(), e.port))
        .collect();
    assert_eq!(hosts, [("a", 1), ("b", 2), ("::1", 3)]);
    assert_eq!(url.redacted(), "postgres://u@a:1,b:2,[::1]:3/db");

    let url = DbUrl::parse_with("host=a,b port=7 hostaddr=10.0.0.1,10.0.0.2", &env()).unwrap();
    assert_eq!(url.endpoints()[1].port, 7);
    assert_eq!(url.endpoints()[1].hostaddr.as_deref(), Some("10.0.0.2"));

    for (text, why) in [
        (
            "host=a,b,c port=1,2",
            "could not match 2 port numbers to 3 hosts",
        ),
        (
            "host=a,b hostaddr=10.0.0.1",
            "could not match 2 host names to 1 hostaddr",
        ),
        ("host=a port=http", "invalid port number"),
        (
            "host=a hostaddr=nonsense",
            "could not parse network address",
        ),
    ] {
        let err = DbUrl::parse_with(text, &env()).unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn tls_settings_follow_libpq() {
    let files = tempfile::tempdir().unwrap();
    let cert = files.path().join("c.crt");
    std::fs::write(&cert, "x").unwrap();
    let url = DbUrl::parse_with(
        &format!(
            "host=db sslmode=verify-full sslrootcert=/etc/ca.pem sslcert={} sslkey=/c.key",
            cert.display()
        ),
        &env(),
    )
    .unwrap();
    assert_eq!(url.tls().mode, SslMode::VerifyFull);
    assert_eq!(
        url.tls().root_certs,
        Some(RootCerts::File("/etc/ca.pem".into()))
    );
    let vars = child_env(&url);
    assert_eq!(vars["PGSSLROOTCERT"], "/etc/ca.pem");
    assert_eq!(vars["PGSSLCERT"], cert.display().to_string());
    assert_eq!(vars["PGSSLKEY"], "/c.key");
    assert_eq!(vars["PGGSSENCMODE"], "disable");

    // Files that do not exist mean none, unless the mode verifies (then the root is needed).
    let url = DbUrl::parse_with(
        "host=db sslmode=require sslrootcert=/nonexistent/ca.pem sslcert=/nonexistent/c.crt",
        &env(),
    )
    .unwrap();
    assert_eq!(url.tls().root_certs, None);
    assert_eq!(url.tls().client_cert, None);

    // sslrootcert=system makes verify-full the default and refuses weaker modes (libpq 16).
    let url = DbUrl::parse_with("host=db sslrootcert=system", &env()).unwrap();
    assert_eq!(url.tls().mode, SslMode::VerifyFull);
    let err = DbUrl::parse_with("host=db sslrootcert=system sslmode=require", &env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("weak sslmode"), "{err}");

    // ~/.postgresql/root.crt, when present, is the default root file.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::write(home.path().join(".postgresql/root.crt"), "x").unwrap();
    let url = DbUrl::parse_with("host=db sslmode=require", &env().with_home(home.path())).unwrap();
    assert_eq!(
        url.tls().root_certs,
        Some(RootCerts::File(home.path().join(".postgresql/root.crt")))
    );

    let err = DbUrl::parse_with("host=db sslmode=sometimes", &env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid sslmode value"), "{err}");
}

#[test]
fn unsupported_settings_are_refused_wherever_they_come_from() {
    let err = DbUrl::parse_with("host=db sslcrl=/x.crl", &env())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sslcrl") && err.contains("does not support"),
        "{err}"
    );
    let err = DbUrl::parse_with("host=db", &env().with_var("PGREQUIREPEER", "postgres"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("PGREQUIREPEER"), "{err}");
    let err = DbUrl::parse_with("host=db gssencmode=require", &env())
        .unwrap_err()
        .to_string();
    assert!(err.contains("GSSAPI"), "{err}");
}

#[test]
fn the_password_comes_from_the_string_then_pgpassword_then_the_password_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    std::fs::write(&file, "db:5432:shop:backup:from-file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = env().with_var("PGPASSFILE", file.display().to_string());

    let url = DbUrl::parse_with("postgres://backup@db/shop", &env).unwrap();
    let (password, source) = url.password_for(&url.endpoints()[0]);
    assert_eq!(password.unwrap().expose_secret(), "from-file");
    assert!(source.contains("password file"), "{source}");
    assert!(!url.has_password());
    // The child gets it too, and the same file.
    let vars = child_env(&url);
    assert_eq!(vars["PGPASSWORD"], "from-file");
    assert_eq!(vars["PGPASSFILE"], file.display().to_string());

    let url = DbUrl::parse_with(
        "postgres://backup@db/shop",
        &env.clone().with_var("PGPASSWORD", "from-env"),
    )
    .unwrap();
    assert_eq!(
        url.password_for(&url.endpoints()[0])
            .0
            .unwrap()
            .expose_secret(),
        "from-env"
    );

    // Another database: no line matches, and the message says what was tried.
    let url = DbUrl::parse_with("postgres://backup@db/crm", &env).unwrap();
    let (password, tried) = url.password_for(&url.endpoints()[0]);
    assert!(password.is_none());
    assert!(
        tried.contains("PGPASSWORD") && tried.contains("no line matches db:5432:crm:backup"),
        "{tried}"
    );
}

#[test]
fn children_lose_inherited_libpq_variables_and_get_ours() {
    let url = DbUrl::parse_with("host=db dbname=x user=u keepalives=0", &env()).unwrap();
    let command = url.apply(ChildCommand::new("/usr/bin/pg_dump"));
    let removed = command.env_removed_for_tests();
    for name in [
        "PGSERVICE",
        "PGOPTIONS",
        "PGSSLCRL",
        "PGTARGETSESSIONATTRS",
        "PGPASSWORD",
    ] {
        assert!(removed.iter().any(|r| r == name), "{name}");
    }
    let vars: BTreeMap<String, String> = command.env_for_tests().into_iter().collect();
    assert_eq!(vars["PGAPPNAME"], "ecobackup/pg_dump");
    assert_eq!(vars["PGDATABASE"], "x");
    assert_eq!(
        command.args_for_tests(),
        ["--dbname=dbname='x' keepalives='0'"]
    );
}

#[test]
fn passwords_never_survive_redaction() {
    assert_eq!(
        redact_url("postgres://postgres:pw@localhost:5432/postgres"),
        "postgres://postgres@localhost:5432/postgres"
    );
    assert_eq!(
        redact_url("postgresql://u:p/w@d@h/db?sslmode=require&password=x"),
        "postgresql://u@h/db?sslmode=require"
    );
    assert_eq!(redact_url("postgres://h/db?password=x"), "postgres://h/db");
    // libpq's rule: the credentials end at an `@` before the first `/`, `?` included.
    assert_eq!(
        redact_url("postgres://backup:pa?ss@db/shop"),
        "postgres://backup@db/shop"
    );
    assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(
        redact_url("host=h password='a b\\' c' user=u"),
        "host=h user=u"
    );
    assert_eq!(
        redact_url("host=h PASSWORD = s3cret dbname=x"),
        "host=h dbname=x"
    );
    assert_eq!(redact_url("host=h dbname=x password=s"), "host=h dbname=x");
    assert_eq!(redact_url("host=h mypassword=x"), "host=h mypassword=x");
}

#[test]
fn bad_strings_say_why_without_the_password() {
    for (text, why) in [
        ("mysql://u:hunter2@h/db", "missing \"=\""),
        (
            "host=h dbname=x password=hunter2 bogus=1",
            "invalid connection option \"bogus\"",
        ),
        (
            "postgres://u:hunter2@h/db?bogus=1",
            "invalid URI query parameter",
        ),
    ] {
        let err = DbUrl::parse(text).unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
