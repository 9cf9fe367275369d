//! Network partitions between loopback addresses, by nftables rules (needs root; CI runs as
//! root). Each test names its own rules, so that tests running at once do not undo each
//! other's.

use std::process::{Command, Stdio};

/// nftables rules dropping traffic between one address and others; removed on drop.
#[derive(Debug)]
pub struct Partition {
    table: String,
}

impl Partition {
    /// Cuts `host` off from each of `from`. `test` names the rules (a short tag, unique per
    /// test).
    pub fn isolate(test: &str, host: &str, from: &[&str]) -> Self {
        let prefix = format!("cairn_partition_{test}_");
        // A run that was killed could not remove its rules: clear them first.
        let tables = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .expect("nft (nftables) is installed");
        for line in String::from_utf8_lossy(&tables.stdout).lines() {
            if let Some(stale) = line
                .strip_prefix("table inet ")
                .filter(|t| t.starts_with(&prefix))
            {
                nft(&format!("delete table inet {stale}\n"));
            }
        }
        let table = format!("{prefix}{}", std::process::id());
        let mut script = format!(
            "add table inet {table}\nadd chain inet {table} out {{ type filter hook output priority 0; }}\n"
        );
        for other in from {
            script += &format!("add rule inet {table} out ip saddr {host} ip daddr {other} drop\n");
            script += &format!("add rule inet {table} out ip saddr {other} ip daddr {host} drop\n");
        }
        nft(&script);
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        nft(&format!("delete table inet {}\n", self.table));
    }
}

fn nft(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (nftables) is installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "nft refused:\n{script}");
}
