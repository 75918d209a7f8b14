//! Command line: `run` (also the default), `validate`, `schema`, `completions`.

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
    /// Print a shell completion script, e.g.
    /// `gateway completions bash > /etc/bash_completion.d/gateway`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Where a bare `gateway` (no `--config`) looks for its config, in order.
pub const DEFAULT_CONFIGS: [&str; 2] = ["config/default.yaml", "/etc/pingora-gateway/gateway.yaml"];

impl RunArgs {
    /// The config file: `--config`, else the first of [`DEFAULT_CONFIGS`]
    /// that exists. The error says where it looked and how to pass one.
    pub fn config_file(&self) -> Result<PathBuf, String> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        DEFAULT_CONFIGS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                let cwd = std::env::current_dir()
                    .map(|d| format!(" (relative to {})", d.display()))
                    .unwrap_or_default();
                format!(
                    "no config file: looked for {}{cwd}; pass one with `gateway run --config FILE` (`gateway --help` for more)",
                    DEFAULT_CONFIGS.join(" and ")
                )
            })
    }
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Config file. Default: `config/default.yaml`, else
    /// `/etc/pingora-gateway/gateway.yaml`, whichever exists.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
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
