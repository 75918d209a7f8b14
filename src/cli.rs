//! Command line: `run` (also the default), `validate`, `schema`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// pingora-gateway: an API gateway on Cloudflare's Pingora.
#[derive(Debug, Parser)]
#[command(
    name = "gateway",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `gateway --config FILE` is `gateway run --config FILE`.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run(RunArgs),
    /// Check config files exactly as a start or a reload would; exit 0 when
    /// all are valid, 1 otherwise. One line per problem:
    /// FILE:LINE:COLUMN: field.path: message.
    Validate(ValidateArgs),
    /// Print the JSON schema of the config file.
    Schema,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Config file.
    #[arg(short, long, default_value = "config/default.yaml")]
    pub config: PathBuf,
    /// Run in the background and write the pid file (`server.pid_file`).
    #[arg(short, long)]
    pub daemon: bool,
    /// Take the listening sockets over from a running gateway (graceful upgrade).
    #[arg(short, long)]
    pub upgrade: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ValidateArgs {
    /// Files to check; `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not look up server names (a start does): for CI pipelines that
    /// cannot reach the production DNS.
    #[arg(long)]
    pub no_resolve: bool,
    /// Unset `${VAR}` become placeholders instead of errors (pipelines
    /// without the secrets); nothing is checked or warned from them.
    #[arg(long)]
    pub allow_missing_env: bool,
    /// `text` (one line per problem) or `json` (an array of {file, line,
    /// column, path, severity, message}, for editors and CI annotations).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// `gateway validate --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
