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
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not look up server names (a start does): for CI pipelines that
        /// cannot reach the production DNS.
        #[arg(long)]
        no_resolve: bool,
    },
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
