//! Child processes as pipeline ends: `pg_dump`'s stdout as a [`Source`], `pg_restore`'s stdin as
//! a [`Sink`].
//!
//! A program that exits non-zero fails the pipeline even when its output looked complete: the
//! source reports the exit status at the end of the stream, before the sink may commit, so a
//! pg_dump killed mid-stream or refused a table never becomes a backup. Stderr is captured, its
//! last line goes into the error, and all of it into the log at debug level. Secrets reach the
//! child only through its environment (`PGPASSWORD`), never its arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::crypto::{ExposeSecret, SecretString};
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt, Source, SourceInfo, CHUNK_SIZE};

/// A program to run: path, arguments, and extra environment (secret values allowed).
#[derive(Clone, Debug)]
pub struct ChildCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, SecretString)>,
    env_remove: Vec<String>,
}

impl ChildCommand {
    /// Runs `program`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        ChildCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
        }
    }

    /// Adds an argument. Never pass a secret here: arguments are visible to every user.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable of the child (passwords go here).
    pub fn env(mut self, name: impl Into<String>, value: SecretString) -> Self {
        self.env.push((name.into(), value));
        self
    }

    /// Removes an inherited environment variable from the child.
    pub fn env_remove(mut self, name: impl Into<String>) -> Self {
        self.env_remove.push(name.into());
        self
    }

    /// The program's file name, for messages.
    pub fn name(&self) -> String {
        self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// The program's path.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The environment set for the child, secrets exposed (tests only).
    #[cfg(test)]
    pub(crate) fn env_for_tests(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect()
    }

    /// The inherited variables removed (tests only).
    #[cfg(test)]
    pub(crate) fn env_removed_for_tests(&self) -> &[String] {
        &self.env_remove
    }

    /// The arguments (tests only).
    #[cfg(test)]
    pub(crate) fn args_for_tests(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The `tokio` command with the program, arguments and environment, for runners that need
    /// more control than [`ChildCommand::output`] (the drill's check command).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).kill_on_drop(true);
        for name in &self.env_remove {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value.expose_secret());
        }
        command
    }

    fn spawn(&self, stdin: Stdio, stdout: Stdio) -> Result<Child> {
        self.command()
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.program.display()), e))
    }

    /// Runs the program to completion with no input; its stdout, or the failure.
    pub async fn output(&self) -> Result<String> {
        let child = self.spawn(Stdio::null(), Stdio::piped())?;
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| Error::io(format!("running {}", self.name()), e))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(failure(&self.name(), output.status, &stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The error for a program that ended badly: its status and the last line it wrote on stderr.
fn failure(program: &str, status: ExitStatus, stderr: &str) -> Error {
    let status = describe_status(status);
    let mut detail = last_line(stderr).unwrap_or_else(|| "it printed nothing on stderr".to_owned());
    // pg_dump through a pooler in transaction mode fails in ways that do not say so.
    if let Some(hint) = crate::postgres::pooler_hint(&detail) {
        detail = format!("{detail}; {hint}");
    }
    Error::Process {
        program: program.to_owned(),
        status,
        detail,
    }
}

/// How a program ended: `exit status 1`, `killed by SIGKILL`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        (None, None) => status.to_string(),
    }
}

/// The line that says what went wrong: the last one reporting an error (`pg_restore: error:
/// … ERROR:  relation "t" already exists`), else the last non-empty one. The lines a PostgreSQL
/// program adds after its error (`Command was: …`, the SQL, `DETAIL`) are not the reason.
pub(crate) fn last_line(stderr: &str) -> Option<String> {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let is_error = |l: &&str| {
        let lower = l.to_ascii_lowercase();
        lower.contains("error:") || lower.contains("fatal:") || lower.contains("could not")
    };
    lines()
        .rfind(is_error)
        .or_else(|| lines().next_back())
        .map(str::to_owned)
}

/// Reads a child's output (stderr, or the stdout of a sink program) to the end, logging each
/// line at debug level and keeping at most the last 64 KiB for the error message.
fn collect_output(
    program: String,
    output: impl AsyncRead + Send + Unpin + 'static,
) -> JoinHandle<String> {
    tokio::spawn(async move {
        const KEEP: usize = 64 * 1024;
        let mut lines = BufReader::new(output).lines();
        let mut kept = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(program = %program, "{line}");
            kept.push_str(&line);
            kept.push('\n');
            if kept.len() > 2 * KEEP {
                let cut = kept.len() - KEEP;
                let cut = (cut..kept.len())
                    .find(|&i| kept.is_char_boundary(i))
                    .unwrap_or(cut);
                kept.drain(..cut);
            }
        }
        kept
    })
}

