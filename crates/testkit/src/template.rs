//! The cached template data directory that every instance's data dir is copied from.
//!
//! `mariadb-install-db` runs once per machine, user and server version, into
//! `$TMPDIR/dbmesh-testkit-template-<version>-v<format>-uid<uid>`. Concurrent test processes
//! (nextest runs one per test) serialise on an `flock` of a sibling `.lock` file; the template
//! is built in a staging directory, booted once to fix up the root accounts and shut down
//! cleanly, marked complete, and only then renamed into place, so a reader that sees the
//! marker sees a finished template and a crash mid-build leaves nothing that looks usable.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

use crate::error::{FixtureError, IoContext};
use crate::mariadb::{base_server_args, read_log_tail};
use crate::process::{Ended, ServerProcess};
use crate::tools::{find_program, run_sql, Target};

/// Bump when the way the template is built changes, so stale templates are not reused.
const TEMPLATE_FORMAT: u32 = 1;
/// Written last into a finished template.
pub(crate) const MARKER: &str = "dbmesh-testkit-template.ok";
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Root may log in with an empty password over TCP from 127.0.0.1 (mysql_native_password),
/// and over the socket; accounts for other hosts (e.g. `root@<hostname>`, which the server
/// ignores with `--skip-name-resolve` but warns about at every start) are dropped.
const FIX_ROOT_SQL: &str = "\
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
SELECT CONCAT('DROP USER ', QUOTE(user), '@', QUOTE(host), ';') FROM mysql.user
 WHERE user = 'root' AND host NOT IN ('localhost', '127.0.0.1', '::1');
";

/// Return the template directory for `mariadbd`, building it first if needed.
pub(crate) fn template_dir(mariadbd: &Path) -> Result<PathBuf, FixtureError> {
    let version = server_version(mariadbd)?;
    let uid = rustix::process::geteuid().as_raw();
    let name = format!("dbmesh-testkit-template-{version}-v{TEMPLATE_FORMAT}-uid{uid}");
    let base = std::env::temp_dir();
    let dir = base.join(&name);
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }

    let lock_path = base.join(format!("{name}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(|| format!("cannot open lock file {}", lock_path.display()))?;
    // Blocks while another process builds; released when `lock` is dropped (or that process
    // dies), after which the marker tells us whether it finished.
    flock(&lock, FlockOperation::LockExclusive)
        .map_err(|e| FixtureError::io(format!("cannot lock {}", lock_path.display()), e.into()))?;
    if dir.join(MARKER).is_file() {
        return Ok(dir);
    }
    let staging = base.join(format!("{name}.building-{}", std::process::id()));
    remove_if_exists(&dir)?;
    remove_if_exists(&staging)?;
    let built = build(mariadbd, &staging);
    if built.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    built?;
    fs::rename(&staging, &dir)
        .context(|| format!("cannot rename {} to {}", staging.display(), dir.display()))?;
    Ok(dir)
}

/// The version word of `mariadbd --version`, e.g. `10.11.19-MariaDB-0+deb12u1`, made safe for
/// a file name.
fn server_version(mariadbd: &Path) -> Result<String, FixtureError> {
    let output = Command::new(mariadbd)
        .arg("--version")
        .output()
        .context(|| format!("cannot run {} --version", mariadbd.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.split_whitespace();
    let version = words
        .by_ref()
        .find(|w| *w == "Ver")
        .and_then(|_| words.next())
        .unwrap_or("unknown");
    Ok(version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect())
}

fn build(mariadbd: &Path, staging: &Path) -> Result<(), FixtureError> {
    let template_error = |reason: String, output: String| FixtureError::Template {
        dir: staging.to_owned(),
        reason,
        output,
    };

    let install_db = find_program(&["mariadb-install-db", "mysql_install_db"])?;
    let mut cmd = Command::new(&install_db);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", staging.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
        ]);
    if rustix::process::geteuid().is_root() {
        cmd.arg("--user=root");
    }
    let output = cmd
        .output()
        .context(|| format!("cannot run {}", install_db.display()))?;
    if !output.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        return Err(template_error(
            format!("{} exited with {}", install_db.display(), output.status),
            text,
        ));
    }

    // Boot once without networking to fix the root accounts over the socket.
    let scratch = tempfile::Builder::new()
        .prefix("dbmesh-testkit-boot-")
        .tempdir()
        .context(|| "cannot create a temp dir".to_owned())?;
    let socket = scratch.path().join("boot.sock");
    let log_path = scratch.path().join("boot.log");
    let mut args = base_server_args(staging, &socket, &scratch.path().join("boot.pid"), 20);
    args.push("--skip-networking".to_owned());
    let mut server = ServerProcess::spawn(mariadbd, &args, &log_path, Some(staging))?;
    let target = Target {
        host: "localhost",
        port: 0,
        user: "root",
        password: "",
        socket: Some(&socket),
    };

    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        if let Some(status) = server.exited()? {
            return Err(template_error(
                format!("mariadbd exited with {status} on first boot"),
                read_log_tail(&log_path, 0),
            ));
        }
        if socket.exists() && run_sql(&target, "SELECT 1").is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            return Err(template_error(
                format!("mariadbd did not answer within {BOOT_TIMEOUT:?} on first boot"),
                read_log_tail(&log_path, 0),
            ));
        }
        thread::sleep(Duration::from_millis(25));
    }

    let fixed = run_sql(&target, FIX_ROOT_SQL).and_then(|drops| {
        if drops.trim().is_empty() {
            Ok(String::new())
        } else {
            run_sql(&target, &drops)
        }
    });
    if let Err(e) = fixed {
        let _ = server.kill();
        return Err(template_error(
            "fixing the root accounts failed".into(),
            e.to_string(),
        ));
    }
    match server.terminate(BOOT_TIMEOUT)? {
        Ended::Terminated => {}
        other => {
            return Err(template_error(
                format!("mariadbd did not shut down cleanly after first boot ({other:?})"),
                read_log_tail(&log_path, 0),
            ))
        }
    }
    fs::write(staging.join(MARKER), b"complete\n")
        .context(|| format!("cannot write {}", staging.join(MARKER).display()))?;
    Ok(())
}

fn remove_if_exists(dir: &Path) -> Result<(), FixtureError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FixtureError::io(
            format!("cannot remove {}", dir.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Copy a template into `dst` (which must not exist), leaving out the marker.
pub(crate) fn copy_template(src: &Path, dst: &Path) -> Result<(), FixtureError> {
    fs::create_dir(dst).context(|| format!("cannot create {}", dst.display()))?;
    let entries = fs::read_dir(src).context(|| format!("cannot read {}", src.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("cannot read {}", src.display()))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry
            .file_type()
            .context(|| format!("cannot stat {}", from.display()))?;
        if kind.is_dir() {
            copy_template(&from, &to)?;
        } else if entry.file_name() != MARKER {
            fs::copy(&from, &to)
                .context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}
