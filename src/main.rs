//! `gateway`: parse the command line and dispatch; no logic here.

use clap::{CommandFactory, FromArgMatches};
use pingora_gateway::cli::{Cli, Command, OutputFormat, RunArgs, ValidateArgs};
use pingora_gateway::server::{RunOptions, StartError};
use std::process::ExitCode;

/// `gateway --version`: ours, the commit it was built from, Pingora's (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GATEWAY_GIT_COMMIT"),
    ", pingora ",
    env!("GATEWAY_PINGORA_VERSION"),
    ")"
);

fn main() -> ExitCode {
    // reqwest (JWKS, introspection), Pingora and the HTTPS listener share
    // one rustls provider; reqwest panics on a client built without it.
    pingora_gateway::tls::install_crypto_provider();
    // systemd's LoadCredential= files become the variables the config's
    // `${VAR}` names, before any thread exists.
    for (name, value) in pingora_gateway::lifecycle::credentials_env() {
        // SAFETY: single-threaded here: nothing else reads the environment.
        unsafe { std::env::set_var(name, value) };
    }
    let matches = Cli::command().version(VERSION).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", pingora_gateway::config::schema_string());
            ExitCode::SUCCESS
        }
        Some(Command::Validate(args)) => validate(args),
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command().version(VERSION);
            clap_complete::generate(shell, &mut cmd, "gateway", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    use pingora_gateway::validate::{Format, Options, validate_files};
    let ValidateArgs {
        files,
        no_resolve,
        allow_missing_env,
        format,
    } = args;
    let opts = Options {
        resolve_names: !no_resolve,
        allow_missing_env,
        format: match format {
            OutputFormat::Text => Format::Text,
            OutputFormat::Json => Format::Json,
        },
    };
    if validate_files(&files, &opts, &mut std::io::stdout()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(args: RunArgs) -> ExitCode {
    let config = match args.config_file() {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("gateway: {msg}");
            return ExitCode::from(2);
        }
    };
    let RunArgs {
        config: _,
        daemon,
        upgrade,
    } = args;
    match pingora_gateway::server::run(RunOptions {
        config,
        daemon,
        upgrade,
        version: VERSION,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(errors)) => {
            for d in errors.warnings.iter().chain(&errors.errors) {
                eprintln!("{d}");
            }
            eprintln!("gateway: configuration is invalid, not starting");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