async fn finish(program: &str, mut child: Child, stderr: JoinHandle<String>) -> Result<()> {
    let status = child
        .wait()
        .await
        .map_err(|e| Error::io(format!("waiting for {program}"), e))?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(failure(program, status, &stderr))
    }
}

/// The stdout of a program; the stream fails at its end if the program exits non-zero.
pub struct ChildSource {
    command: ChildCommand,
    name: String,
    size_hint: Option<u64>,
}

impl ChildSource {
    /// A source running `command`, named `name` in reports.
    pub fn new(command: ChildCommand, name: impl Into<String>) -> Self {
        ChildSource {
            command,
            name: name.into(),
            size_hint: None,
        }
    }

    /// Records the expected output size (sizes multipart uploads, drives ETAs).
    pub fn with_size_hint(mut self, size: Option<u64>) -> Self {
        self.size_hint = size;
        self
    }
}

#[async_trait]
impl Source for ChildSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let mut child = self.command.spawn(Stdio::null(), Stdio::piped())?;
        let program = self.command.name();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = collect_output(
            program.clone(),
            child.stderr.take().expect("stderr is piped"),
        );
        let output = ReaderStream::with_capacity(stdout, CHUNK_SIZE)
            .map(move |r| r.map_err(|e| Error::io("reading the output of the program", e)));
        // When stdout ends, the exit status decides whether the stream ended well. If the
        // stream is dropped early (another stage failed), `kill_on_drop` ends the child.
        let ending = futures::stream::once(async move { finish(&program, child, stderr).await })
            .filter_map(|r| async move { r.err().map(Err) });
        Ok(Box::pin(output.chain(ending)))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            size_hint: self.size_hint,
        }
    }
}

/// The stdin of a program; committed when the program read everything and exited 0.
///
/// The program cannot be asked to take back what it already did with its input: give it a way
/// to make that atomic (`pg_restore --single-transaction`). When the input fails, it is killed
/// before its stdin closes, so it never mistakes a cut stream for a complete one.
pub struct ChildSink {
    command: ChildCommand,
}

impl ChildSink {
    /// A sink feeding `command`'s stdin. Its stdout is logged at debug level.
    pub fn new(command: ChildCommand) -> Self {
        ChildSink { command }
    }

    async fn feed(
        stdin: &mut ChildStdin,
        mut input: ByteStream,
    ) -> Result<std::result::Result<u64, std::io::Error>> {
        let mut bytes = 0u64;
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            if let Err(e) = stdin.write_all(&chunk).await {
                return Ok(Err(e));
            }
            bytes += chunk.len() as u64;
        }
        Ok(stdin.shutdown().await.map(|()| bytes))
    }
}

/// A sink program and its stdin. Dropped with its stdin still open (a failed or cancelled
/// `write`), it kills the program *before* the stdin closes: fields drop after `drop` runs, and a
/// closed stdin is an end of input, which the program would take for a complete one.
struct Running {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let (Some(child), Some(_)) = (&mut self.child, &self.stdin) {
            let _ = child.start_kill();
        }
    }
}

