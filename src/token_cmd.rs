//! `cairn token new`: makes an API token. The secret is printed once; the masters keep only
//! its hash, in the `[[tokens]]` entry printed with it.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token: prints the secret on the first line, then the `[[tokens]]` entry to add
    /// to every master's configuration.
    New {
        /// Who holds it: the name the audit trail records for its writes.
        #[arg(long)]
        name: String,
        /// What it may do: `read` (queries), `operate` (also changes), `admin` (also the raw
        /// log and membership).
        #[arg(long, value_parser = ["read", "operate", "admin"])]
        role: String,
    },
}

pub fn main(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::New { name, role } = command;
    let (secret, hash) = cairn_graphql::auth::new_secret();
    let entry = format!(
        "[[tokens]]\nname = {}\nrole = {}\nsecret-blake3 = {}\n",
        toml_string(&name),
        toml_string(&role),
        toml_string(&hash)
    );
    // The entry must be one the masters accept, or the secret is useless.
    let parsed: Entries = toml::from_str(&entry)?;
    cairn_graphql::auth::Tokens::new(&parsed.tokens).map_err(anyhow::Error::msg)?;
    println!(
        "{secret}\n\n# The token above is shown once; the masters keep only its hash:\n{entry}"
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Deserialize)]
struct Entries {
    tokens: Vec<cairn_graphql::auth::TokenSpec>,
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
