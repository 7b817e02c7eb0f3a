use super::*;
use ecobackup_core::config::schedule::{validate, JobKind};

/// The seeds' four schedules, as the README and `deploy/` name them.
const SEEDS: [(&str, JobKind); 4] = [
    ("hourly", JobKind::BackupLogical),
    ("daily-physical", JobKind::BackupPhysical),
    ("daily-prune", JobKind::Prune),
    ("monthly-drill", JobKind::Drill),
];

/// Every entry of `config` checked and parsed as the daemon does; returns (name, job).
fn entries(config: &Config) -> Vec<(String, JobKind)> {
    validate(&config.schedule, &[]).unwrap();
    config
        .schedule
        .iter()
        .map(|s| {
            prepare(Path::new("example.toml"), s).unwrap_or_else(|e| panic!("{}", e.message()));
            (s.name.clone(), s.job_kind().unwrap())
        })
        .collect()
}

fn seeds() -> Vec<(String, JobKind)> {
    SEEDS.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect()
}

#[test]
fn the_readme_schedule_example_is_the_seeds_schedules() {
    let readme = include_str!("../../../../README.md");
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.contains("[[schedule]]"))
        .expect("a [[schedule]] example in the README");
    let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(entries(&config), seeds());
    let drill = &config.schedule[3];
    assert_eq!(drill.jitter_seconds, 300);
    assert_eq!(
        prepare(Path::new("x"), drill).unwrap().argv,
        ["ecobackup", "drill", "--kind", "logical"]
    );
}

#[test]
fn the_deploy_examples_run_the_entries_of_the_shipped_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let config = Config::load(Some(&root.join("ecobackup.toml"))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(entries(&config), seeds());
    // Every job has what its command needs: none exits 2 at its first run.
    assert_eq!(preflight(&config), Ok(()));
    // The drill's checks file is shipped, and it loads as the drill loads it.
    let checks = config.drill.checks.as_deref().expect("[drill] checks");
    let shipped = root.join(checks.strip_prefix("/etc/ecobackup").unwrap());
    let checks = ecobackup_core::drill::Checks::load(&shipped).unwrap_or_else(|e| panic!("{e}"));
    assert!(!checks.table.is_empty() || !checks.sql.is_empty());
    // The scratch directory is one systemd creates for the daemon and the timers' service.
    let scratch = config
        .drill
        .scratch_dir
        .as_deref()
        .expect("[drill] scratch_dir");
    let state = scratch
        .strip_prefix("/var/lib/")
        .expect("under /var/lib")
        .to_str()
        .unwrap();
    for unit in ["ecobackup-daemon.service", "ecobackup@.service"] {
        let text = std::fs::read_to_string(root.join("systemd").join(unit)).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("StateDirectory="))
            .unwrap();
        assert!(
            line.split_whitespace().any(|d| d == state),
            "{unit}: {line}"
        );
    }
    let names: Vec<&str> = SEEDS.iter().map(|(n, _)| *n).collect();

    // Each crontab line runs an entry, under flock.
    let crontab = std::fs::read_to_string(root.join("cron/ecobackup")).unwrap();
    let once: Vec<&str> = crontab
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("--once"))
        .map(|l| {
            assert!(l.contains("flock -n"), "{l}");
            l.rsplit(' ').next().unwrap()
        })
        .collect();
    assert_eq!(once, names);

    // Each timer starts the template service for an entry.
    let mut timed: Vec<String> = std::fs::read_dir(root.join("systemd"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "timer"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let unit = text.lines().find_map(|l| l.strip_prefix("Unit=")).unwrap();
            let name = unit.strip_prefix("ecobackup@").unwrap();
            name.strip_suffix(".service").unwrap().to_owned()
        })
        .collect();
    timed.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(timed, sorted);
    let service = std::fs::read_to_string(root.join("systemd/ecobackup@.service")).unwrap();
    assert!(service.contains("daemon --once %i"), "{service}");

    // The CronJob's configuration has the entry it runs.
    let yaml = std::fs::read_to_string(root.join("kubernetes/cronjob.yaml")).unwrap();
    let embedded: String = yaml
        .split("ecobackup.toml: |\n")
        .nth(1)
        .and_then(|rest| rest.split("\n---").next())
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config: Config = toml::from_str(&embedded).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        entries(&config),
        [("hourly".to_owned(), JobKind::BackupLogical)]
    );
    assert_eq!(preflight(&config), Ok(()));
    assert!(
        yaml.contains(r#"args: ["daemon", "--once", "hourly""#),
        "{yaml}"
    );

    // The pod's grace: the daemon's --grace, 10 s for a cancelled job to return, 3 s for
    // its clean-up, and the /fail ping and the webhook at [notify] timeout_seconds each.
    let grace: u64 = yaml
        .split(r#""--grace", ""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    let notify = config.notify.timeout_seconds.unwrap_or(10);
    let pod: u64 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pod > grace + 10 + 3 + 2 * notify,
        "{pod} s for --grace {grace}"
    );
    let service = std::fs::read_to_string(root.join("systemd/ecobackup-daemon.service")).unwrap();
    let stop: u64 = service
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .parse()
        .unwrap();
    let grace: u64 = service
        .split("--grace ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        stop > grace + 10 + 3 + 2 * notify,
        "{stop} s for --grace {grace}"
    );
}

