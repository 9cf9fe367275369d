//! `cairn agent`: runs an agent; and `cairn executor`, the per-task process an agent starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use cairn_agent::{host, AgentConfig};
use tokio_util::sync::CancellationToken;

use crate::config::LogFormat;

/// The flags of `cairn agent` (each also read from its `CAIRN_AGENT_*` variable).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFlags {
    /// The masters, `host:port`, comma-separated; any of them leads the agent to the leader.
    #[arg(long, env = "CAIRN_MASTER", value_delimiter = ',', required = true)]
    pub master: Vec<String>,
    /// Where the agent keeps its identity, task records, unsent updates and sandboxes.
    #[arg(
        long,
        env = "CAIRN_AGENT_DATA_DIR",
        default_value = "./cairn-agent-data"
    )]
    pub data_dir: PathBuf,
    /// Address of the agent's own endpoints (sandbox files, state, metrics).
    #[arg(long, env = "CAIRN_AGENT_LISTEN", default_value = "127.0.0.1:5051")]
    pub listen: SocketAddr,
    /// The address masters and clients use to reach the agent [default: --listen].
    #[arg(long, env = "CAIRN_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    /// The name the agent registers under [default: the host's name].
    #[arg(long, env = "CAIRN_AGENT_HOSTNAME")]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Time between SIGTERM and SIGKILL when a task sets none.
    #[arg(long, env = "CAIRN_AGENT_KILL_GRACE_SECS", default_value_t = 3)]
    pub kill_grace_secs: u64,
    /// Sandboxes of ended tasks kept, newest first (their logs stay readable).
    #[arg(long, env = "CAIRN_AGENT_SANDBOXES_KEPT", default_value_t = 1000)]
    pub sandboxes_kept: usize,
    /// How to write logs.
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `info,cairn_agent=debug`.
    #[arg(long, env = "CAIRN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// What the agent offers; detected from the host unless given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResourceFlags {
    /// CPUs to offer (fractions allowed) [default: every CPU].
    #[arg(long, env = "CAIRN_AGENT_CPUS")]
    pub cpus: Option<f64>,
    /// Memory to offer, MiB [default: all but half, at most 1 GiB].
    #[arg(long, env = "CAIRN_AGENT_MEM")]
    pub mem: Option<u64>,
    /// Disk to offer, MiB [default: the data dir's free space but half, at most 5 GiB].
    #[arg(long, env = "CAIRN_AGENT_DISK")]
    pub disk: Option<u64>,
    /// Port ranges to offer, as Mesos writes them: `31000-32000,8080`.
    #[arg(long, env = "CAIRN_AGENT_PORTS")]
    pub ports: Option<String>,
    /// Attributes for placement constraints, as Mesos writes them: `rack:r1;zone:eu-1`.
    #[arg(long, env = "CAIRN_AGENT_ATTRIBUTES")]
    pub attributes: Option<String>,
}

impl ResourceFlags {
    /// The agent's configuration: detected resources overridden by these flags.
    pub fn agent_config(
        &self,
        masters: Vec<String>,
        data_dir: PathBuf,
        listen: SocketAddr,
    ) -> anyhow::Result<AgentConfig> {
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("data-dir: cannot create {}", data_dir.display()))?;
        // Absolute, because tasks see their sandbox's path (MESOS_SANDBOX).
        let data_dir = std::fs::canonicalize(&data_dir)
            .with_context(|| format!("data-dir: cannot resolve {}", data_dir.display()))?;
        let mut resources = host::detect(&data_dir);
        if let Some(cpus) = self.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                anyhow::bail!("cpus: must be a positive number, got {cpus}");
            }
            resources.cpus_milli = (cpus * 1000.0).round() as u64;
        }
        if let Some(mem) = self.mem {
            resources.mem_mib = mem;
        }
        if let Some(disk) = self.disk {
            resources.disk_mib = disk;
        }
        if let Some(ports) = &self.ports {
            resources.ports = host::parse_ports(ports).map_err(anyhow::Error::msg)?;
        }
        let attributes = match &self.attributes {
            Some(text) => host::parse_attributes(text).map_err(anyhow::Error::msg)?,
            None => Default::default(),
        };
        Ok(AgentConfig {
            masters,
            data_dir,
            listen,
            advertise: None,
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into()),
            resources,
            attributes,
            executable: std::env::current_exe().context("cannot find the cairn binary")?,
            kill_grace: Duration::from_secs(3),
            sandboxes_kept: 1000,
        })
    }
}

/// `cairn agent`.
pub fn main(flags: AgentFlags) -> anyhow::Result<ExitCode> {
    crate::telemetry::init(flags.log_format, &flags.log_level)?;
    let mut config =
        flags
            .resources
            .agent_config(flags.master.clone(), flags.data_dir.clone(), flags.listen)?;
    config.advertise = flags.advertise.clone();
    if let Some(hostname) = &flags.hostname {
        config.hostname = hostname.clone();
    }
    config.kill_grace = Duration::from_secs(flags.kill_grace_secs);
    config.sandboxes_kept = flags.sandboxes_kept;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(crate::master::stop_on_signal(
            crate::master::Signals::install()?,
            stop.clone(),
        ));
        cairn_agent::run(config, stop).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `cairn executor <sandbox>` (started by an agent, not by people).
pub fn executor(sandbox: PathBuf) -> ExitCode {
    // The task runs with the kernel's own setting, whatever a `cairn dev` process running
    // the agent chose for itself (`without_huge_pages`). An error means the kernel has no
    // such switch, so nothing was turned off.
    let _ = nix::sys::prctl::set_thp_disable(false);
    cairn_agent::executor::wrapper::main(&sandbox)
}
