//! `cairn job …`: scheduled and dependent jobs from the command line, through the GraphQL
//! API. Takes Chronos job definitions as they are. Exit codes: 0 ok, 1 error (or a run that did
//! not succeed, with `run --wait`), 2 rejected (invalid, conflicting, unknown).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app_cmd::read_definition;
use crate::cluster_cmd::Masters;
use crate::query_cmd::{failed, graphql, nodes, object, runtime, Output};

/// How often `run --wait` looks at the run again.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Create or update a job from a Chronos job definition (a JSON file, or `-` for stdin).
    Apply {
        #[arg(short, long)]
        file: PathBuf,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// List jobs: schedule, next due time, last outcome.
    List {
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Show a job: definition, next due times, active runs, missed runs, durations.
    Status {
        name: String,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Run a job now, whatever its schedule.
    Run {
        name: String,
        /// Wait for the run to end; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// A job's runs, newest first: cause, attempts, outcome, duration.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        last: u32,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Print the stdout (or stderr) of a job's latest run, or of --run ID.
    Logs {
        name: String,
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        stderr: bool,
        #[command(flatten)]
        masters: Masters,
    },
    /// The dependency graph: parent -> child edges, or Graphviz dot with `--dot`.
    Graph {
        #[arg(long)]
        dot: bool,
        #[command(flatten)]
        masters: Masters,
    },
    /// Delete a job and kill its active runs.
    Delete {
        name: String,
        #[command(flatten)]
        masters: Masters,
    },
    /// Stop a job's scheduled and dependent runs.
    Disable {
        name: String,
        #[command(flatten)]
        masters: Masters,
    },
    /// Start a disabled job's schedule again, from now.
    Enable {
        name: String,
        #[command(flatten)]
        masters: Masters,
    },
}

pub fn main(command: JobCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            JobCommand::Apply {
                file,
                output,
                masters,
            } => {
                let definition = read_definition(&file)?;
                let name = definition["name"].as_str().unwrap_or("").to_owned();
                let response = graphql(
                    &masters,
                    "mutation($d: JSON!) { r: applyJob(definition: $d) }",
                    json!({ "d": definition }),
                )
                .await?;
                if let Some(code) = failed(&response) {
                    return Ok(code);
                }
                let changed = response["data"]["r"] == true;
                match output {
                    Output::Json => println!("{}", json!({ "name": name, "changed": changed })),
                    Output::Text if changed => println!("job {name} applied"),
                    Output::Text => println!("job {name}: no change"),
                }
                Ok(ExitCode::SUCCESS)
            }
            JobCommand::List { output, masters } => list(&masters, output).await,
            JobCommand::Status {
                name,
                output,
                masters,
            } => status(&masters, &name, output).await,
            JobCommand::Run {
                name,
                wait,
                timeout,
                output,
                masters,
            } => {
                run(
                    &masters,
                    &name,
                    wait.then(|| Duration::from_secs(timeout)),
                    output,
                )
                .await
            }
            JobCommand::Runs {
                name,
                last,
                output,
                masters,
            } => runs(&masters, &name, last, output).await,
            JobCommand::Logs {
                name,
                run,
                stderr,
                masters,
            } => logs(&masters, &name, run, stderr).await,
            JobCommand::Graph { dot, masters } => graph(&masters, dot).await,
            JobCommand::Delete { name, masters } => simple(&masters, "deleteJob", &name).await,
            JobCommand::Disable { name, masters } => simple(&masters, "disableJob", &name).await,
            JobCommand::Enable { name, masters } => simple(&masters, "enableJob", &name).await,
        }
    })
}

/// A mutation that takes the job's name and answers a boolean.
async fn simple(masters: &Masters, mutation: &str, name: &str) -> anyhow::Result<ExitCode> {
    let query = format!("mutation($n: String!) {{ r: {mutation}(name: $n) }}");
    let response = graphql(masters, &query, json!({ "n": name })).await?;
    Ok(failed(&response).unwrap_or(ExitCode::SUCCESS))
}

