//! `cairn app …`: Marathon app definitions from the command line, through the GraphQL API.
//! Today: `validate`; `apply`, `scale`, `restart` and the rest come with the apps scheduler.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};

use crate::cluster_cmd::Masters;
use crate::query_cmd::{graphql, runtime, Output};

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
}

pub fn main(command: AppCommand) -> anyhow::Result<ExitCode> {
    let AppCommand::Validate {
        file,
        output,
        masters,
    } = command;
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(&file)
            .with_context(|| format!("file: cannot read {}", file.display()))?
    };
    let definition: Value = serde_json::from_str(&text)
        .with_context(|| format!("file: {} is not JSON", file.display()))?;
    runtime()?.block_on(async {
        let response = graphql(
            &masters,
            "query($d: JSON!) { validateApp(definition: $d) { valid details { path errors } spec } }",
            json!({ "d": definition }),
        )
        .await?;
        if let Some(e) = response["errors"].get(0) {
            anyhow::bail!("{}", e["message"]);
        }
        let answer = &response["data"]["validateApp"];
        match output {
            Output::Json => println!("{answer}"),
            Output::Text => {
                for detail in answer["details"].as_array().into_iter().flatten() {
                    for error in detail["errors"].as_array().into_iter().flatten() {
                        eprintln!("{}: {}", detail["path"].as_str().unwrap_or(""), error.as_str().unwrap_or(""));
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
    })
}
