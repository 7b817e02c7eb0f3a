use std::path::Path;

use super::*;
use crate::config::load::url_has_password;

#[test]
fn a_zero_notify_timeout_and_a_mirror_without_url_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecobackup.toml");
    for (text, wanted) in [
        ("[notify]\ntimeout_seconds = 0\n", "timeout_seconds = 0"),
        ("[[repository.mirror]]\nregion = \"x\"\n", "needs a url"),
        (
            "[[repository.mirror]]\nurl = \"s3://b/p\"\nmin_targets = 1\n",
            "cannot have mirrors or min_targets",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let error = Config::load(Some(&path)).unwrap_err();
        assert!(error.to_string().contains(wanted), "{}", error.to_string());
    }
}

#[test]
fn passwords_in_urls_are_spotted() {
    assert!(url_has_password("postgres://backup:s3cret@db/shop"));
    assert!(!url_has_password("postgres://backup@db/shop"));
    assert!(!url_has_password("postgres://db:5432/shop"));
    assert!(!url_has_password("postgresql:///shop?host=/run/postgresql"));
    assert!(url_has_password("postgres://backup@db/shop?password=x"));
    assert!(url_has_password("host=db password=x dbname=shop"));
    assert!(!url_has_password("host=db dbname=shop"));
}

#[test]
fn the_design_example_parses() {
    let config: Config = toml::from_str(
        r#"
        [repository]
        url = "s3://acme-backups/prod"
        endpoint = "https://s3.eu-central-003.backblazeb2.com"
        region = "eu-central-003"
        allow_http = false

        [encryption]
        recipients = ["age1abc"]
        identity_files = ["/etc/ecobackup/restore.key"]

        [[database]]
        name = "shop"
        url = "postgres://backup@db.internal/ecommus_prod"
        "#,
    )
    .unwrap();
    assert_eq!(config.encryption.recipients, ["age1abc"]);
    assert_eq!(config.database[0].name, "shop");
}

#[test]
fn unknown_keys_are_refused() {
    let err = toml::from_str::<Config>("[encryption]\npassphrase = \"inline\"\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `passphrase`"),
        "{err}"
    );
}

#[test]
fn relative_paths_are_taken_from_the_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecobackup.toml");
    std::fs::write(
        &path,
        "[encryption]\nidentity_files = [\"keys/restore.key\", \"/etc/abs.key\"]\n\
         signing_key_file = \"sign.key\"\n[repository]\nsecret_access_key_file = \"s3.secret\"\n\
         [wal]\nspool_dir = \"spool\"\n[[database]]\nname = \"shop\"\nurl_file = \"shop.url\"\n",
    )
    .unwrap();
    let config = Config::load(Some(&path)).unwrap();
    let dir = dir.path();
    assert_eq!(
        config.encryption.identity_files,
        [dir.join("keys/restore.key"), PathBuf::from("/etc/abs.key")]
    );
    assert_eq!(
        config.encryption.signing_key_file,
        Some(dir.join("sign.key"))
    );
    assert_eq!(
        config.repository.secret_access_key_file,
        Some(dir.join("s3.secret"))
    );
    assert_eq!(config.wal.spool_dir, Some(dir.join("spool")));
    assert_eq!(config.database[0].url_file, Some(dir.join("shop.url")));
}

#[test]
fn the_readme_check_example_is_the_seeds_thresholds() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[check]"))
        .expect("a [check] example in the README");
    let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(config.check, crate::monitor::Thresholds::seeds());
    let bad = toml::from_str::<Config>("[check]\nmax_age = \"26 hours\"\n").unwrap_err();
    assert!(bad.to_string().contains("invalid duration"), "{bad}");
    let bad = toml::from_str::<Config>("[check]\nmax_size = \"1KB\"\n").unwrap_err();
    assert!(
        bad.to_string().contains("unknown field `max_size`"),
        "{bad}"
    );
}

#[test]
fn the_readme_notify_example_parses() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[notify]"))
        .expect("a [notify] example in the README");
    let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let notify = config.notify;
    assert!(notify.ping_url.unwrap().starts_with("https://hc-ping.com/"));
    assert!(notify
        .webhook_url
        .unwrap()
        .starts_with("https://hooks.slack.com/"));
    assert!(!notify.webhook_on_success);
    assert_eq!(notify.timeout_seconds, Some(10));
    let bad = toml::from_str::<Config>(
        "[notify]
ping = \"x\"\n",
    )
    .unwrap_err();
    assert!(bad.to_string().contains("unknown field `ping`"), "{bad}");
}

#[test]
fn the_readme_files_example_is_the_runbooks_table() {
    let readme = include_str!("../../../README.md");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[[files]]") && !block.contains("[repository]"))
        .expect("a [[files]] example in the README");
    let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let sets: Vec<(&str, bool, bool)> = config
        .files
        .iter()
        .map(|s| (s.name.as_str(), s.secrets, s.repository.is_some()))
        .collect();
    assert_eq!(
        sets,
        [
            ("uploads", false, false),
            ("keys", true, true),
            ("config", true, true)
        ]
    );
}

