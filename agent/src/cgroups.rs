//! CPU and memory limits for process tasks, through Linux cgroups (v2, or v1's `cpu` and
//! `memory` hierarchies), where the host lets the agent write them.
//!
//! Written by hand rather than with `cgroups-rs`: a task needs one directory per hierarchy and
//! three files in each, and the part that varies between hosts (where the agent's own cgroup
//! is, which version is mounted, whether it is writable) is exactly what the probe here
//! decides. Each task's cgroup is a child of the agent's own, so the agent's limits bound it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const ROOT: &str = "/sys/fs/cgroup";
/// The CFS period for CPU quotas: 100 ms, the kernel's default.
const PERIOD_US: u64 = 100_000;

/// Which cgroup interface the agent limits tasks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    CgroupsV2,
    CgroupsV1,
    /// No writable cgroup hierarchy: tasks run unlimited (the agent says so at start).
    None,
}

impl Isolation {
    /// Probes the host: whether a child of the agent's own cgroup can be made and carries
    /// the CPU and memory limit files (on v2 the controllers must be delegated to it, which
    /// a cgroup holding processes cannot do: then tasks run unlimited, as the agent says).
    pub fn detect() -> Self {
        let root = Path::new(ROOT);
        if root.join("cgroup.controllers").exists() {
            if let Some(own) = own_path("") {
                let dir = root.join(own.trim_start_matches('/'));
                let _ = fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
                if limits_possible(&dir, &["cpu.max", "memory.max"]) {
                    return Self::CgroupsV2;
                }
            }
            return Self::None;
        }
        let v1 = [
            ("cpu", "cpu.cfs_quota_us"),
            ("memory", "memory.limit_in_bytes"),
        ]
        .iter()
        .all(|(controller, file)| {
            own_path(controller).is_some_and(|p| {
                limits_possible(
                    &root.join(controller).join(p.trim_start_matches('/')),
                    &[file],
                )
            })
        });
        if v1 {
            Self::CgroupsV1
        } else {
            Self::None
        }
    }
}

/// Limits to apply to one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub cpus_milli: u64,
    pub mem_mib: u64,
}

/// Files to write in one cgroup directory, with their values.
type Writes = Vec<(&'static str, String)>;

/// One task's cgroup: a directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroup {
    pub isolation: Isolation,
    pub dirs: Vec<PathBuf>,
}

impl TaskCgroup {
    /// Creates the task's cgroup under the agent's own and writes `limits`; on failure
    /// leaves nothing behind.
    pub fn create(isolation: Isolation, name: &str, limits: Limits) -> std::io::Result<Self> {
        let quota = (limits.cpus_milli * PERIOD_US / 1000).max(1000);
        let mem = limits.mem_mib << 20;
        let (dirs, files): (Vec<PathBuf>, Vec<Writes>) = match isolation {
            Isolation::None => (Vec::new(), Vec::new()),
            Isolation::CgroupsV2 => {
                let parent =
                    Path::new(ROOT).join(own_path("").unwrap_or_default().trim_start_matches('/'));
                (
                    vec![parent.join(name)],
                    vec![vec![
                        ("cpu.max", format!("{quota} {PERIOD_US}")),
                        ("memory.max", mem.to_string()),
                    ]],
                )
            }
            Isolation::CgroupsV1 => (
                vec![v1_dir("cpu", name), v1_dir("memory", name)],
                vec![
                    vec![
                        ("cpu.cfs_period_us", PERIOD_US.to_string()),
                        ("cpu.cfs_quota_us", quota.to_string()),
                    ],
                    vec![("memory.limit_in_bytes", mem.to_string())],
                ],
            ),
        };
        let cgroup = Self { isolation, dirs };
        let written = cgroup.dirs.iter().zip(&files).try_for_each(|(dir, files)| {
            fs::create_dir_all(dir)?;
            files
                .iter()
                .try_for_each(|(file, value)| fs::write(dir.join(file), value))
        });
        match written {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                cgroup.remove(None);
                Err(e)
            }
        }
    }

    /// Moves process `pid` (and so its future children) into the cgroup.
    pub fn join(&self, pid: u32) -> std::io::Result<()> {
        for dir in &self.dirs {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether the kernel killed a process here for exceeding the memory limit (`oom_kill`
    /// in v2's `memory.events`, or in v1's `memory.oom_control`).
    pub fn oom_killed(&self) -> bool {
        self.dirs.iter().any(|d| {
            ["memory.events", "memory.oom_control"].iter().any(|file| {
                fs::read_to_string(d.join(file)).ok().is_some_and(|s| {
                    s.lines()
                        .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
                })
            })
        })
    }

    /// Kills every process in the cgroup but `except`, until the kernel has emptied it (at
    /// most 5 s).
    pub async fn drain(&self, except: Option<u32>) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let others: Vec<i32> = self
                .pids()
                .into_iter()
                .filter(|p| Some(*p as u32) != except)
                .collect();
            if others.is_empty() || tokio::time::Instant::now() >= deadline {
                return;
            }
            for pid in others {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Killed processes leave the cgroup once the kernel has reaped them.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Moves `pid` (if any) back to the parent cgroups and removes the task's, once empty.
    pub fn remove(&self, pid: Option<u32>) {
        for dir in &self.dirs {
            if let (Some(parent), Some(pid)) = (dir.parent(), pid) {
                let _ = fs::write(parent.join("cgroup.procs"), pid.to_string());
            }
            let _ = fs::remove_dir(dir);
        }
    }
}

fn v1_dir(controller: &str, name: &str) -> PathBuf {
    Path::new(ROOT)
        .join(controller)
        .join(
            own_path(controller)
                .unwrap_or_default()
                .trim_start_matches('/'),
        )
        .join(name)
}

/// This process's cgroup path in the hierarchy holding `controller` ("" for v2's unified one).
fn own_path(controller: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        matches.then(|| path.to_owned())
    })
}

/// Whether a child cgroup of `dir` can be made, with every one of `files` in it.
fn limits_possible(dir: &Path, files: &[&str]) -> bool {
    let probe = dir.join(format!("cairn-probe-{}", std::process::id()));
    let ok = fs::create_dir(&probe).is_ok() && files.iter().all(|f| probe.join(f).exists());
    let _ = fs::remove_dir(&probe);
    ok
}
