//! `cairn app …`: long-running apps from the command line, through the GraphQL API. Takes
//! Marathon app definitions as they are. Exit codes: 0 ok, 1 error (or a deployment that did
//! not finish), 2 rejected (invalid, conflicting, unknown).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::cluster_cmd::Masters;
use crate::query_cmd::{failed, graphql, nodes, object, runtime, Output};

/// How often `--wait` looks at the deployment again.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Subcommand)]
pub enum AppCommand {
    /// Check a Marathon app definition: every error with its JSON path (exit 2), or the app
    /// as cairn would store it, Marathon's defaults filled in.
    Validate {
        /// The definition (a JSON file, or `-` for stdin).
        #[arg(short, long)]
        file: PathBuf,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Create or update apps from a Marathon definition: one app, a list, or a group with
    /// `apps` (deployed in the order of their `dependencies`).
    Apply {
        /// The definition (a JSON file, or `-` for stdin).
        #[arg(short, long)]
        file: PathBuf,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// List apps with their instances.
    List {
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Show an app: instances, tasks, deployments, and why it is not all running.
    Status {
        id: String,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Set how many instances an app runs.
    Scale {
        id: String,
        instances: u32,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Replace every instance, honouring the app's upgradeStrategy.
    Restart {
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Go back to the definition of an earlier version (see `history`).
    Rollback {
        id: String,
        version: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Delete an app and kill its instances.
    Delete {
        id: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Every version of an app, oldest first.
    History {
        id: String,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// What changed in an app between two versions (default: the last two).
    Diff {
        id: String,
        from: Option<String>,
        to: Option<String>,
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Running deployments.
    Deployments {
        #[arg(short = 'o', long, default_value = "text")]
        output: Output,
        #[command(flatten)]
        masters: Masters,
    },
    /// Stop a running deployment, rolling its apps back unless --no-rollback.
    Cancel {
        deployment: String,
        #[arg(long)]
        no_rollback: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// Cancel running deployments of the same apps instead of refusing.
    #[arg(long)]
    force: bool,
    /// Wait until the deployment has finished; exit 1 if it fails or is canceled.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(short = 'o', long, default_value = "text")]
    output: Output,
    #[command(flatten)]
    masters: Masters,
}

pub fn main(command: AppCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        match command {
            AppCommand::Validate {
                file,
                output,
                masters,
            } => validate(&read_definition(&file)?, output, &masters).await,
            AppCommand::Apply { file, change } => {
                let definition = read_definition(&file)?;
                let query = "mutation($d: JSON!, $f: Boolean!) { r: applyApps(definition: $d, force: $f) { deploymentId version } }";
                mutate(&change, query, json!({ "d": definition })).await
            }
            AppCommand::List { output, masters } => list(&masters, output).await,
            AppCommand::Status {
                id,
                output,
                masters,
            } => status(&masters, &app_id(&id), output).await,
            AppCommand::Scale {
                id,
                instances,
                change,
            } => {
                let query = "mutation($id: String!, $n: Int!, $f: Boolean!) { r: scaleApp(id: $id, instances: $n, force: $f) { deploymentId version } }";
                mutate(&change, query, json!({ "id": app_id(&id), "n": instances })).await
            }
            AppCommand::Restart { id, change } => {
                let query = "mutation($id: String!, $f: Boolean!) { r: restartApp(id: $id, force: $f) { deploymentId version } }";
                mutate(&change, query, json!({ "id": app_id(&id) })).await
            }
            AppCommand::Rollback {
                id,
                version,
                change,
            } => {
                let query = "mutation($id: String!, $v: String!, $f: Boolean!) { r: rollbackApp(id: $id, version: $v, force: $f) { deploymentId version } }";
                mutate(&change, query, json!({ "id": app_id(&id), "v": version })).await
            }
            AppCommand::Delete { id, change } => {
                let query = "mutation($id: String!, $f: Boolean!) { r: deleteApp(id: $id, force: $f) { deploymentId version } }";
                mutate(&change, query, json!({ "id": app_id(&id) })).await
            }
            AppCommand::History {
                id,
                output,
                masters,
            } => history(&masters, &app_id(&id), output).await,
            AppCommand::Diff {
                id,
                from,
                to,
                output,
                masters,
            } => diff(&masters, &app_id(&id), from, to, output).await,
            AppCommand::Deployments { output, masters } => deployments(&masters, output).await,
            AppCommand::Cancel {
                deployment,
                no_rollback,
                change,
            } => {
                let query = "mutation($id: String!, $r: Boolean!) { r: cancelDeployment(id: $id, rollback: $r) { deploymentId version } }";
                mutate(
                    &change,
                    query,
                    json!({ "id": deployment, "r": !no_rollback }),
                )
                .await
            }
        }
    })
}

/// App ids as Marathon accepts them: `web` means `/web`.
fn app_id(id: &str) -> String {
    format!("/{}", id.trim_matches('/'))
}

pub(crate) fn read_definition(file: &Path) -> anyhow::Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("file: cannot read {}", file.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("file: {} is not JSON", file.display()))
}

async fn validate(
    definition: &Value,
    output: Output,
    masters: &Masters,
) -> anyhow::Result<ExitCode> {
    let response = graphql(
        masters,
        "query($d: JSON!) { validateApp(definition: $d) { valid details { path errors } spec } }",
        json!({ "d": definition }),
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let answer = &response["data"]["validateApp"];
    match output {
        Output::Json => println!("{answer}"),
        Output::Text => {
            for detail in answer["details"].as_array().into_iter().flatten() {
                for error in detail["errors"].as_array().into_iter().flatten() {
                    eprintln!(
                        "{}: {}",
                        detail["path"].as_str().unwrap_or(""),
                        error.as_str().unwrap_or("")
                    );
                }
            }
            if answer["valid"] == true {
                println!("{}", serde_json::to_string_pretty(&answer["spec"])?);
            }
        }
    }
    Ok(if answer["valid"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Runs a change (its result aliased `r`), prints the deployment it started, and with
/// `--wait` follows that deployment to its end.
async fn mutate(
    change: &ChangeArgs,
    query: &str,
    mut variables: Value,
) -> anyhow::Result<ExitCode> {
    if query.contains("$f:") {
        variables["f"] = json!(change.force);
    }
    let response = graphql(&change.masters, query, variables).await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let result = &response["data"]["r"];
    match change.output {
        Output::Json => println!("{result}"),
        Output::Text => match result["deploymentId"].as_str() {
            Some(id) => println!(
                "deployment {id} (version {})",
                result["version"].as_str().unwrap_or("")
            ),
            None => println!("no change"),
        },
    }
    let Some(id) = result["deploymentId"].as_str().filter(|_| change.wait) else {
        return Ok(ExitCode::SUCCESS);
    };
    let deadline = Instant::now() + Duration::from_secs(change.timeout);
    loop {
        let response = graphql(
            &change.masters,
            "{ deployments { id status reason completedSteps totalSteps } }",
            Value::Null,
        )
        .await?;
        if let Some(code) = failed(&response) {
            return Ok(code);
        }
        let found = response["data"]["deployments"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["id"] == id).cloned());
        // A master that has not yet folded the deployment (a follower a moment behind the
        // leader that took it) does not list it: look again until the deadline.
        match found.as_ref().and_then(|d| d["status"].as_str()) {
            None => {}
            Some("RUNNING") => {}
            Some("FINISHED") => {
                if let Output::Text = change.output {
                    println!("deployment {id} finished");
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some(other) => {
                eprintln!(
                    "deployment {id} ended {other}: {}",
                    found
                        .as_ref()
                        .map_or("", |d| d["reason"].as_str().unwrap_or(""))
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        if Instant::now() >= deadline {
            let step = found.map_or_else(
                || "not yet seen".to_owned(),
                |d| format!("step {} of {}", d["completedSteps"], d["totalSteps"]),
            );
            eprintln!(
                "deployment {id} still running after {} s ({step})",
                change.timeout
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn list(masters: &Masters, output: Output) -> anyhow::Result<ExitCode> {
    let apps = match nodes(
        masters,
        "{ apps(first: 500) { edges { node { id instances tasksRunning tasksHealthy queued version deployments { id } } } } }",
        "apps",
    )
    .await?
    {
        Ok(apps) => apps,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    for app in &apps {
        match output {
            Output::Json => writeln!(out, "{app}")?,
            Output::Text => writeln!(
                out,
                "{:<32} {:>3}/{:<3} running  {:>3} healthy  {:>3} queued  {}{}",
                app["id"].as_str().unwrap_or(""),
                app["tasksRunning"],
                app["instances"],
                app["tasksHealthy"],
                app["queued"],
                app["version"].as_str().unwrap_or(""),
                if app["deployments"].as_array().is_some_and(|d| !d.is_empty()) {
                    "  (deploying)"
                } else {
                    ""
                }
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(masters: &Masters, id: &str, output: Output) -> anyhow::Result<ExitCode> {
    let app = match object(
        masters,
        "query($id: String!) { app(id: $id) { id instances version tasksRunning tasksHealthy \
         tasks { id state healthy agentId ports version } \
         deployments { id completedSteps totalSteps } \
         waiting { instancesToLaunch backoffUntil heldByDeployment unplaceable } \
         lastTaskFailure { taskId state message at } } }",
        json!({ "id": id }),
        "app",
        &format!("app {id}"),
    )
    .await?
    {
        Ok(value) => value,
        Err(code) => return Ok(code),
    };
    let app = &app;
    if let Output::Json = output {
        println!("{app}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}  {}/{} running, {} healthy  version {}",
        app["id"].as_str().unwrap_or(""),
        app["tasksRunning"],
        app["instances"],
        app["tasksHealthy"],
        app["version"].as_str().unwrap_or("")
    );
    for d in app["deployments"].as_array().into_iter().flatten() {
        println!(
            "  deploying: {} (step {} of {})",
            d["id"].as_str().unwrap_or(""),
            d["completedSteps"],
            d["totalSteps"]
        );
    }
    for t in app["tasks"].as_array().into_iter().flatten() {
        println!(
            "  {:<44} {:<14} {:<8} {} {} {}",
            t["id"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            match t["healthy"].as_bool() {
                Some(true) => "healthy",
                Some(false) => "unhealthy",
                None => "",
            },
            t["agentId"].as_str().unwrap_or(""),
            t["ports"],
            t["version"].as_str().unwrap_or("")
        );
    }
    let waiting = &app["waiting"];
    if !waiting.is_null() {
        println!(
            "  waiting to launch {} instance(s):",
            waiting["instancesToLaunch"]
        );
        if let Some(until) = waiting["backoffUntil"].as_str() {
            println!("    backing off after failures until {until}");
        }
        if let Some(d) = waiting["heldByDeployment"].as_str() {
            println!("    held by deployment {d} until the apps it depends on are deployed");
        }
        let reasons = waiting["unplaceable"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if reasons.is_empty()
            && waiting["backoffUntil"].is_null()
            && waiting["heldByDeployment"].is_null()
        {
            println!("    waiting for an offer that fits");
        }
        for r in reasons {
            println!("    {}", r.as_str().unwrap_or(""));
        }
    }
    let failure = &app["lastTaskFailure"];
    if !failure.is_null() {
        println!(
            "  last failure: {} {} at {}: {}",
            failure["taskId"].as_str().unwrap_or(""),
            failure["state"].as_str().unwrap_or(""),
            failure["at"].as_str().unwrap_or(""),
            failure["message"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn versions(masters: &Masters, id: &str) -> anyhow::Result<Result<Vec<Value>, ExitCode>> {
    let app = object(
        masters,
        "query($id: String!) { app(id: $id) { versions { version offset change } } }",
        json!({ "id": id }),
        "app",
        &format!("app {id}"),
    )
    .await?;
    Ok(app.map(|app| app["versions"].as_array().cloned().unwrap_or_default()))
}

async fn history(masters: &Masters, id: &str, output: Output) -> anyhow::Result<ExitCode> {
    let versions = match versions(masters, id).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    for v in versions {
        match output {
            Output::Json => writeln!(out, "{v}")?,
            Output::Text => writeln!(
                out,
                "{}  {:<8} offset {}",
                v["version"].as_str().unwrap_or(""),
                v["change"].as_str().unwrap_or(""),
                v["offset"]
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn diff(
    masters: &Masters,
    id: &str,
    from: Option<String>,
    to: Option<String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let versions = match versions(masters, id).await? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    // A version's offset is where it was logged: the state there holds that version.
    let offset = |wanted: Option<&str>, back: usize| -> anyhow::Result<u64> {
        let found = match wanted {
            Some(v) => versions.iter().find(|x| x["version"] == v),
            None => versions.iter().rev().nth(back),
        };
        found
            .and_then(|x| x["offset"].as_u64())
            .with_context(|| match wanted {
                Some(v) => format!("app {id} has no version {v} (see `cairn app history`)"),
                None => format!("app {id} has only one version"),
            })
    };
    let (from, to) = match (offset(from.as_deref(), 1), offset(to.as_deref(), 0)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let response = graphql(
        masters,
        "query($id: String!, $f: Int!, $t: Int!) { diff(app: $id, from: {offset: $f}, to: {offset: $t}) { changes { path before after } } }",
        json!({ "id": id, "f": from, "t": to }),
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let diff = &response["data"]["diff"];
    match output {
        Output::Json => println!("{diff}"),
        Output::Text => {
            for c in diff["changes"].as_array().into_iter().flatten() {
                // Only the definition: instances, tasks and times change all the time.
                let path = c["path"].as_str().unwrap_or("");
                if path.starts_with("/spec") {
                    println!("{path}: {} -> {}", c["before"], c["after"]);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn deployments(masters: &Masters, output: Output) -> anyhow::Result<ExitCode> {
    let response = graphql(
        masters,
        "{ deployments(status: RUNNING) { id version appIds completedSteps totalSteps startedAt } }",
        Value::Null,
    )
    .await?;
    if let Some(code) = failed(&response) {
        return Ok(code);
    }
    let mut out = std::io::stdout().lock();
    for d in response["data"]["deployments"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match output {
            Output::Json => writeln!(out, "{d}")?,
            Output::Text => writeln!(
                out,
                "{}  step {}/{}  {}  started {}",
                d["id"].as_str().unwrap_or(""),
                d["completedSteps"],
                d["totalSteps"],
                d["appIds"],
                d["startedAt"].as_str().unwrap_or("")
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
