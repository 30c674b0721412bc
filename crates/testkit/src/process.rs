//! One running `mariadbd` child process: spawning with output to a log file, signalling by pid,
//! reaping, and a watchdog that ends the server if the test process itself dies.
//!
//! `Drop` of the owning fixture covers normal ends and panics. A test process that is killed
//! (a runner's timeout, Ctrl-C) runs no destructors, so every server gets a tiny `sh` watchdog
//! that blocks reading a pipe from the test process: when that process dies the pipe closes,
//! `read` fails and the watchdog SIGKILLs the server and removes its directory. A clean stop
//! writes a newline first, which lets the watchdog exit without doing anything.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::error::{FixtureError, IoContext};

const WATCHDOG_SCRIPT: &str =
    r#"read -r _ || { kill -9 "$1" 2>/dev/null; sleep 1; [ -n "$2" ] && rm -rf -- "$2"; }"#;

/// A spawned server process, reaped and killed by its owner.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    /// Set once `wait` has returned: the pid may belong to someone else from then on.
    reaped: bool,
    watchdog: Option<(Child, ChildStdin)>,
}

impl ServerProcess {
    /// Start `program args...` in its own process group (so a Ctrl-C meant for the test runner
    /// does not reach it), stdout and stderr appended to `log_path`. `cleanup_dir` is removed by
    /// the watchdog if the test process dies.
    pub(crate) fn spawn(
        program: &Path,
        args: &[String],
        log_path: &Path,
        cleanup_dir: Option<&Path>,
    ) -> Result<Self, FixtureError> {
        let log = open_log(log_path)?;
        let log_err = log
            .try_clone()
            .context(|| format!("cannot duplicate {}", log_path.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .context(|| format!("cannot start {}", program.display()))?;
        let watchdog = spawn_watchdog(child.id(), cleanup_dir);
        Ok(ServerProcess {
            child,
            reaped: false,
            watchdog,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited (and is reaped).
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>, FixtureError> {
        let pid = self.pid();
        let status = self
            .child
            .try_wait()
            .context(|| format!("cannot wait for mariadbd (pid {pid})"))?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// Graceful stop: SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    pub(crate) fn terminate(mut self, grace: Duration) -> Result<Ended, FixtureError> {
        if self.exited()?.is_some() {
            self.end_watchdog();
            return Ok(Ended::AlreadyExited);
        }
        let pid = Pid::from_child(&self.child);
        // ESRCH means it exited between the check and the signal: fine, the wait reaps it.
        let _ = kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited()?.is_some() {
                self.end_watchdog();
                return Ok(Ended::Terminated);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill()?;
        Ok(Ended::Killed)
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(mut self) -> Result<(), FixtureError> {
        let pid = self.pid();
        if self.exited()?.is_none() {
            // Fails only when the process already exited; `wait` below reaps it either way.
            let _ = self.child.kill();
        }
        self.child
            .wait()
            .context(|| format!("cannot wait for mariadbd (pid {pid})"))?;
        self.reaped = true;
        self.end_watchdog();
        Ok(())
    }

    fn end_watchdog(&mut self) {
        if let Some((mut watchdog, mut stdin)) = self.watchdog.take() {
            if stdin.write_all(b"\n").is_err() {
                let _ = watchdog.kill();
            }
            drop(stdin);
            let _ = watchdog.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Owners call terminate/kill; this is the backstop for early returns on error paths.
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.end_watchdog();
    }
}

/// How [`ServerProcess::terminate`] ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    AlreadyExited,
    Terminated,
    Killed,
}

fn open_log(path: &Path) -> Result<File, FixtureError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .context(|| format!("cannot open log file {}", path.display()))
}

/// Best effort: without `sh` the fixture still works, it just cannot clean up after a test
/// process that is killed.
fn spawn_watchdog(pid: u32, cleanup_dir: Option<&Path>) -> Option<(Child, ChildStdin)> {
    let dir = cleanup_dir
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("dbmesh-testkit-watchdog")
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
}

/// Whether a process with this pid exists (a zombie counts as existing).
pub fn pid_exists(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}
