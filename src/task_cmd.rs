//! `cairn task …`: one-off tasks from the command line, through the GraphQL API (and, for
//! logs, the agent's sandbox file API). Exit codes: 0 ok, 1 error, 2 rejected (invalid or
//! unplaceable).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cluster_cmd::Masters;
use crate::query_cmd::{failed, graphql, http, nodes, runtime, Output};

/// How often `--wait` and `logs -f` look again.
const POLL: Duration = Duration::from_millis(250);
/// Bytes read per request when following logs.
const CHUNK: u64 = 1 << 20;

#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Launch a one-off task: `cairn task run --cpus 0.1 --mem 32 -- echo hi`.
    Run(RunArgs),
    /// Kill a task: SIGTERM, then SIGKILL after the grace period.
    Kill {
        id: String,
        /// Seconds between SIGTERM and SIGKILL [default: the task's, or the agent's].
        #[arg(long)]
        grace: Option<u64>,
        #[command(flatten)]
        masters: Masters,
    },
    /// Print a task's stdout (or stderr) from its sandbox.
    Logs {
        id: String,
        /// Keep printing what the task writes until it ends.
        #[arg(short, long)]
        follow: bool,
        /// Start with the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// stderr instead of stdout.
        #[arg(long)]
        stderr: bool,
        #[command(flatten)]
        masters: Masters,
    },
    /// List tasks (those not ended, or with --all every one kept).
    List {
        #[arg(long)]
        all: bool,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Show one task with its whole status history.
    Show {
        id: String,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The task's name [default: the program's name].
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value_t = 0.1)]
    cpus: f64,
    /// Memory, MiB.
    #[arg(long, default_value_t = 32.0)]
    mem: f64,
    /// Disk, MiB.
    #[arg(long, default_value_t = 0.0)]
    disk: f64,
    /// Host ports to assign (PORT0, PORT1, … in the task's environment).
    #[arg(long, default_value_t = 0)]
    ports: u32,
    /// An environment variable, KEY=VALUE; repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Run as this user on the agent.
    #[arg(long)]
    user: Option<String>,
    /// Run in a Docker container of this image.
    #[arg(long)]
    docker: Option<String>,
    /// The container's network: BRIDGE, HOST or NONE.
    #[arg(long, default_value = "HOST")]
    network: String,
    /// A container port to publish on a host port from the agent's ranges (BRIDGE); repeatable.
    #[arg(long = "publish", value_name = "CONTAINER_PORT")]
    publish: Vec<u16>,
    /// A Docker parameter, KEY=VALUE (volume, env, label, workdir, user, …); repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when killed.
    #[arg(long)]
    kill_grace: Option<u64>,
    /// Wait for the task to end; exit 0 only if it finished well.
    #[arg(long)]
    wait: bool,
    #[arg(short = 'o', long, default_value = "text")]
    output: Output,
    #[command(flatten)]
    masters: Masters,
    /// The command: one argument runs through `sh -c`; several run directly.
    #[arg(last = true)]
    command: Vec<String>,
}

pub fn main(command: TaskCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            TaskCommand::Run(args) => run(args).await,
            TaskCommand::Kill { id, grace, masters } => kill(&masters, &id, grace).await,
            TaskCommand::Logs {
                id,
                follow,
                tail,
                stderr,
                masters,
            } => logs(&masters, &id, follow, tail, stderr).await,
            TaskCommand::List {
                all,
                output,
                masters,
            } => list(&masters, all, output).await,
            TaskCommand::Show {
                id,
                output,
                masters,
            } => show(&masters, &id, output).await,
        }
    })
}

