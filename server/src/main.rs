//! `auto-server`: the CMDB API of auto-client. It accepts signed reports, enforces host identity,
//! keeps each host's current assets, a change log and an error log, and tells ssh/salt collectors
//! which hosts are due. SQLite is the embedded default; PostgreSQL is chosen by URL.
//!
//! Not for: collecting anything itself, or talking to hosts. Exit codes: 0 done, 1 the command
//! failed (a key that exists, a bad host), 2 fatal (usage, config, database unreachable).

mod api;
mod auth;
mod cli;
mod clock;
mod db;
mod error;
mod ingest;
mod keys;
mod openapi;
mod report;
mod store;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Args, Command, HostsCommand, KeysCommand};

/// An error and the exit code it means.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fatal(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn failed(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("auto-server: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(args: Args) -> Result<(), Failure> {
    let file = cli::FileConfig::load(args.config.as_deref()).map_err(fatal)?;
    let common = cli::common(&args, &file);
    let filter = EnvFilter::try_new(&common.log)
        .with_context(|| format!("bad log filter {:?}", common.log))
        .map_err(fatal)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Command::DefaultConfig = args.command {
        print!("{}", cli::EXAMPLE_CONFIG);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(fatal)?;
    runtime.block_on(run_async(args, file, common))
}

async fn open(common: &cli::Common, max_connections: u32) -> Result<db::Db, Failure> {
    let db = db::Db::connect(&common.db, max_connections)
        .await
        .map_err(fatal)?;
    db.migrate().await.map_err(fatal)?;
    Ok(db)
}

async fn run_async(args: Args, file: cli::FileConfig, common: cli::Common) -> Result<(), Failure> {
    match args.command {
        Command::Serve(serve_args) => {
            let settings = cli::serve(&serve_args, &file).map_err(fatal)?;
            serve(common, settings).await
        }
        Command::Migrate => {
            let db = db::Db::connect(&common.db, 1).await.map_err(fatal)?;
            let n = db.migrate().await.map_err(fatal)?;
            eprintln!("auto-server: {n} migration(s) applied");
            Ok(())
        }
        Command::Keys { command } => {
            let db = open(&common, 2).await?;
            match command {
                KeysCommand::Create { name, scope, host } => {
                    let request = match (scope, host.as_deref()) {
                        (cli::KeyScope::Host, Some(h)) => keys::ScopeRequest::Host(h),
                        (cli::KeyScope::Host, None) => {
                            return Err(fatal(anyhow::anyhow!(
                                "a --scope host key needs --host HOSTNAME"
                            )))
                        }
                        (_, Some(_)) => {
                            return Err(fatal(anyhow::anyhow!(
                                "--host is for --scope host keys only"
                            )))
                        }
                        (cli::KeyScope::Fleet, None) => keys::ScopeRequest::Fleet,
                        (cli::KeyScope::Read, None) => keys::ScopeRequest::Read,
                    };
                    let master =
                        keys::MasterKey::load_or_create(&common.master_key).map_err(fatal)?;
                    let secret = keys::create(&db, &master, &name, request)
                        .await
                        .map_err(failed)?;
                    let what = match request {
                        keys::ScopeRequest::Host(h) => format!("host key for {h:?}"),
                        keys::ScopeRequest::Fleet => "fleet key".to_owned(),
                        keys::ScopeRequest::Read => "read key".to_owned(),
                    };
                    eprintln!(
                        "auto-server: {what} {name:?} created; its secret follows, shown once"
                    );
                    println!("{secret}");
                }
                KeysCommand::List => {
                    let mut out = std::io::stdout().lock();
                    for key in keys::list(&db).await.map_err(failed)? {
                        let state = key.revoked_at.map_or("active".to_owned(), |t| {
                            format!("revoked {}", clock::rfc3339(t))
                        });
                        let scope = match &key.hostname {
                            Some(h) => format!("{} {h}", key.scope),
                            None => key.scope.clone(),
                        };
                        let _ = writeln!(
                            out,
                            "{}\t{scope}\tcreated {}\t{state}",
                            key.name,
                            clock::rfc3339(key.created_at)
                        );
                    }
                }
                KeysCommand::Revoke { name } => {
                    keys::revoke(&db, &name).await.map_err(failed)?;
                    eprintln!("auto-server: key {name:?} revoked");
                }
            }
            Ok(())
        }
        Command::Hosts {
            command:
                HostsCommand::Add {
                    hostname,
                    address,
                    port,
                },
        } => {
            let db = open(&common, 2).await?;
            let new = auto_proto::NewHost {
                hostname,
                address,
                port,
            };
            match api::register_host(&db, &new)
                .await
                .map_err(|e| fatal(e.into()))?
            {
                Ok(created) => {
                    let what = if created { "registered" } else { "updated" };
                    eprintln!(
                        "auto-server: host {:?} {what} at {}:{}",
                        new.hostname, new.address, new.port
                    );
                    Ok(())
                }
                Err(detail) => Err(failed(anyhow::anyhow!(detail))),
            }
        }
        Command::DefaultConfig => Ok(()),
    }
}

async fn serve(common: cli::Common, settings: cli::Serve) -> Result<(), Failure> {
    let db = open(&common, settings.max_connections).await?;
    let master = if settings.config.no_auth {
        tracing::warn!("AUTHENTICATION IS OFF (--no-auth): anyone who reaches this port can write to the inventory; use it for a local trial only");
        None
    } else {
        Some(keys::MasterKey::load_or_create(&common.master_key).map_err(fatal)?)
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))
        .map_err(fatal)?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")
        .map_err(fatal)?;
    let state = Arc::new(api::AppState {
        db,
        config: settings.config,
        master,
    });
    auth::set_clock_skew(state.config.clock_skew_secs);
    tokio::spawn(auth::prune_nonces(state.clone(), settings.nonce_prune));
    let backend = format!("{:?}", state.db.backend).to_ascii_lowercase();
    tracing::info!(%addr, backend, auth = !state.config.no_auth, "auto-server listening");
    println!("auto-server listening on http://{addr}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown())
        .await
        .context("the server stopped")
        .map_err(failed)?;
    tracing::info!("auto-server stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
