//! The shell policy (who may run what) and the runner for the commands it lets through.
//!
//! Flagger's load tester runs any command a caller sends; here nothing but the built-in `hey`
//! runs unless the operator passes `--allow-shell`, and even then only command lines that match
//! one of the `--allow-command` patterns in full.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use regex::Regex;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::duration;

/// A bad `--allow-shell` / `--allow-command` combination, found at startup.
#[derive(Debug, Error)]
pub enum ShellPolicyError {
    #[error("--allow-command {pattern:?} is not a valid regular expression: {source}")]
    BadPattern { pattern: String, source: regex::Error },
    #[error(
        "--allow-shell needs at least one --allow-command pattern naming the commands to allow \
         (--allow-command '.*' allows every command to anyone who can reach the load tester)"
    )]
    NoPatterns,
    #[error("--allow-command has no effect without --allow-shell; add --allow-shell or drop the patterns")]
    PatternsWithoutShell,
}

/// Why a shell command was refused (HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellRefusal {
    #[error(
        "{what} refused: veer-loadtester runs shell commands only when started with --allow-shell and an \
         --allow-command pattern that matches the command (only the built-in hey runs by default)"
    )]
    Disabled { what: String },
    #[error(
        "{what} refused: {line:?} matches no --allow-command pattern (patterns must match the whole command line)"
    )]
    NotAllowed { what: String, line: String },
}

/// What shell commands may run.
#[derive(Debug, Clone, Default)]
pub struct ShellPolicy {
    allow_shell: bool,
    allowed: Vec<Regex>,
}

impl ShellPolicy {
    /// Shell disabled: only the built-in hey runs.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Builds the policy from the flags. Each pattern must match a whole command line, as if
    /// written `^(?:pattern)$`, so a forgotten anchor cannot let `; rm -rf /` ride along.
    pub fn new(allow_shell: bool, patterns: &[String]) -> Result<Self, ShellPolicyError> {
        match (allow_shell, patterns.is_empty()) {
            (true, true) => return Err(ShellPolicyError::NoPatterns),
            (false, false) => return Err(ShellPolicyError::PatternsWithoutShell),
            _ => {}
        }
        let allowed = patterns
            .iter()
            .map(|p| {
                Regex::new(&format!("^(?:{p})$"))
                    .map_err(|source| ShellPolicyError::BadPattern { pattern: p.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allow_shell, allowed })
    }

    /// Whether `--allow-shell` was given.
    pub fn shell_allowed(&self) -> bool {
        self.allow_shell
    }

    /// Allows or refuses `line`; `what` names the task for the message (e.g. `type bash`).
    pub fn check(&self, what: &str, line: &str) -> Result<(), ShellRefusal> {
        if !self.allow_shell {
            return Err(ShellRefusal::Disabled { what: what.to_owned() });
        }
        if self.allowed.iter().any(|r| r.is_match(line)) {
            Ok(())
        } else {
            Err(ShellRefusal::NotAllowed { what: what.to_owned(), line: line.to_owned() })
        }
    }
}

/// What a finished command printed (each stream capped at the output limit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    /// Some output was dropped because it passed the limit.
    pub truncated: bool,
}

/// A command that did not succeed.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("could not start {program}: {source}; is {program} installed in the load tester's image?")]
    Spawn { program: String, source: io::Error },
    #[error("{program} did not finish within {after} and was killed; raise --timeout if it needs longer")]
    TimedOut { program: String, after: String },
    #[error("{program} failed ({status}): {}", detail(.output))]
    Failed { program: String, status: ExitStatus, output: CommandOutput },
    #[error("reading the output of {program} failed: {source}")]
    Io { program: String, source: io::Error },
}

fn detail(output: &CommandOutput) -> String {
    let text = if output.stderr.trim().is_empty() { &output.stdout } else { &output.stderr };
    let text = text.trim();
    if text.is_empty() { "no output".to_owned() } else { text.to_owned() }
}

/// Kills a command's process group when dropped while armed. The future of a blocking task is
/// dropped when its caller hangs up (the controller's hook timeout is shorter than many
/// commands); `kill_on_drop` alone would stop only the direct child and leave what it started
/// running, outside `--max-tasks`.
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(group) = self.0 {
            // ESRCH (already gone) is fine; anything else leaves kill_on_drop as the fallback.
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }

    /// The command was waited for: its pid may be reused, so never signal that group again.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `program args...` with no stdin, capturing up to `output_limit` bytes of each output
