//! Prints the script ssh mode sends to each host for the collectors of a `plugins.toml`: the
//! commands the dry run learns (`remote::learn::dry_run`), as `remote::batch::script` writes them.
//! `scripts/bench-target.py` runs it under `bash -c` as sshd does, to measure what a collection
//! costs the target.
//!
//!   cargo run --release -p auto-client --example batch_script -- PLUGINS_TOML [--only A,B] \
//!       [--command CMD]... [--in-shell]
//!
//! `--only`: only these collectors of the file (the file's order). `--command`: this command too,
//! after the collectors' (a `cat -- /proc/NAME` is a direct read, as a learned file read).
//! `--in-shell`: without the script's first line (the move from bash to dash), so that it runs on
//! in the shell that started it. A file of `-` loads no collector (only `--command`s). The nonce is
//! a fixed one of 16 hex digits (the host draws a new one for each batch); the dry run's order of
//! the commands is the host's too (collectors that run at once may come in either order).
use std::path::Path;

use auto_client::{
    plugins::{
        file::PluginsFile,
        registry::{LoadOptions, PluginRegistry},
    },
    remote::{batch, learn},
};

fn main() {
    if let Err(e) = run() {
        eprintln!("batch_script: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .ok_or("usage: batch_script PLUGINS_TOML [--only A,B] [--command CMD]... [--in-shell]")?;
    let (mut only, mut extra, mut in_shell) = (None::<Vec<String>>, Vec::new(), false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => {
                let names = args.next().ok_or("--only needs a list of names")?;
                only = Some(names.split(',').map(str::to_owned).collect());
            }
            "--command" => extra.push(args.next().ok_or("--command needs a command")?),
            "--in-shell" => in_shell = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if file == "-" && only.is_some() {
        return Err("--only names collectors of a plugins.toml, not of `-`".into());
    }
    let mut commands = Vec::new();
    if file != "-" {
        // the configured plugins and the drop-ins, as `collect` loads them
        let mut specs = PluginsFile::load(Path::new(&file))
            .map_err(|e| format!("{e:#}"))?
            .specs();
        if let Some(only) = &only {
            if let Some(missing) = only.iter().find(|n| !specs.iter().any(|s| &s.name == *n)) {
                return Err(format!("{file} has no plugin {missing:?}"));
            }
            specs.retain(|s| only.contains(&s.name));
        }
        let options = LoadOptions::default();
        let registry = PluginRegistry::load(specs, &options);
        if let Some(failed) = registry.failed.first() {
            return Err(format!(
                "plugin {} did not load: {}",
                failed.name, failed.error
            ));
        }
        commands.extend(learn::dry_run(&registry).into_iter().map(|ask| ask.command));
    }
    commands.extend(extra);
    let script = batch::script(&commands, "0123456789abcdef");
    let script = if in_shell {
        script.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &script
    };
    print!("{script}");
    Ok(())
}
