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
    /// Probes the host: whether a child cgroup can be made beside the agent's own.
    pub fn detect() -> Self {
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            if let Some(base) = own_path("") {
                if writable(&Path::new(ROOT).join(base.trim_start_matches('/'))) {
                    return Self::CgroupsV2;
                }
            }
        }
        let v1 = ["cpu", "memory"].iter().all(|c| {
            own_path(c)
                .is_some_and(|p| writable(&Path::new(ROOT).join(c).join(p.trim_start_matches('/'))))
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

/// One task's cgroup: a directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroup {
    pub isolation: Isolation,
    pub dirs: Vec<PathBuf>,
}

impl TaskCgroup {
    /// Creates the task's cgroup under the agent's own and writes `limits`.
    pub fn create(isolation: Isolation, name: &str, limits: Limits) -> std::io::Result<Self> {
        let quota = (limits.cpus_milli * PERIOD_US / 1000).max(1000);
        let mem = limits.mem_mib << 20;
        let dirs = match isolation {
            Isolation::None => Vec::new(),
            Isolation::CgroupsV2 => {
                let parent =
                    Path::new(ROOT).join(own_path("").unwrap_or_default().trim_start_matches('/'));
                // Controllers must be enabled for children; best effort, as a parent may
                // already have them.
                let _ = fs::write(parent.join("cgroup.subtree_control"), "+cpu +memory");
                let dir = parent.join(name);
                fs::create_dir_all(&dir)?;
                fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?;
                fs::write(dir.join("memory.max"), mem.to_string())?;
                vec![dir]
            }
            Isolation::CgroupsV1 => {
                let cpu = v1_dir("cpu", name);
                fs::create_dir_all(&cpu)?;
                fs::write(cpu.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
                fs::write(cpu.join("cpu.cfs_quota_us"), quota.to_string())?;
                let memory = v1_dir("memory", name);
                fs::create_dir_all(&memory)?;
                fs::write(memory.join("memory.limit_in_bytes"), mem.to_string())?;
                vec![cpu, memory]
            }
        };
        Ok(Self { isolation, dirs })
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

    /// Moves `pid` back to the parent cgroups and removes the task's (once it is empty).
    pub fn remove(&self, pid: u32) {
        for dir in &self.dirs {
            if let Some(parent) = dir.parent() {
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

/// Whether a child directory can be made (and removed) in `dir`.
fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!("cairn-probe-{}", std::process::id()));
    let ok = fs::create_dir(&probe).is_ok();
    let _ = fs::remove_dir(&probe);
    ok
}