fn pairs(flag: &str, list: &[String]) -> anyhow::Result<Vec<Value>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok(json!({ "key": k, "value": v })),
            None => bail!("--{flag}: {kv:?} is not KEY=VALUE"),
        })
        .collect()
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut input = json!({
        "name": args.name.clone().or_else(|| args.command.first().map(|c| {
            c.split_whitespace().next().unwrap_or("task").rsplit('/').next().unwrap_or("task").to_owned()
        })).or_else(|| args.docker.clone()).unwrap_or_else(|| "task".into()),
        "cpus": args.cpus,
        "mem": args.mem,
        "disk": args.disk,
        "ports": args.ports,
        "env": pairs("env", &args.env)?,
        "user": args.user,
        "killGracePeriodSeconds": args.kill_grace,
    });
    match args.command.as_slice() {
        [] => {}
        [one] => input["command"] = json!(one),
        many => input["args"] = json!(many),
    }
    if let Some(image) = &args.docker {
        input["docker"] = json!({
            "image": image,
            "network": args.network,
            "portMappings": args.publish.iter().map(|p| json!({ "containerPort": p })).collect::<Vec<_>>(),
            "parameters": pairs("param", &args.params)?,
        });
    }
    let response = graphql(
        &args.masters,
        "mutation($input: LaunchTaskInput!) { launchTask(input: $input) { id agentId state spec } }",
        json!({ "input": input }),
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let task = &response["data"]["launchTask"];
    let id = task["id"]
        .as_str()
        .context("no task id in the answer")?
        .to_owned();
    match args.output {
        Output::Json if !args.wait => println!("{task}"),
        Output::Json => {}
        Output::Text => println!("{id}"),
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let mut seen = 0;
    loop {
        let task = fetch(&args.masters, &id).await?;
        let statuses = task["statuses"].as_array().cloned().unwrap_or_default();
        if matches!(args.output, Output::Text) {
            for s in statuses.iter().skip(seen) {
                eprintln!(
                    "{} {}",
                    s["state"].as_str().unwrap_or(""),
                    s["message"].as_str().unwrap_or("")
                );
            }
        }
        seen = statuses.len();
        if task["terminal"].as_bool() == Some(true) {
            if matches!(args.output, Output::Json) {
                println!("{task}");
            }
            return Ok(if task["state"] == "TASK_FINISHED" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

const TASK_FIELDS: &str = "id name state terminal agentId launchedAt updatedAt resources { cpus mem disk ports { begin end } } spec agent { hostname address } statuses { at state source reason message }";

/// The task `id`, or an error if it is unknown.
async fn fetch(masters: &Masters, id: &str) -> anyhow::Result<Value> {
    let response = graphql(
        masters,
        &format!("query($id: String!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}"),
        json!({ "id": id }),
    )
    .await?;
    if let Some(error) = response["errors"].get(0) {
        bail!("{}", error["message"].as_str().unwrap_or("failed"));
    }
    let task = response["data"]["task"].clone();
    if task.is_null() {
        bail!("task {id} is unknown");
    }
    Ok(task)
}

async fn kill(masters: &Masters, id: &str, grace: Option<u64>) -> anyhow::Result<ExitCode> {
    let response = graphql(
        masters,
        "mutation($id: String!, $grace: Int) { killTask(id: $id, gracePeriodSeconds: $grace) { offset } }",
        json!({ "id": id, "grace": grace }),
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    println!(
        "kill requested (offset {})",
        response["data"]["killTask"]["offset"]
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(masters: &Masters, all: bool, output: Output) -> anyhow::Result<ExitCode> {
    let tasks = match nodes(
        masters,
        "{ tasks(first: 500) { edges { node { id name state terminal agentId launchedAt } } } }",
        "tasks",
    )
    .await?
    {
        Ok(tasks) => tasks,
        Err(code) => return Ok(code),
    };
    let shown = tasks.into_iter().filter(|t| all || t["terminal"] != true);
    let mut out = std::io::stdout().lock();
    for t in shown {
        match output {
            Output::Json => writeln!(out, "{t}")?,
            Output::Text => writeln!(
                out,
                "{:<40} {:<16} {:<22} {}",
                t["id"].as_str().unwrap_or(""),
                t["state"].as_str().unwrap_or(""),
                t["agentId"].as_str().unwrap_or(""),
                t["launchedAt"].as_str().unwrap_or("")
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(masters: &Masters, id: &str, output: Output) -> anyhow::Result<ExitCode> {
    let task = fetch(masters, id).await?;
    match output {
        Output::Json => println!("{task}"),
        Output::Text => {
            println!(
                "{}  {}  on {}",
                task["id"].as_str().unwrap_or(""),
                task["state"].as_str().unwrap_or(""),
                task["agentId"].as_str().unwrap_or("")
            );
            for s in task["statuses"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {:<16} {:<7} {} {}",
                    s["at"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    s["source"].as_str().unwrap_or(""),
                    s["reason"].as_str().unwrap_or(""),
                    s["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn logs(
    masters: &Masters,
    id: &str,
    follow: bool,
    tail: Option<usize>,
    stderr: bool,
) -> anyhow::Result<ExitCode> {
    let task = fetch(masters, id).await?;
    let agent = task["agent"]["address"]
        .as_str()
        .context("the task's agent is unknown")?
        .to_owned();
    let path = format!("{id}/{}", if stderr { "stderr" } else { "stdout" });
    let http = http()?;
    let read = |offset: i64, length: u64| {
        let http = http.clone();
        let url = format!("http://{agent}/files/read");
        let path = path.clone();
        async move {
            let response = http
                .get(url)
                .query(&[
                    ("path", path),
                    ("offset", offset.to_string()),
                    ("length", length.to_string()),
                ])
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if !status.is_success() {
                bail!(
                    "{}",
                    body["error"].as_str().unwrap_or("cannot read the sandbox")
                );
            }
            Ok::<Value, anyhow::Error>(body)
        }
    };
    let size = read(-1, 0).await?["offset"].as_u64().unwrap_or(0);
    let mut offset = match tail {
        // The last lines are found in the file's last chunk.
        Some(n) => {
            let start = size.saturating_sub(CHUNK);
            let chunk = read(start as i64, CHUNK).await?;
            let text = chunk["data"].as_str().unwrap_or("");
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let mut out = std::io::stdout().lock();
            for line in &lines[lines.len().saturating_sub(n)..] {
                out.write_all(line.as_bytes())?;
            }
            size
        }
        None => 0,
    };
    loop {
        let chunk = read(offset as i64, CHUNK).await?;
        let data = chunk["data"].as_str().unwrap_or("");
        if !data.is_empty() {
            std::io::stdout().lock().write_all(data.as_bytes())?;
            offset = chunk["offset"].as_u64().unwrap_or(offset) + data.len() as u64;
            continue;
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if fetch(masters, id).await?["terminal"].as_bool() == Some(true) {
            // One last read: the task may have written just before it ended.
            let last = read(offset as i64, CHUNK).await?;
            std::io::stdout()
                .lock()
                .write_all(last["data"].as_str().unwrap_or("").as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(POLL).await;
    }
}
