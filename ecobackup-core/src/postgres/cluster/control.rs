//! Running `initdb` and `pg_ctl` for a [`Cluster`], and reading why they failed.

use super::*;

impl Cluster {
    pub(super) async fn initdb(&self, fsync: bool) -> Result<()> {
        let mut last_error = None;
        for locale in ["C.UTF-8", "C"] {
            let data = self.data_dir.as_os_str();
            let locale_arg = format!("--locale={locale}");
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "-D".as_ref(),
                data,
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                locale_arg.as_ref(),
            ];
            if !fsync {
                args.push("--no-sync".as_ref());
            }
            let output = self.run("initdb", &args).await?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let line =
                last_line(&stderr).unwrap_or_else(|| "it printed nothing on stderr".to_owned());
            let mut detail = format!(
                "creating a throwaway cluster in {}: {line}",
                self.data_dir.display()
            );
            if stderr.contains("ermission denied") {
                if let Some((uid, _)) = self.run_as {
                    let _ = write!(
                        detail,
                        "; the server runs as user postgres (uid {uid}), which must be able to reach {} (give every parent directory mode 0711 or 0755, or pick another base directory)",
                        self.root.display()
                    );
                }
            } else {
                let _ = write!(
                    detail,
                    "; check free space and permissions in {}",
                    self.root.display()
                );
            }
            last_error = Some(Error::Process {
                program: "initdb".to_owned(),
                status: describe_status(output.status),
                detail,
            });
            if !stderr.to_ascii_lowercase().contains("locale") {
                break;
            }
            // initdb removes a data directory it created, but make sure before the retry.
            if self.data_dir.exists() {
                std::fs::remove_dir_all(&self.data_dir)
                    .map_err(|e| Error::io(format!("removing {}", self.data_dir.display()), e))?;
            }
            tracing::debug!("initdb --locale={locale} failed, trying the next locale: {line}");
        }
        Err(last_error.expect("initdb was run at least once"))
    }

    /// `log_kept`: whether the log outlives a failure (not in [`Cluster::start`], whose
    /// directory is removed), so the error may point at it.
    pub(super) async fn pg_ctl_start(
        &mut self,
        log_kept: bool,
    ) -> std::result::Result<(), StartFailure> {
        let log = self.log_file();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let args: [&std::ffi::OsStr; 8] = [
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "start".as_ref(),
        ];
        let output = self
            .run("pg_ctl", &args)
            .await
            .map_err(|error| StartFailure {
                error,
                port_taken: false,
            })?;
        if output.status.success() {
            self.running = true;
            return Ok(());
        }
        let log_text = read_from(&log, log_start);
        let port_taken = log_text.contains("could not bind")
            || log_text.contains("Address already in use")
            || log_text.contains("could not create any TCP/IP sockets");
        let said = match log_excerpt(&log_text) {
            Some(excerpt) => format!("the server log says: {excerpt}"),
            None => match last_line(&String::from_utf8_lossy(&output.stderr)) {
                Some(line) => format!("pg_ctl says: {line}; the server log is empty"),
                None => "neither pg_ctl nor the server said why".to_owned(),
            },
        };
        // A server that did not come up in time may still be running: the pid file tells
        // `shutdown` (and `Drop`) to stop it.
        Err(StartFailure {
            error: Error::Process {
                program: "pg_ctl start".to_owned(),
                status: describe_status(output.status),
                detail: format!(
                    "starting PostgreSQL {} in {} on port {}: {said}; fix what it names and try again{}",
                    self.major,
                    self.data_dir.display(),
                    self.port,
                    if log_kept {
                        format!(" (full log: {})", log.display())
                    } else {
                        String::new()
                    }
                ),
            },
            port_taken,
        })
    }

    pub(super) async fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        if !self.running && !self.pid_file_exists() {
            return Ok(());
        }
        let args: [&std::ffi::OsStr; 8] = [
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "stop".as_ref(),
        ];
        let output = self.run("pg_ctl", &args).await?;
        if output.status.success() {
            self.running = false;
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !self.pid_file_exists() {
            // It was not running after all (stopped behind our back, or crashed).
            self.running = false;
            return Ok(());
        }
        Err(Error::Process {
            program: format!("pg_ctl stop -m {mode}"),
            status: describe_status(output.status),
            detail: format!(
                "stopping the server in {}: {}; see the server log {}",
                self.data_dir.display(),
                last_line(&stderr).unwrap_or_else(|| "it printed nothing on stderr".to_owned()),
                self.log_file().display()
            ),
        })
    }
}

/// Why `pg_ctl start` failed, and whether another port may help.
pub(super) struct StartFailure {
    pub(super) error: Error,
    pub(super) port_taken: bool,
}