#[async_trait]
impl Sink for ChildSink {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let program = self.command.name();
        let mut child = self.command.spawn(Stdio::piped(), Stdio::piped())?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = collect_output(
            program.clone(),
            child.stderr.take().expect("stderr is piped"),
        );
        let stdout = collect_output(
            program.clone(),
            child.stdout.take().expect("stdout is piped"),
        );
        let mut running = Running {
            child: Some(child),
            stdin: Some(stdin),
        };
        let fed = match Self::feed(running.stdin.as_mut().expect("stdin is open"), input).await {
            Ok(fed) => fed,
            Err(e) => {
                // Kill before closing stdin: an end of input must never look like a clean end.
                if let Some(child) = &mut running.child {
                    let _ = child.kill().await;
                }
                return Err(e);
            }
        };
        // The input ended cleanly (or the program stopped reading): now its end may be seen.
        drop(running.stdin.take());
        let child = running.child.take().expect("the child is still ours");
        // A program that stops reading (it failed) breaks the pipe: its status and stderr say why.
        finish(&program, child, stderr).await?;
        drop(stdout.await);
        let bytes = fed.map_err(|e| Error::io(format!("writing to {program}"), e))?;
        Ok(SinkReceipt {
            bytes,
            location: Some(program),
        })
    }

    async fn abort(&mut self) {
        // `write` kills the program on every failure of its input, and a cancelled `write`
        // drops `Running`, which kills it before its stdin closes: nothing is left running, and
        // nothing sees a clean end of input.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_error_line_not_the_sql_after_it() {
        let stderr = "pg_restore: while PROCESSING TOC:\npg_restore: error: could not execute query: ERROR:  relation \"t\" already exists\nCommand was: CREATE TABLE public.t (\n    id integer\n);\n\n";
        assert_eq!(
            last_line(stderr).unwrap(),
            "pg_restore: error: could not execute query: ERROR:  relation \"t\" already exists"
        );
        assert_eq!(last_line("one\ntwo\n").unwrap(), "two");
        assert_eq!(last_line("\n"), None);
    }

    #[test]
    fn statuses_read_like_sentences() {
        assert_eq!(
            describe_status(
                <ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(1 << 8)
            ),
            "exit status 1"
        );
        assert_eq!(
            describe_status(<ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(9)),
            "killed by SIGKILL"
        );
    }

    #[tokio::test]
    async fn a_program_that_fails_fails_the_stream_after_its_output() {
        let command = ChildCommand::new("/bin/sh")
            .arg("-c")
            .arg("printf 'some output'; echo 'sh: error: disk on fire' >&2; exit 3");
        let mut source = ChildSource::new(command, "sh");
        let items: Vec<_> = source.open().await.unwrap().collect().await;
        assert_eq!(items[0].as_ref().unwrap().as_ref(), b"some output");
        let err = items.last().unwrap().as_ref().unwrap_err().to_string();
        assert_eq!(err, "sh failed (exit status 3): sh: error: disk on fire");
    }

    #[tokio::test]
    async fn a_secret_goes_to_the_environment_not_the_arguments() {
        let command = ChildCommand::new("/bin/sh")
            .arg("-c")
            .arg("echo \"$PGPASSWORD\"")
            .env("PGPASSWORD", "s3cret".to_owned().into());
        assert_eq!(command.output().await.unwrap(), "s3cret\n");
        assert!(!format!("{command:?}").contains("s3cret"));
    }

    /// A sink program that records whether it saw the end of its input.
    fn end_recorder(dir: &Path) -> ChildSink {
        let script = format!(
            "echo $$ > '{0}/pid'; cat > '{0}/input'; echo clean-end > '{0}/ended'",
            dir.display()
        );
        ChildSink::new(ChildCommand::new("/bin/sh").arg("-c").arg(script))
    }

    #[tokio::test]
    async fn a_failing_input_kills_the_program_before_it_sees_an_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = end_recorder(dir.path());
        let input: ByteStream = Box::pin(futures::stream::iter([
            Ok(bytes::Bytes::from_static(b"all but the last chunk")),
            Err(Error::StageVanished {
                stage: "sha256-check".to_owned(),
            }),
        ]));
        let err = sink.write(input).await.unwrap_err();
        assert!(err.to_string().contains("sha256-check"), "{err}");
        assert!(
            !dir.path().join("ended").exists(),
            "the program never saw a clean end of its input"
        );
    }

    #[tokio::test]
    async fn a_cancelled_write_kills_the_program_before_it_sees_an_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = end_recorder(dir.path());
        // An input that never ends: the write waits for it until it is dropped.
        let input: ByteStream = Box::pin(
            futures::stream::iter([Ok(bytes::Bytes::from_static(b"some"))])
                .chain(futures::stream::pending()),
        );
        let mut write = Box::pin(sink.write(input));
        assert!(futures::poll!(write.as_mut()).is_pending());
        // Wait until the program has the bytes, so it is reading when the write goes away.
        while std::fs::metadata(dir.path().join("input")).map_or(0, |m| m.len()) < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            assert!(futures::poll!(write.as_mut()).is_pending());
        }
        drop(write);
        // Wait until the shell is dead (a zombie or gone): it writes the marker if it lives on.
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z ")) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            !dir.path().join("ended").exists(),
            "the program was killed before its stdin closed"
        );
    }
}
