//! Configuration of `cairn dev` and `cairn master`: documented defaults, then a TOML file, then
//! environment variables, then flags; each later source overrides the earlier ones field by
//! field.
//!
//! ```toml
//! # cairn.toml — every key is optional; shown with its default
//! data-dir = "./cairn-data"
//! listen = "127.0.0.1:5050"
//! node-id = 1
//! peers = []                   # cairn master: every member as "id=host:port", this one included
//! log-format = "pretty"        # or "json"
//! log-level = "info"           # a tracing filter, e.g. "info,cairn_log=debug"
//!
//! [log]
//! max-append-entries = 10000   # entries in one append
//! queue-depth = 1024           # queued appends before appenders wait
//! subscriber-buffer = 1024     # groups a live subscriber may lag before it is dropped
//! max-subscribers = 1024
//! cache-mib = 1024             # sled page cache
//! snapshot-every = 10000       # raft entries between snapshots (then the raft log is purged)
//! kept-after-snapshot = 1000   # raft entries kept after a snapshot
//!
//! [projections]
//! checkpoint-every = 10000     # records between checkpoints, at the least
//! checkpoints-kept = 512       # then the one leaving the smallest gap goes: they cover the log
//! ended-tasks-kept = 10000     # terminal tasks kept in the read models (all stay in the log)
//! ended-runs-kept = 10000      # finished job runs kept
//! removed-frameworks-kept = 50 # removed frameworks kept (Mesos' max_completed_frameworks)
//! audit-entries-kept = 10000   # audit entries kept (older ones: as of an earlier offset)
//!
//! [agents]
//! timeout-secs = 75            # disconnected this long, an agent and its tasks are lost
//! reconnect-grace-secs = 15    # a new leader waits this long for agents to reconnect
//!
//! [apps]
//! enabled = true               # run the built-in apps scheduler (Marathon); false leaves
//!                              # offers to external frameworks and refuses app changes
//!
//! [jobs]
//! enabled = true               # run the built-in jobs scheduler (Chronos); false refuses
//!                              # job changes
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn_projections::live::ProjectorConfig;
use cairn_scheduler::RunnerConfig;
use serde::Deserialize;

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogSection {
    pub max_append_entries: usize,
    pub queue_depth: usize,
    pub subscriber_buffer: usize,
    pub max_subscribers: usize,
    pub cache_mib: u64,
    pub snapshot_every: u64,
    pub kept_after_snapshot: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        let d = cairn_log::engine::LogConfig::new("");
        Self {
            max_append_entries: d.max_append_entries,
            queue_depth: d.queue_depth,
            subscriber_buffer: d.subscriber_buffer,
            max_subscribers: d.max_subscribers,
            cache_mib: d.cache_bytes >> 20,
            snapshot_every: d.snapshot_every,
            kept_after_snapshot: d.kept_after_snapshot,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectionsSection {
    pub checkpoint_every: u64,
    pub checkpoints_kept: usize,
    pub ended_tasks_kept: usize,
    pub ended_runs_kept: usize,
    pub removed_frameworks_kept: usize,
    pub audit_entries_kept: usize,
}

impl Default for ProjectionsSection {
    fn default() -> Self {
        let d = ProjectorConfig::new("");
        Self {
            checkpoint_every: d.checkpoint_every,
            checkpoints_kept: d.checkpoints_kept,
            ended_tasks_kept: d.retention.ended_tasks,
            ended_runs_kept: d.retention.ended_runs,
            removed_frameworks_kept: d.retention.removed_frameworks,
            audit_entries_kept: d.retention.audit_entries,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentsSection {
    pub timeout_secs: u64,
    pub reconnect_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AppsSection {
    pub enabled: bool,
}

impl Default for AppsSection {
    fn default() -> Self {
        Self {
            enabled: RunnerConfig::default().apps,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobsSection {
    pub enabled: bool,
}

impl Default for JobsSection {
    fn default() -> Self {
        Self {
            enabled: RunnerConfig::default().jobs,
        }
    }
}

impl Default for AgentsSection {
    fn default() -> Self {
        let d = RunnerConfig::default();
        Self {
            timeout_secs: d.agent_timeout.as_secs(),
            reconnect_grace_secs: d.reconnect_grace.as_secs(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MasterConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Also serve on this port (of the same address), where Marathon's tools look (8080).
    pub marathon_port: Option<u16>,
    pub node_id: u64,
    /// The cluster's members (`id=host:port`); empty means this master alone.
    pub peers: Vec<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub log: LogSection,
    pub projections: ProjectionsSection,
    pub agents: AgentsSection,
    pub apps: AppsSection,
    pub jobs: JobsSection,
    /// API tokens (`[[tokens]]`: name, role, secret-blake3); none: the APIs ask for none.
    pub tokens: Vec<cairn_graphql::auth::TokenSpec>,
}

impl Default for MasterConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./cairn-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 5050)),
            marathon_port: None,
            node_id: 1,
            peers: Vec::new(),
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            log: LogSection::default(),
            projections: ProjectionsSection::default(),
            agents: AgentsSection::default(),
            apps: AppsSection::default(),
            jobs: JobsSection::default(),
            tokens: Vec::new(),
        }
    }
}

/// The flags of `cairn master`: the common ones, plus its place in a cluster.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct MasterFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// This master's id in the cluster [default: 1].
    #[arg(long, env = "CAIRN_NODE_ID")]
    pub node_id: Option<u64>,
    /// Every member of the cluster as `id=host:port`, this one included, comma-separated.
    /// The member with the smallest id creates the cluster on first start.
    #[arg(long, env = "CAIRN_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
}

/// The flags of `cairn dev`: the common ones, plus its agent.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct DevFlags {
    #[command(flatten)]
    pub common: CommonFlags,
    /// Address of the built-in agent's endpoints [default: 127.0.0.1:5051].
    #[arg(long, env = "CAIRN_AGENT_LISTEN")]
    pub agent_listen: Option<SocketAddr>,
    /// Run the master alone, without the built-in agent.
    #[arg(long)]
    pub no_agent: bool,
    #[command(flatten)]
    pub resources: crate::agent_cmd::ResourceFlags,
}

/// The flags (each also read from its `CAIRN_*` variable) that override the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct CommonFlags {
    /// A TOML configuration file.
    #[arg(long, env = "CAIRN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the log and checkpoints live [default: ./cairn-data].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve on; `cairn dev` accepts loopback addresses only [default: 127.0.0.1:5050].
    #[arg(long, env = "CAIRN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Also serve every API on this port of the listen address: Marathon's tools assume 8080.
    #[arg(long, env = "CAIRN_MARATHON_PORT")]
    pub marathon_port: Option<u16>,
    /// How to write logs [default: pretty].
    #[arg(long, env = "CAIRN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// A tracing filter such as `info` or `info,cairn_log=debug` [default: info].
    #[arg(long, env = "CAIRN_LOG_LEVEL")]
    pub log_level: Option<String>,
}

impl MasterConfig {
    /// `cairn master`'s configuration: [`MasterConfig::load`] plus the cluster flags.
    pub fn load_master(flags: &MasterFlags) -> anyhow::Result<Self> {
        let mut config = Self::load(&flags.common)?;
        if let Some(v) = flags.node_id {
            config.node_id = v;
        }
        if let Some(v) = &flags.peers {
            config.peers = v.clone();
        }
        config.validate()?;
        Ok(config)
    }

    /// Layers defaults, the file named by `flags.config` (if any) and the flags, then checks
    /// the result.
    pub fn load(flags: &CommonFlags) -> anyhow::Result<Self> {
        let mut config = match &flags.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(v) = &flags.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = flags.listen {
            config.listen = v;
        }
        if let Some(v) = flags.marathon_port {
            config.marathon_port = Some(v);
        }
        if let Some(v) = flags.log_format {
            config.log_format = v;
        }
        if let Some(v) = &flags.log_level {
            config.log_level = v.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The tokens the APIs accept.
    pub fn api_tokens(&self) -> anyhow::Result<cairn_graphql::auth::Tokens> {
        cairn_graphql::auth::Tokens::new(&self.tokens).map_err(anyhow::Error::msg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "listen: cairn serves loopback only until masters and agents authenticate each \
                 other, got {}",
                self.listen
            );
        }
        self.api_tokens()?;
        if self.marathon_port.is_some_and(|p| p == self.listen.port()) {
            bail!("marathon-port: must differ from the listen port");
        }
        if self.node_id == 0 {
            bail!("node-id: must be at least 1");
        }
        let peers = self.members()?;
        match peers.get(&self.node_id) {
            Some(addr) if *addr == self.listen.to_string() => {}
            Some(addr) => bail!(
                "peers: member {} is {addr}, but this master listens on {}",
                self.node_id,
                self.listen
            ),
            None => bail!(
                "peers: this master (node-id {}) is not among them",
                self.node_id
            ),
        }
        let log = &self.log;
        let projections = &self.projections;
        for (name, value) in [
            ("log.max-append-entries", log.max_append_entries),
            ("log.queue-depth", log.queue_depth),
            ("log.subscriber-buffer", log.subscriber_buffer),
            ("log.max-subscribers", log.max_subscribers),
            (
                "projections.checkpoint-every",
                projections.checkpoint_every as usize,
            ),
            ("projections.checkpoints-kept", projections.checkpoints_kept),
            (
                "projections.audit-entries-kept",
                projections.audit_entries_kept,
            ),
            ("agents.timeout-secs", self.agents.timeout_secs as usize),
        ] {
            if value == 0 {
                bail!("{name}: must be at least 1");
            }
        }
        Ok(())
    }

    /// The cluster's members by id: the `peers`, or this master alone.
    pub fn members(&self) -> anyhow::Result<std::collections::BTreeMap<u64, String>> {
        if self.peers.is_empty() {
            return Ok([(self.node_id, self.listen.to_string())].into());
        }
        let mut members = std::collections::BTreeMap::new();
        for peer in &self.peers {
            let Some((id, addr)) = peer.split_once('=') else {
                bail!("peers: {peer:?} is not id=host:port");
            };
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("peers: bad id in {peer:?}"))?;
            let addr: SocketAddr = addr
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("peers: bad address in {peer:?}"))?;
            if id == 0 || members.insert(id, addr.to_string()).is_some() {
                bail!("peers: id {id} is zero or given twice");
            }
        }
        Ok(members)
    }

    /// The log engine's configuration under this data dir.
    pub fn log_config(&self) -> cairn_log::engine::LogConfig {
        let mut c = cairn_log::engine::LogConfig::new(log_path(&self.data_dir));
        c.node_id = self.node_id;
        c.address = self.listen.to_string();
        c.max_append_entries = self.log.max_append_entries;
        c.queue_depth = self.log.queue_depth;
        c.subscriber_buffer = self.log.subscriber_buffer;
        c.max_subscribers = self.log.max_subscribers;
        c.cache_bytes = self.log.cache_mib << 20;
        c.snapshot_every = self.log.snapshot_every;
        c.kept_after_snapshot = self.log.kept_after_snapshot;
        c
    }
}

impl MasterConfig {
    /// The runner's configuration.
    pub fn runner_config(&self) -> RunnerConfig {
        RunnerConfig {
            agent_timeout: std::time::Duration::from_secs(self.agents.timeout_secs),
            reconnect_grace: std::time::Duration::from_secs(self.agents.reconnect_grace_secs),
            apps: self.apps.enabled,
            jobs: self.jobs.enabled,
            ..RunnerConfig::default()
        }
    }

    /// The projections' configuration under this data dir.
    pub fn projector_config(&self) -> ProjectorConfig {
        let mut c = ProjectorConfig::new(self.data_dir.join("checkpoints"));
        c.checkpoint_every = self.projections.checkpoint_every;
        c.checkpoints_kept = self.projections.checkpoints_kept;
        c.retention.ended_tasks = self.projections.ended_tasks_kept;
        c.retention.ended_runs = self.projections.ended_runs_kept;
        c.retention.removed_frameworks = self.projections.removed_frameworks_kept;
        c.retention.audit_entries = self.projections.audit_entries_kept;
        c
    }
}

/// Where a data dir keeps its log.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_then_file_then_flags() {
        assert_eq!(
            MasterConfig::load(&CommonFlags::default()).unwrap(),
            MasterConfig::default()
        );
        let file =
            write("data-dir = \"/var/lib/cairn\"\nlog-format = \"json\"\n[log]\nqueue-depth = 7\n[projections]\nremoved-frameworks-kept = 3\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            listen: Some("127.0.0.2:6060".parse().unwrap()),
            log_format: Some(LogFormat::Pretty),
            ..CommonFlags::default()
        };
        let config = MasterConfig::load(&flags).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/cairn"));
        assert_eq!(config.listen, "127.0.0.2:6060".parse().unwrap());
        assert_eq!(
            config.log_format,
            LogFormat::Pretty,
            "the flag wins over the file"
        );
        assert_eq!(config.log.queue_depth, 7);
        assert_eq!(config.projector_config().retention.removed_frameworks, 3);
        assert_eq!(
            config.log.max_subscribers, 1024,
            "unset keys keep their defaults"
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let file = write("listen = \"0.0.0.0:5050\"\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            ..CommonFlags::default()
        };
        let err = MasterConfig::load(&flags).unwrap_err().to_string();
        assert!(
            err.starts_with("listen: cairn serves loopback only"),
            "{err}"
        );

        let file = write("marathon-port = 5050\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            ..CommonFlags::default()
        };
        let err = MasterConfig::load(&flags).unwrap_err().to_string();
        assert!(err.starts_with("marathon-port: must differ"), "{err}");

        let file = write("[log]\nqueue-dept = 3\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            ..CommonFlags::default()
        };
        let err = format!("{:#}", MasterConfig::load(&flags).unwrap_err());
        assert!(err.contains("unknown field `queue-dept`"), "{err}");

        let file = write("[[tokens]]\nname = \"ci\"\nrole = \"read\"\nsecret-blake3 = \"00\"\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            ..CommonFlags::default()
        };
        let err = MasterConfig::load(&flags).unwrap_err().to_string();
        assert_eq!(err, "tokens[0].secret-blake3: not 64 hex digits");

        let file = write("[log]\nqueue-depth = 0\n");
        let flags = CommonFlags {
            config: Some(file.path().to_owned()),
            ..CommonFlags::default()
        };
        let err = MasterConfig::load(&flags).unwrap_err().to_string();
        assert_eq!(err, "log.queue-depth: must be at least 1");
    }
}
