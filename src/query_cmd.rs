//! `cairn query`, `cairn events` and `cairn state`: the read side of a running cluster, from
//! the command line, through the same GraphQL and HTTP APIs as every other client.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::cluster_cmd::Masters;

/// Events per page when reading history.
const PAGE: u64 = 500;

/// The fields of an event every output shows.
const EVENT_FIELDS: &str =
    "offset term at type actor { principal api remoteAddr requestId } payload";

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A GraphQL query, e.g. '{ apps { edges { node { id instances } } } }'.
    query: String,
    /// A variable, as name=JSON (e.g. --var first=10 --var 'id="/web"'); repeatable.
    #[arg(long = "var", value_name = "NAME=JSON")]
    vars: Vec<String>,
    #[command(flatten)]
    masters: Masters,
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// The first offset to show [default: 1; with --follow, the next one appended].
    #[arg(long)]
    from: Option<u64>,
    /// Only events of these types (e.g. AppCreated); repeatable.
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// Keep following the log as records commit.
    #[arg(short, long)]
    follow: bool,
    /// `text` (one line per event) or `json` (one JSON object per line).
    #[arg(short = 'o', long, default_value = "text")]
    output: Output,
    #[command(flatten)]
    masters: Masters,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// An offset, or an RFC 3339 time (the last record at or before it); default: now.
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    masters: Masters,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The client for agents' endpoints (which ask for no token).
pub(crate) fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Longest wait for a master's answer.
const MASTER_TIMEOUT: Duration = Duration::from_secs(60);

/// `cairn query`: prints the response; fails if it holds errors.
pub fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let mut variables = serde_json::Map::new();
    for var in &args.vars {
        let Some((name, value)) = var.split_once('=') else {
            bail!("--var: {var:?} is not NAME=JSON");
        };
        let value: Value = serde_json::from_str(value)
            .with_context(|| format!("--var {name}: {value:?} is not JSON"))?;
        variables.insert(name.to_owned(), value);
    }
    runtime()?.block_on(async {
        let response = graphql(&args.masters, &args.query, Value::Object(variables)).await?;
        println!("{}", serde_json::to_string_pretty(&response)?);
        Ok(if response.get("errors").is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `cairn state`: the whole projected state as JSON.
pub fn state(args: StateArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let http = args.masters.client(MASTER_TIMEOUT)?;
        let mut last = None;
        for addr in &args.masters.masters {
            let mut request = http.get(format!("http://{addr}/v1/state"));
            if let Some(as_of) = &args.as_of {
                request = request.query(&[("as_of", as_of)]);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.bytes().await?;
                    if !status.is_success() {
                        let error: Value = serde_json::from_slice(&body).unwrap_or_default();
                        bail!("{addr}: {}", error["error"].as_str().unwrap_or("failed"));
                    }
                    let mut out = std::io::stdout().lock();
                    out.write_all(&body)?;
                    out.write_all(b"\n")?;
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => last = Some(e),
            }
        }
        bail!("masters: none answered ({last:?})")
    })
}

/// `cairn events`.
pub fn events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let filter = if args.types.is_empty() {
            json!({})
        } else {
            json!({ "types": args.types })
        };
        if args.follow {
            follow(&args, filter).await
        } else {
            history(&args, filter).await
        }
    })
}

async fn history(args: &EventsArgs, filter: Value) -> anyhow::Result<ExitCode> {
    let query = format!(
        "query($after: String, $first: Int, $filter: EventFilter) {{
           events(after: $after, first: $first, filter: $filter) {{
             edges {{ node {{ {EVENT_FIELDS} }} }}
             pageInfo {{ hasNextPage }}
             scannedTo
           }}
         }}"
    );
    let mut after = args.from.unwrap_or(1).saturating_sub(1);
    loop {
        let variables = json!({ "after": after.to_string(), "first": PAGE, "filter": filter });
        let response = graphql(&args.masters, &query, variables).await?;
        if let Some(errors) = response.get("errors") {
            bail!("{}", errors);
        }
        let page = &response["data"]["events"];
        for edge in page["edges"].as_array().into_iter().flatten() {
            print_event(&edge["node"], args.output)?;
        }
        if page["pageInfo"]["hasNextPage"] != true {
            return Ok(ExitCode::SUCCESS);
        }
        after = page["scannedTo"].as_u64().context("scannedTo")?;
    }
}