/// Every entry of `config` prepared and preflighted as the daemon does; the first refusal.
fn preflight(config: &Config) -> Result<(), String> {
    for schedule in &config.schedule {
        let entry =
            prepare(Path::new("example.toml"), schedule).map_err(|e| e.message().to_owned())?;
        entry.preflight(config)?;
    }
    Ok(())
}

/// The configuration `text`, parsed and checked as a file is.
fn config(text: &str) -> Config {
    Config::parse(text, Path::new("/etc/ecobackup")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One entry running `job` with `args`, after `settings`.
fn entry(settings: &str, job: &str, args: &[&str]) -> Config {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    config(&format!(
        "{settings}\n[[schedule]]\nname = \"job\"\ncron = \"0 * * * *\"\njob = \"{job}\"\nargs = [{}]\n",
        args.join(", ")
    ))
}

fn signer() -> String {
    ecobackup_core::crypto::Signer::generate()
        .public_key()
        .to_string()
}

const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// Asserts that `config`'s entry is refused with `wanted` in its line.
#[track_caller]
fn refused(config: &Config, wanted: &str) {
    match preflight(config) {
        Ok(()) => panic!("accepted, but it should need {wanted}"),
        Err(line) => {
            assert!(line.contains(wanted), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}

#[test]
fn a_prune_without_retention_or_trusted_signer_is_refused() {
    let signers = format!("[encryption]\ntrusted_signers = [\"{}\"]\n", signer());
    refused(
        &entry(&signers, "prune", &[]),
        "prune needs a [retention] policy",
    );
    let retention = "[retention]\nkeep_last = 2\n";
    refused(
        &entry(retention, "prune", &[]),
        "prune needs a trusted signer",
    );
    let both = format!("{retention}{signers}");
    assert_eq!(preflight(&entry(&both, "prune", &[])), Ok(()));
    assert_eq!(
        preflight(&entry(retention, "prune", &["--allow-unsigned"])),
        Ok(())
    );
    let unsigned = format!("{retention}[encryption]\nallow_unsigned = true\n");
    assert_eq!(preflight(&entry(&unsigned, "prune", &[])), Ok(()));
    let signer = signer();
    let flag = ["--trusted-signer", signer.as_str()];
    assert_eq!(preflight(&entry(retention, "prune", &flag)), Ok(()));
    refused(
        &entry(retention, "prune", &["--trusted-signer", "ecosign1nope"]),
        "prune: invalid trusted signer",
    );
}

#[test]
fn a_backup_without_database_recipient_or_signing_key_is_refused() {
    let keys = format!(
        "[encryption]\nrecipients = [\"{RECIPIENT}\"]\nsigning_key_file = \"signing.key\"\n"
    );
    let shop = "[[database]]\nname = \"shop\"\nurl = \"postgres://backup@db/shop\"\n";
    refused(
        &entry(&keys, "backup logical", &[]),
        "backup logical needs a database",
    );
    let both = format!("{keys}{shop}");
    assert_eq!(
        preflight(&entry(&both, "backup logical", &["--globals"])),
        Ok(())
    );
    let db = ["--db", "postgres://backup@db/shop"];
    assert_eq!(preflight(&entry(&keys, "backup logical", &db)), Ok(()));

    let signing = "[encryption]\nsigning_key_file = \"signing.key\"\n";
    let unencrypted = format!("{signing}{shop}");
    refused(
        &entry(&unencrypted, "backup logical", &[]),
        "backup logical needs a recipient",
    );
    refused(
        &entry(&unencrypted, "backup physical", &[]),
        "backup physical needs a recipient",
    );
    for ok in [&["--no-encryption"][..], &["-r", RECIPIENT]] {
        assert_eq!(
            preflight(&entry(&unencrypted, "backup logical", ok)),
            Ok(()),
            "{ok:?}"
        );
    }
    refused(
        &entry(&both, "backup logical", &["--no-encryption"]),
        "--no-encryption in args, but recipients are configured",
    );

    let unsigned = format!("[encryption]\nrecipients = [\"{RECIPIENT}\"]\n{shop}");
    refused(
        &entry(&unsigned, "backup logical", &[]),
        "backup logical needs a signing key",
    );
    assert_eq!(
        preflight(&entry(&unsigned, "backup logical", &["--no-signing"])),
        Ok(())
    );

    // A physical backup needs a server with a plain url.
    refused(
        &entry(&keys, "backup physical", &[]),
        "backup physical needs a server",
    );
    let url_file = format!("{keys}[[database]]\nname = \"shop\"\nurl_file = \"shop.url\"\n");
    refused(
        &entry(&url_file, "backup physical", &[]),
        "has no plain url",
    );
    assert_eq!(preflight(&entry(&both, "backup physical", &[])), Ok(()));
}

#[test]
fn a_drill_or_verify_without_identity_or_trusted_signer_is_refused() {
    let signers = format!("[encryption]\ntrusted_signers = [\"{}\"]\n", signer());
    for job in ["drill", "verify"] {
        refused(
            &entry(&signers, job, &[]),
            &format!("{job} needs an identity"),
        );
        refused(
            &entry(
                "[encryption]\nidentity_files = [\"restore.key\"]\n",
                job,
                &[],
            ),
            &format!("{job} needs a trusted signer"),
        );
        let both = format!("{signers}identity_files = [\"restore.key\"]\n");
        assert_eq!(preflight(&entry(&both, job, &[])), Ok(()));
        let flags = ["--allow-unsigned", "--identity", "restore.key"];
        assert_eq!(preflight(&entry("", job, &flags)), Ok(()));
    }
    let wal_only = ["--wal"];
    assert_eq!(preflight(&entry(&signers, "verify", &wal_only)), Ok(()));
    refused(
        &entry(&signers, "verify", &["--wal", "--all"]),
        "verify needs an identity",
    );
    let thresholds = "[check]\nmax_age = \"26h\"\n";
    refused(
        &entry(thresholds, "check", &[]),
        "check needs a trusted signer",
    );
    let unsigned = ["--allow-unsigned"];
    refused(&entry("", "check", &unsigned), "check needs a threshold");
    assert_eq!(preflight(&entry(thresholds, "check", &unsigned)), Ok(()));
    let flags = ["--allow-unsigned", "--max-age", "26h"];
    assert_eq!(preflight(&entry("", "check", &flags)), Ok(()));
}

#[test]
fn the_refusal_names_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ecobackup.toml");
    std::fs::write(
        &path,
        "[[schedule]]\nname = \"daily-prune\"\ncron = \"30 3 * * *\"\njob = \"prune\"\nargs = [\"--allow-unsigned\"]\n\n\
         [[schedule]]\nname = \"hourly\"\ncron = \"0 * * * *\"\njob = \"check\"\nargs = [\"--allow-unsigned\", \"--max-age\", \"26h\"]\n",
    )
    .unwrap();
    let globals = Globals {
        json: false,
        quiet: false,
        repo: None,
        config_path: Some(path.clone()),
    };
    let error = Plan::load(&globals, None).err().unwrap();
    assert_eq!(
        error.message(),
        format!(
            "configuration file {}: [[schedule]] \"daily-prune\": prune needs a [retention] policy: without one prune deletes nothing and exits 2 (README, \"Retention\")",
            path.display()
        )
    );
    // `--once hourly` is not held back by the other entry.
    let plan = Plan::load(&globals, Some("hourly")).unwrap_or_else(|e| panic!("{}", e.message()));
    assert_eq!(plan.entries.len(), 2);
}
