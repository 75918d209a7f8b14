//! `gateway`: parse the command line and dispatch; no logic here.

use clap::Parser;
use pingora_gateway::cli::{Cli, Command, OutputFormat, RunArgs, ValidateArgs};
use pingora_gateway::server::{RunOptions, StartError};
use std::process::ExitCode;

fn main() -> ExitCode {
    // reqwest (JWKS, introspection), Pingora and the HTTPS listener share
    // one rustls provider; reqwest panics on a client built without it.
    pingora_gateway::tls::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Schema) => {
            print!("{}", pingora_gateway::config::schema_string());
            ExitCode::SUCCESS
        }
        Some(Command::Validate(args)) => validate(args),
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
    let RunArgs {
        config,
        daemon,
        upgrade,
    } = args;
    match pingora_gateway::server::run(RunOptions {
        config,
        daemon,
        upgrade,
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