/// Follows the log over a websocket (graphql-transport-ws), until interrupted.
async fn follow(args: &EventsArgs, filter: Value) -> anyhow::Result<ExitCode> {
    let addr = args
        .masters
        .masters
        .first()
        .context("masters: none given")?;
    let mut request = format!("ws://{addr}/graphql").into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("cannot open a websocket to {addr}"))?;
    let send = |v: Value| Message::text(v.to_string());
    socket
        .send(send(json!({
            "type": "connection_init",
            "payload": { "authorization": args.masters.authorization() },
        })))
        .await?;
    let query = format!(
        "subscription($from: Int, $filter: EventFilter) {{ events(from: $from, filter: $filter) {{ {EVENT_FIELDS} }} }}"
    );
    while let Some(message) = socket.next().await {
        let text = match message? {
            Message::Text(text) => text,
            Message::Close(Some(frame)) => {
                bail!("the master closed the subscription: {}", frame.reason)
            }
            _ => continue,
        };
        let message: Value = serde_json::from_str(&text)?;
        match message["type"].as_str() {
            Some("connection_ack") => {
                let payload = json!({
                    "query": query,
                    "variables": { "from": args.from, "filter": filter },
                });
                socket
                    .send(send(
                        json!({ "id": "1", "type": "subscribe", "payload": payload }),
                    ))
                    .await?;
            }
            Some("ping") => socket.send(send(json!({ "type": "pong" }))).await?,
            Some("next") => {
                let payload = &message["payload"];
                if let Some(errors) = payload.get("errors") {
                    bail!("{errors}");
                }
                print_event(&payload["data"]["events"], args.output)?;
            }
            Some("error") => bail!("{}", message["payload"]),
            Some("complete") => return Ok(ExitCode::SUCCESS),
            _ => {}
        }
    }
    bail!("the master closed the subscription")
}

fn print_event(event: &Value, output: Output) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{event}")?,
        Output::Text => writeln!(
            out,
            "{:>8}  {}  {:<22} {:<20} {}",
            event["offset"],
            event["at"].as_str().unwrap_or(""),
            event["type"].as_str().unwrap_or(""),
            event["actor"]["principal"].as_str().unwrap_or(""),
            event["payload"]
        )?,
    }
    // A follower's output is read as it comes.
    out.flush()?;
    Ok(())
}

/// Posts a GraphQL request to the first master that answers.
/// Sends a GraphQL request to the first master that answers; a write that reaches a follower
/// is sent again to the leader it names.
/// Prints a response's first error (with each field's errors, for an invalid definition) and
/// picks the exit code: 2 for a rejected request, 1 for any other failure.
/// `data.<field>` of the answer to `query`, or the exit code: the query failed (its errors
/// printed), or `what` does not exist (exit 2).
pub(crate) async fn object(
    masters: &Masters,
    query: &str,
    variables: Value,
    field: &str,
    what: &str,
) -> anyhow::Result<Result<Value, ExitCode>> {
    let response = graphql(masters, query, variables).await?;
    if let Some(code) = failed(&response) {
        return Ok(Err(code));
    }
    let value = response["data"][field].clone();
    if value.is_null() {
        eprintln!("error: {what} does not exist");
        return Ok(Err(ExitCode::from(2)));
    }
    Ok(Ok(value))
}

/// The nodes of the connection `data.<field>` in the answer to `query`, or the exit code of a
/// failed query (its errors printed).
pub(crate) async fn nodes(
    masters: &Masters,
    query: &str,
    field: &str,
) -> anyhow::Result<Result<Vec<Value>, ExitCode>> {
    let response = graphql(masters, query, Value::Null).await?;
    if let Some(code) = failed(&response) {
        return Ok(Err(code));
    }
    Ok(Ok(response["data"][field]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
        .unwrap_or_default()))
}

pub(crate) fn failed(response: &Value) -> Option<ExitCode> {
    let error = response["errors"].get(0)?;
    let code = error["extensions"]["code"].as_str().unwrap_or("");
    eprintln!("error: {}", error["message"].as_str().unwrap_or("failed"));
    for detail in error["extensions"]["details"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for e in detail["errors"].as_array().into_iter().flatten() {
            eprintln!(
                "  {}: {}",
                detail["path"].as_str().unwrap_or(""),
                e.as_str().unwrap_or("")
            );
        }
    }
    Some(match code {
        "VALIDATION" | "CONFLICT" | "NOT_FOUND" | "FORBIDDEN" => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    })
}

pub(crate) async fn graphql(
    masters: &Masters,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let http = masters.client(MASTER_TIMEOUT)?;
    let body = json!({ "query": query, "variables": variables });
    // Without tokens, the audit trail records who the caller says they are.
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut last = None;
    let mut addrs: Vec<String> = masters.masters.clone();
    let mut i = 0;
    while i < addrs.len() && i < masters.masters.len() + 3 {
        let addr = addrs[i].clone();
        i += 1;
        let response = match http
            .post(format!("http://{addr}/graphql"))
            .header("x-cairn-user", &user)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let response: Value = response.json().await?;
        let leader = &response["errors"][0]["extensions"]["leader"];
        match (
            response["errors"][0]["extensions"]["code"].as_str(),
            leader.as_str(),
        ) {
            (Some("NOT_LEADER"), Some(leader)) => addrs.insert(i, leader.to_owned()),
            _ => return Ok(response),
        }
    }
    bail!("masters: none of {:?} answered ({last:?})", masters.masters)
}
