//! `cairn cluster status|add|remove`: a running cluster of masters, over their HTTP API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use cairn_log::engine::MemberStatus;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Each master's role, term, last log index, applied index, head and lag.
    Status {
        #[command(flatten)]
        masters: Masters,
        /// `table` or `json`.
        #[arg(short = 'o', long, default_value = "table")]
        output: String,
    },
    /// Add a master: it catches up as a learner, then votes. Start it first with
    /// `cairn master --peers` naming the new membership.
    Add {
        #[command(flatten)]
        masters: Masters,
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        address: String,
    },
    /// Remove a master from the cluster.
    Remove {
        #[command(flatten)]
        masters: Masters,
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct Masters {
    /// Masters to ask (`host:port`, comma-separated); any reachable one will do.
    #[arg(
        long,
        env = "CAIRN_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:5050"
    )]
    pub masters: Vec<String>,
    /// The API token to present (`cairn token new` makes one), if the masters ask for one.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Masters {
    /// `Authorization`'s value for the token, if one was given.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// An HTTP client that presents the token on every request.
    pub(crate) fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = self.authorization() {
            let mut value = reqwest::header::HeaderValue::from_str(&value)
                .context("token: not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .build()?)
    }
}

pub fn main(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(command))
}

async fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let (ClusterCommand::Status { masters, .. }
    | ClusterCommand::Add { masters, .. }
    | ClusterCommand::Remove { masters, .. }) = &command;
    let http = masters.client(Duration::from_secs(10))?;
    match command {
        ClusterCommand::Status { masters, output } => {
            let first = any_status(&http, &masters.masters).await?;
            let mut rows = Vec::new();
            for (id, addr) in &first.members {
                rows.push((*id, addr.clone(), status_of(&http, addr).await));
            }
            let leader_lag = match first.leader.and_then(|id| first.members.get(&id)) {
                Some(addr) => status_of(&http, addr)
                    .await
                    .map(|s| s.lag)
                    .unwrap_or_default(),
                None => Default::default(),
            };
            if output == "json" {
                let json: Vec<_> = rows
                    .iter()
                    .map(|(id, addr, s)| match s {
                        Ok(s) => serde_json::to_value(s).unwrap_or_default(),
                        Err(e) => serde_json::json!({ "node_id": id, "address": addr, "error": e.to_string() }),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&json)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>6}",
                "ID", "ADDRESS", "ROLE", "TERM", "LAST LOG", "COMMITTED", "APPLIED", "HEAD", "LAG"
            );
            for (id, addr, s) in rows {
                match s {
                    Ok(s) => println!(
                        "{:<4} {:<22} {:<10} {:>6} {:>10} {:>10} {:>10} {:>10} {:>6}",
                        id,
                        addr,
                        s.role,
                        s.term,
                        s.last_log_index,
                        s.commit_index,
                        s.last_applied,
                        s.head,
                        leader_lag
                            .get(&id)
                            .map_or("-".to_owned(), |l| l.to_string())
                    ),
                    Err(e) => println!("{id:<4} {addr:<22} unreachable: {e}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Add {
            masters,
            node_id,
            address,
        } => {
            let leader = leader_address(&http, &masters.masters).await?;
            let body = serde_json::json!({ "node_id": node_id, "address": address });
            let response = http
                .post(format!("http://{leader}/v1/cluster/members"))
                .json(&body)
                .send()
                .await?;
            finish(response).await
        }
        ClusterCommand::Remove { masters, node_id } => {
            let leader = leader_address(&http, &masters.masters).await?;
            let response = http
                .delete(format!("http://{leader}/v1/cluster/members/{node_id}"))
                .send()
                .await?;
            finish(response).await
        }
    }
}

async fn status_of(http: &reqwest::Client, addr: &str) -> anyhow::Result<MemberStatus> {
    Ok(http
        .get(format!("http://{addr}/v1/cluster/status"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn any_status(http: &reqwest::Client, masters: &[String]) -> anyhow::Result<MemberStatus> {
    for addr in masters {
        if let Ok(status) = status_of(http, addr).await {
            return Ok(status);
        }
    }
    bail!("masters: none of {masters:?} answered")
}

async fn leader_address(http: &reqwest::Client, masters: &[String]) -> anyhow::Result<String> {
    let status = any_status(http, masters).await?;
    let leader = status
        .leader
        .context("no leader is elected right now; retry")?;
    status
        .members
        .get(&leader)
        .cloned()
        .context("the leader is not among the members")
}

async fn finish(response: reqwest::Response) -> anyhow::Result<ExitCode> {
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: {}", body["error"].as_str().unwrap_or("unknown"));
        Ok(ExitCode::from(if status.is_client_error() { 2 } else { 1 }))
    }
}