async fn list(masters: &Masters, output: Output) -> anyhow::Result<ExitCode> {
    let jobs = match nodes(
        masters,
        "{ jobs(first: 500) { edges { node { name schedule parents disabled nextDue(count: 1) \
         successCount errorCount lastRun { outcome finishedAt } } } } }",
        "jobs",
    )
    .await?
    {
        Ok(jobs) => jobs,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    for job in &jobs {
        if let Output::Json = output {
            writeln!(out, "{job}")?;
            continue;
        }
        let when = match job["schedule"].as_str() {
            Some(s) => s.to_owned(),
            None => format!(
                "after {}",
                job["parents"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        writeln!(
            out,
            "{:<28} {:<40} next {:<28} {} ok {} failed  last {}{}",
            job["name"].as_str().unwrap_or(""),
            when,
            job["nextDue"][0].as_str().unwrap_or("-"),
            job["successCount"],
            job["errorCount"],
            job["lastRun"]["outcome"].as_str().unwrap_or("-"),
            if job["disabled"] == true {
                "  (disabled)"
            } else {
                ""
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(masters: &Masters, name: &str, output: Output) -> anyhow::Result<ExitCode> {
    let job = match object(
        masters,
        "query($n: String!) { job(name: $n) { name schedule scheduleTimeZone parents children \
         command owner disabled epsilonSeconds retries concurrency nextDue(count: 3) \
         successCount errorCount lastSuccess lastError \
         activeRuns { id scheduledFor attempts { attempt taskId startedAt } } \
         missed { scheduledFor reason } durations { count p50 p90 p99 max } } }",
        json!({ "n": name }),
        "job",
        &format!("job {name}"),
    )
    .await?
    {
        Ok(value) => value,
        Err(code) => return Ok(code),
    };
    let job = &job;
    if let Output::Json = output {
        println!("{job}");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    println!(
        "{}  {}{}",
        text(&job["name"]),
        job["schedule"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("after {}", job["parents"])),
        if job["disabled"] == true {
            "  (disabled)"
        } else {
            ""
        }
    );
    println!("  command: {}", text(&job["command"]));
    println!(
        "  epsilon {} s, {} retries, concurrency {}",
        job["epsilonSeconds"],
        job["retries"],
        text(&job["concurrency"])
    );
    for due in job["nextDue"].as_array().into_iter().flatten() {
        println!("  due: {}", text(due));
    }
    println!(
        "  {} succeeded (last {}), {} failed (last {})",
        job["successCount"],
        text(&job["lastSuccess"]),
        job["errorCount"],
        text(&job["lastError"])
    );
    let d = &job["durations"];
    if d["count"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  durations over {} runs: p50 {} s, p90 {} s, p99 {} s, max {} s",
            d["count"], d["p50"], d["p90"], d["p99"], d["max"]
        );
    }
    for run in job["activeRuns"].as_array().into_iter().flatten() {
        println!(
            "  active: {} due {} ({} attempts)",
            text(&run["id"]),
            text(&run["scheduledFor"]),
            run["attempts"].as_array().map_or(0, Vec::len)
        );
    }
    for m in job["missed"].as_array().into_iter().flatten() {
        println!(
            "  missed: {}: {}",
            text(&m["scheduledFor"]),
            text(&m["reason"])
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(
    masters: &Masters,
    name: &str,
    wait: Option<Duration>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let response = graphql(
        masters,
        "mutation($n: String!) { r: runJob(name: $n) }",
        json!({ "n": name }),
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let run_id = response["data"]["r"].as_str().unwrap_or("").to_owned();
    if let Output::Text = output {
        println!("run {run_id}");
    }
    let Some(timeout) = wait else {
        if let Output::Json = output {
            println!("{}", json!({ "runId": run_id }));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = Instant::now() + timeout;
    loop {
        let response = graphql(
            masters,
            "query($n: String!) { job(name: $n) { history(last: 50) { id outcome message } } }",
            json!({ "n": name }),
        )
        .await?;
        if let Some(code) = failed(&response) {
            return Ok(code);
        }
        let found = response["data"]["job"]["history"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["id"] == run_id.as_str()).cloned());
        if let Some(outcome) = found.as_ref().and_then(|r| r["outcome"].as_str()) {
            let found = found.as_ref().expect("found");
            match output {
                Output::Json => println!("{found}"),
                Output::Text => println!(
                    "run {run_id} {outcome}{}",
                    found["message"]
                        .as_str()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            }
            return Ok(if outcome == "succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if Instant::now() >= deadline {
            eprintln!("run {run_id} still active after {} s", timeout.as_secs());
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn runs(
    masters: &Masters,
    name: &str,
    last: u32,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let job = match object(
        masters,
        "query($n: String!, $l: Int!) { job(name: $n) { history(last: $l) { id scheduledFor \
         cause triggeredAt outcome finishedAt message attempts { attempt taskId startedAt \
         retryReason } } } }",
        json!({ "n": name, "l": last }),
        "job",
        &format!("job {name}"),
    )
    .await?
    {
        Ok(value) => value,
        Err(code) => return Ok(code),
    };
    let job = &job;
    let mut out = std::io::stdout().lock();
    for run in job["history"].as_array().into_iter().flatten() {
        match output {
            Output::Json => writeln!(out, "{run}")?,
            Output::Text => {
                let cause = match &run["cause"] {
                    Value::String(c) => c.clone(),
                    Value::Object(o) => o.keys().next().cloned().unwrap_or_default(),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "{:<36} due {:<28} {:<8} {:<10} attempts {}  {}",
                    run["id"].as_str().unwrap_or(""),
                    run["scheduledFor"].as_str().unwrap_or(""),
                    cause,
                    run["outcome"].as_str().unwrap_or("active"),
                    run["attempts"].as_array().map_or(0, Vec::len),
                    run["message"].as_str().unwrap_or("")
                )?
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(
    masters: &Masters,
    name: &str,
    run: Option<String>,
    stderr: bool,
) -> anyhow::Result<ExitCode> {
    let job = match object(
        masters,
        "query($n: String!) { job(name: $n) { history(last: 500) { id task { id } } } }",
        json!({ "n": name }),
        "job",
        &format!("job {name}"),
    )
    .await?
    {
        Ok(job) => job,
        Err(code) => return Ok(code),
    };
    let history = job["history"].as_array().cloned().unwrap_or_default();
    let chosen = history.iter().find(|r| {
        run.as_deref().is_none_or(|id| r["id"] == id) && r["task"]["id"].as_str().is_some()
    });
    let Some(task) = chosen.and_then(|r| r["task"]["id"].as_str()) else {
        eprintln!("error: no run of {name} has started a task yet");
        return Ok(ExitCode::from(2));
    };
    crate::task_cmd::logs(masters, task, false, None, stderr).await
}

async fn graph(masters: &Masters, dot: bool) -> anyhow::Result<ExitCode> {
    let response = graphql(
        masters,
        "{ jobGraph { dot edges { parent child } } }",
        Value::Null,
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let graph = &response["data"]["jobGraph"];
    if dot {
        print!("{}", graph["dot"].as_str().unwrap_or(""));
    } else {
        for edge in graph["edges"].as_array().into_iter().flatten() {
            println!(
                "{} -> {}",
                edge["parent"].as_str().unwrap_or(""),
                edge["child"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