/// stream, and kills its whole process group if it runs longer than `timeout` or if the
/// returned future is dropped before the command ends.
pub async fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
    output_limit: usize,
) -> Result<CommandOutput, ExecError> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also stops what a shell started in the background.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ExecError::Spawn { program: program.to_owned(), source })?;
    let mut group = GroupGuard(child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout, output_limit),
            read_bounded(stderr, output_limit),
            child.wait()
        );
        Ok::<_, io::Error>((out?, err?, status?))
    })
    .await;
    let io_err = |source| ExecError::Io { program: program.to_owned(), source };
    match finished {
        Ok(Ok(((stdout, t1), (stderr, t2), status))) => {
            group.disarm();
            let output = CommandOutput { stdout, stderr, truncated: t1 || t2 };
            if status.success() {
                Ok(output)
            } else {
                Err(ExecError::Failed { program: program.to_owned(), status, output })
            }
        }
        Ok(Err(e)) => Err(io_err(e)),
        Err(_elapsed) => {
            group.kill();
            let _ = child.kill().await;
            group.disarm();
            Err(ExecError::TimedOut { program: program.to_owned(), after: duration::format(timeout) })
        }
    }
}

/// Reads a stream to its end, keeping at most `limit` bytes; the rest is drained and dropped
/// so the child never blocks on a full pipe.
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>, limit: usize) -> io::Result<(String, bool)> {
    let Some(mut stream) = stream else { return Ok((String::new(), false)) };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        let room = limit.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        truncated |= n > room;
    }
    Ok((String::from_utf8_lossy(&kept).into_owned(), truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn disabled_by_default() {
        let p = ShellPolicy::disabled();
        let e = p.check("type bash", "echo hi").unwrap_err();
        assert!(matches!(e, ShellRefusal::Disabled { .. }));
        assert!(e.to_string().contains("--allow-shell"), "{e}");
    }

    #[test]
    fn patterns_match_the_whole_line() {
        let p = ShellPolicy::new(
            true,
            &pats(&["curl -sd 'test' http://podinfo-canary\\.[a-z-]+/token", "kubectl get .*"]),
        )
        .unwrap();
        assert!(p.check("cmd", "curl -sd 'test' http://podinfo-canary.test/token").is_ok());
        assert!(p.check("cmd", "kubectl get pods -n test").is_ok());
        // A prefix match is not enough: the tail could be anything.
        let e = p.check("cmd", "curl -sd 'test' http://podinfo-canary.test/token; rm -rf /").unwrap_err();
        assert!(matches!(e, ShellRefusal::NotAllowed { .. }), "{e}");
        assert!(p.check("cmd", "xkubectl get pods").is_err());
        // Alternation inside a pattern is anchored as a whole.
        let p = ShellPolicy::new(true, &pats(&["a|b"])).unwrap();
        assert!(p.check("cmd", "a").is_ok());
        assert!(p.check("cmd", "a; c").is_err());
    }

    #[test]
    fn flag_combinations_that_make_no_sense_are_rejected() {
        assert!(matches!(ShellPolicy::new(true, &[]), Err(ShellPolicyError::NoPatterns)));
        assert!(matches!(
            ShellPolicy::new(false, &pats(&["x"])),
            Err(ShellPolicyError::PatternsWithoutShell)
        ));
        assert!(matches!(ShellPolicy::new(true, &pats(&["("])), Err(ShellPolicyError::BadPattern { .. })));
        assert!(!ShellPolicy::new(false, &[]).unwrap().shell_allowed());
    }

    #[tokio::test]
    async fn runs_commands_and_reports_failures_with_output() {
        let t = Duration::from_secs(10);
        let out = run_command("sh", &["-c".into(), "echo out; echo err >&2".into()], t, 1024).await.unwrap();
        assert_eq!(out, CommandOutput { stdout: "out\n".into(), stderr: "err\n".into(), truncated: false });

        let e = run_command("sh", &["-c".into(), "echo nope >&2; exit 3".into()], t, 1024).await.unwrap_err();
        assert!(matches!(e, ExecError::Failed { .. }));
        assert!(e.to_string().contains("nope"), "{e}");

        let e = run_command("veer-no-such-program", &[], t, 1024).await.unwrap_err();
        assert!(e.to_string().contains("is veer-no-such-program installed"), "{e}");
    }

    #[tokio::test]
    async fn output_is_capped() {
        let out =
            run_command("sh", &["-c".into(), "yes | head -c 100000".into()], Duration::from_secs(10), 10)
                .await
                .unwrap();
        assert_eq!(out.stdout, "y\ny\ny\ny\ny\n");
        assert!(out.truncated);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A background child that would leave a mark after 1 s if it outlived the timeout.
        let script = format!("(sleep 1; touch '{}') & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let e =
            run_command("sh", &["-c".into(), script], Duration::from_millis(300), 1024).await.unwrap_err();
        println!("timed-out command returned after {:?}", started.elapsed());
        assert!(matches!(e, ExecError::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("--timeout"), "{e}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a process of the timed-out command's group was still running");
    }

    #[tokio::test]
    async fn dropping_the_future_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // As a caller hanging up on a blocking task: the future is dropped mid-command.
        let script = format!("(sleep 1; touch '{}') & sleep 30", marker.display());
        let run = tokio::spawn(async move {
            run_command("sh", &["-c".into(), script], Duration::from_secs(60), 1024).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "a process of the dropped command's group was still running");
    }
}
