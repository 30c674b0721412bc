//! Finding the MariaDB programs and running SQL through the `mariadb` command-line client.
//!
//! The client is used (rather than a Rust driver) so that the fixture stays synchronous, works
//! inside and outside async tests, and checks the servers with a program independent of the
//! code under test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{FixtureError, IoContext};

/// Directories searched after `PATH`: Debian puts `mariadbd` in /usr/sbin, which is not on a
/// normal user's `PATH`.
const EXTRA_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/bin",
    "/usr/local/bin",
    "/usr/libexec",
    "/usr/local/mysql/bin",
];

/// Find the first of `names` (preferred name first, then legacy aliases) in `PATH` or the
/// usual system directories.
pub(crate) fn find_program(names: &[&str]) -> Result<PathBuf, FixtureError> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for name in names {
        let candidates = path_dirs
            .iter()
            .cloned()
            .chain(EXTRA_DIRS.iter().map(PathBuf::from));
        for dir in candidates {
            let file = dir.join(name);
            if is_executable(&file) {
                return Ok(file);
            }
        }
    }
    Err(FixtureError::BinaryNotFound {
        name: names.join(" or "),
        searched: EXTRA_DIRS.join(", "),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Where and as whom the client connects.
pub(crate) struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a str,
    /// Connect over this Unix socket instead of TCP (used before root@127.0.0.1 is set up).
    pub socket: Option<&'a Path>,
}

/// Run `statements` (one or more, `;`-separated) with
/// `mariadb --batch --skip-column-names` and return its standard output.
///
/// The statements go through standard input, so their size is not limited by the maximum length
/// of a command-line argument.
pub(crate) fn run_sql(target: &Target<'_>, statements: &str) -> Result<String, FixtureError> {
    run_sql_with(target, &[], statements)
}

/// [`run_sql`] with extra client options, which come after (and so override) the default
/// ones, e.g. `--column-names`.
pub(crate) fn run_sql_with(
    target: &Target<'_>,
    extra_args: &[&str],
    statements: &str,
) -> Result<String, FixtureError> {
    let client = find_program(&["mariadb", "mysql"])?;
    let mut cmd = Command::new(&client);
    cmd.arg("--no-defaults");
    let address = match target.socket {
        Some(socket) => {
            cmd.arg("--protocol=SOCKET")
                .arg(format!("--socket={}", socket.display()));
            socket.display().to_string()
        }
        None => {
            cmd.arg("--protocol=TCP")
                .arg(format!("--host={}", target.host))
                .arg(format!("--port={}", target.port));
            format!("{}:{}", target.host, target.port)
        }
    };
    cmd.arg(format!("--user={}", target.user))
        .args([
            "--batch",
            "--skip-column-names",
            "--connect-timeout=10",
            "--default-character-set=utf8mb4",
        ])
        .args(extra_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The password goes through the environment so it shows neither in `ps` nor in a warning.
    if target.password.is_empty() {
        cmd.env_remove("MYSQL_PWD");
    } else {
        cmd.env("MYSQL_PWD", target.password);
    }
    let mut child = cmd
        .spawn()
        .context(|| format!("cannot run {}", client.display()))?;
    let stdin = child.stdin.take();
    // Write on another thread: a large input and a large output would otherwise deadlock on
    // full pipes.
    let output = std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A client that exits early (connection refused) closes the pipe; its exit
                // status and stderr then tell what happened, so this error is not interesting.
                let _ = stdin.write_all(statements.as_bytes());
            }
        });
        child.wait_with_output()
    })
    .context(|| format!("cannot run {}", client.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(FixtureError::Sql {
            address,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            statements: statements.to_owned(),
        })
    }
}