#[test]
fn files_sets_are_checked_when_the_file_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecobackup.toml");
    let database = crate::crypto::generate_identity().1.to_string();
    let keys = crate::crypto::generate_identity().1.to_string();
    let load = |sets: &str| {
        std::fs::write(
            &path,
            format!("[encryption]\nrecipients = [\"{database}\"]\n{sets}"),
        )
        .unwrap();
        Config::load(Some(&path)).map_err(|e| e.to_string().to_owned())
    };
    let config = load(&format!(
        "[[files]]\nname = \"keys\"\npaths = [\"keys\"]\nsecrets = true\nrecipients = [\"{keys}\"]\n"
    ))
    .unwrap();
    assert_eq!(config.files[0].paths, [dir.path().join("keys")], "anchored");
    let shared = load(&format!(
        "[[files]]\nname = \"keys\"\npaths = [\"k\"]\nsecrets = true\nrecipients = [\"{database}\"]\n"
    ))
    .unwrap_err();
    assert!(shared.contains("domain isolation"), "{shared}");
    let twice = load(
        "[[files]]\nname = \"a\"\npaths = [\"x\"]\n[[files]]\nname = \"a\"\npaths = [\"y\"]\n",
    )
    .unwrap_err();
    assert!(
        twice.contains("[[files]] \"a\" is defined twice"),
        "{twice}"
    );
    let empty = load("[[files]]\nname = \"a\"\npaths = []\n").unwrap_err();
    assert!(empty.contains("has no paths"), "{empty}");
    let bad_name = load("[[files]]\nname = \"a b\"\npaths = [\"x\"]\n").unwrap_err();
    assert!(bad_name.contains("cannot name a files set"), "{bad_name}");
}

#[test]
fn the_readme_retention_examples_are_valid_policies() {
    let readme = include_str!("../../../README.md");
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains("[retention]"))
        .collect();
    assert!(blocks.len() >= 2, "the seeds' two policies");
    for block in blocks {
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        config
            .retention
            .expect("a [retention] table")
            .validate()
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
}

#[test]
fn variables_are_laid_over_the_file_only_when_asked() {
    let mut config = Config::parse(
        "[repository]\nurl = \"s3://file/prefix\"\nregion = \"eu\"\n\
         [[repository.mirror]]\nurl = \"s3://m/p\"\naccess_key_id_file = \"/k/id\"\nsecret_access_key_file = \"/k/secret\"\n",
        Path::new("/etc/ecobackup"),
    )
    .unwrap();
    assert!(!config.repository.aws_environment);
    let options = config.repository.storage_options(None).unwrap();
    assert!(!options.environment, "a file alone reads no AWS_* variable");

    let env = Environment::from_pairs([
        ("ECOBACKUP_REPO", "s3://env/prefix"),
        ("ECOBACKUP_S3_ALLOW_HTTP", "true"),
        ("ECOBACKUP_S3_MAX_RETRIES", "3"),
        ("ECOBACKUP_RECIPIENTS", "age1a, age1b"),
        ("ECOBACKUP_SIGNING_KEY_FILE", "/keys/sign.key"),
        ("ECOBACKUP_S3_REGION", ""),
    ]);
    config.apply_env(&env).unwrap();
    let repo = &config.repository;
    assert_eq!(repo.url.as_deref(), Some("s3://env/prefix"));
    assert_eq!(
        repo.region.as_deref(),
        Some("eu"),
        "an empty variable is unset"
    );
    assert!(repo.allow_http);
    assert_eq!(repo.max_retries, Some(3));
    assert_eq!(config.encryption.recipients, ["age1a", "age1b"]);
    assert_eq!(
        config.encryption.signing_key_file.as_deref(),
        Some(Path::new("/keys/sign.key"))
    );
    assert!(repo.aws_environment);
    assert!(repo.mirror[0].aws_environment);

    let bad = Environment::from_pairs([("ECOBACKUP_S3_ALLOW_HTTP", "maybe")]);
    let error = Config::default().apply_env(&bad).unwrap_err();
    assert!(
        error.to_string().contains("ECOBACKUP_S3_ALLOW_HTTP"),
        "{error}"
    );
    assert_eq!(error.kind(), crate::ErrorKind::Configuration);
}

#[test]
fn a_missing_file_is_one_configuration_error() {
    let error = Config::load(Some(Path::new("/nonexistent/ecobackup.toml"))).unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::Configuration);
    assert!(
        error.to_string().contains("/nonexistent/ecobackup.toml"),
        "{error}"
    );
}

#[test]
fn a_file_that_does_not_parse_is_refused_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    // Twelve lines, the [[schedule]] without its cron from line 10.
    let text = "[repository]\nurl = \"s3://b/p\"\n\n[retention]\nkeep_last = 2\n\n\
                # the hourly backup\n# of every database\n\n[[schedule]]\nname = \"hourly\"\n\
                job = \"backup logical\"\n";
    std::fs::write(&path, text).unwrap();
    let message = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(!message.contains('\n'), "{message}");
    assert!(message.contains("m.toml"), "{message}");
    assert!(
        message.contains("line 10, column 1: missing field `cron`"),
        "{message}"
    );

    // A value of the wrong type: its own line and column.
    std::fs::write(
        &path,
        "[retention]\nkeep_last = 2\n\n[notify]\ntimeout_seconds = \"ten\"\n",
    )
    .unwrap();
    let message = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(message.contains("line 5, column 19: "), "{message}");
}

#[test]
fn lines_and_columns_count_characters_from_one() {
    use crate::config::load::line_and_column;
    let text = "a = 1\nnamé = \"x\"\n";
    assert_eq!(line_and_column(text, 0), (1, 1));
    assert_eq!(line_and_column(text, 6), (2, 1));
    // The `=` after the two-byte é: byte 12, column 6.
    assert_eq!(line_and_column(text, 12), (2, 6));
    assert_eq!(line_and_column(text, text.len() + 5), (3, 1));
}
