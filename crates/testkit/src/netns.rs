//! A network namespace of the test's own, joined to the host by a veth pair: a server started
//! in it ([`crate::MariaDbBuilder::in_netns`]) is reached over a real interface, where nftables
//! rules inside the namespace drop its traffic — a partition, a lossy link — without touching
//! loopback or anything else on the machine.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables); [`NetNs::unavailable`] says when they are
//! missing, so a test can skip. Each test process gets one address block, from its pid, so
//! concurrent test processes never share one.

use std::process::Command;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::FixtureError;
use crate::tools::find_program;

/// The nftables table the fault rules live in (inside the namespace only).
const TABLE: &str = "dbmesh_fault";

/// Whether this process's namespace exists, and a wait for it to go.
static IN_USE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn lock(m: &Mutex<bool>) -> MutexGuard<'_, bool> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn release() {
    *lock(&IN_USE.0) = false;
    IN_USE.1.notify_one();
}

/// A namespace `dbmesh-<pid>` with interface `dbm<pid>n` at [`NetNs::address`], joined to
/// `dbm<pid>h` on the host. Dropping it deletes the namespace (and with it the veth pair).
#[derive(Debug)]
pub struct NetNs {
    name: String,
    address: String,
}

impl NetNs {
    /// Why this machine cannot give a test a namespace (not root, no `ip` or `nft`), or `None`.
    pub fn unavailable() -> Option<String> {
        if !rustix::process::geteuid().is_root() {
            return Some("network namespaces need root".to_owned());
        }
        for tool in ["ip", "nft"] {
            if let Err(e) = find_program(&[tool]) {
                return Some(e.to_string());
            }
        }
        None
    }

    /// Create the namespace and its link to the host. A test process has one at a time: a
    /// second call waits until the first namespace is dropped.
    pub fn create() -> Result<NetNs, FixtureError> {
        {
            let mut busy = lock(&IN_USE.0);
            while *busy {
                busy = IN_USE.1.wait(busy).unwrap_or_else(PoisonError::into_inner);
            }
            *busy = true;
        }
        let created = Self::set_up();
        if created.is_err() {
            release();
        }
        created
    }

    fn set_up() -> Result<NetNs, FixtureError> {
        let pid = std::process::id();
        // A /30 of 10.0.0.0/8 per pid (pids fit in 22 bits): .1 is the host's end, .2 the
        // namespace's.
        let block = pid << 2;
        let [_, a, b, c] = block.to_be_bytes();
        let host_ip = format!("10.{a}.{b}.{}", c | 1);
        let address = format!("10.{a}.{b}.{}", c | 2);
        let name = format!("dbmesh-{pid}");
        let (host_if, ns_if) = (format!("dbm{pid}h"), format!("dbm{pid}n"));
        // A namespace left by a killed test process of the same pid is replaced.
        let _ = ip(&["netns", "del", &name]);
        let netns = NetNs { name, address };
        ip(&["netns", "add", &netns.name])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ])?;
        ip(&["link", "set", &ns_if, "netns", &netns.name])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        netns.exec_ip(&[
            "addr",
            "add",
            &format!("{}/30", netns.address),
            "dev",
            &ns_if,
        ])?;
        netns.exec_ip(&["link", "set", &ns_if, "up"])?;
        netns.exec_ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's IPv4 address, reachable from the host.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Drop `percent` of the packets entering and leaving the namespace over its link (100: a
    /// partition, the peers see silence), replacing any earlier rule.
    pub fn drop_packets(&self, percent: u8) -> Result<(), FixtureError> {
        self.heal()?;
        let rule = if percent >= 100 {
            "drop".to_owned()
        } else {
            format!("numgen random mod 100 < {percent} drop")
        };
        let script = format!(
            "table inet {TABLE} {{\n\
             chain input {{ type filter hook input priority 0; iifname != \"lo\" {rule}; }}\n\
             chain output {{ type filter hook output priority 0; oifname != \"lo\" {rule}; }}\n\
             }}\n"
        );
        run(
            Command::new("ip").args(["netns", "exec", &self.name, "nft", "-f", "-"]),
            Some(&script),
        )
    }

    /// Remove the drop rules: the link works again.
    pub fn heal(&self) -> Result<(), FixtureError> {
        // `destroy` is not in every nft; add-then-delete removes the table whether or not it was there.
        self.exec(&["nft", "add", "table", "inet", TABLE])?;
        self.exec(&["nft", "delete", "table", "inet", TABLE])
    }

    fn exec_ip(&self, args: &[&str]) -> Result<(), FixtureError> {
        let mut all = vec!["ip"];
        all.extend_from_slice(args);
        self.exec(&all)
    }

    fn exec(&self, args: &[&str]) -> Result<(), FixtureError> {
        run(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
            None,
        )
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; the veth pair goes with the namespace.
        let _ = ip(&["netns", "del", &self.name]);
        release();
    }
}

fn ip(args: &[&str]) -> Result<(), FixtureError> {
    run(Command::new("ip").args(args), None)
}

/// Run `command` (with `stdin` fed to it), failing with its stderr.
fn run(command: &mut Command, stdin: Option<&str>) -> Result<(), FixtureError> {
    use std::io::Write;
    use std::process::Stdio;
    let shown = format!("{command:?}");
    let failed = |reason: String| FixtureError::Network {
        command: shown.clone(),
        reason,
    };
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}
