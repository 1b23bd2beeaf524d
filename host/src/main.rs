use std::process::ExitCode;

use clap::Parser;

use auto_client::{app, config::Args, Outcome};

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match app::run(args) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("auto-client: error: {e:#}");
            Outcome::Fatal
        }
    };
    auto_client::plugins::executor::kill_all();
    ExitCode::from(outcome as u8)
}
