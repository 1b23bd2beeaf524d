//! Runs every loaded collector against one target on the thread pool, enforcing each collector's
//! timeout, and turns what they gave into the report's `plugins` map.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::pool::Pool;
use abi_stable::std_types::RBox;
use auto_proto::{PluginFailure, PluginReport};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use plugin_api::Executor_TO;
use serde_json::{value::RawValue, Value};

use crate::plugins::registry::{CollectResult, LoadFailure, LoadedPlugin};

/// An executor owned by one collector call.
pub type OwnedExecutor = Executor_TO<'static, RBox<()>>;

/// Makes the executor for one collector call, given that call's deadline.
pub type MakeExecutor = Arc<dyn Fn(Instant) -> OwnedExecutor + Send + Sync>;

/// How long a collector may wait for a free pool thread before it is reported as not run.
const START_GRACE: Duration = Duration::from_secs(30);

enum Event {
    Started(Instant),
    Done(CollectResult, Duration),
}

enum State {
    Queued(Instant),
    Running(Instant),
    Finished,
}

/// Runs `plugins` against one target. A collector that does not finish by its timeout is reported
/// as a `timeout` error and abandoned (its thread cannot be stopped: isolation mode exists for that);
/// the others are not held up by it.
pub fn collect_all<D: Data>(
    plugins: &[LoadedPlugin],
    make_executor: &MakeExecutor,
    pool: &Pool,
) -> BTreeMap<String, PluginReport<D>> {
    let (tx, incoming) = crossbeam_channel::unbounded();
    for plugin in plugins {
        let _ = tx.send(plugin.clone());
    }
    drop(tx);
    collect_stream(&incoming, make_executor, pool)
}

/// [`collect_all`] for collectors that arrive while it runs (each is started as soon as it has
/// loaded, while the next library loads); it returns when `incoming` is closed and every collector
/// that came has finished or been abandoned.
pub fn collect_stream<D: Data>(
    incoming: &Receiver<LoadedPlugin>,
    make_executor: &MakeExecutor,
    pool: &Pool,
) -> BTreeMap<String, PluginReport<D>> {
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Event)>();
    let mut tx = Some(tx);
    let mut plugins: Vec<LoadedPlugin> = Vec::new();
    let mut states: Vec<State> = Vec::new();
    let mut reports = BTreeMap::new();
    let mut open = 0usize;
    let mut arriving = true;
    while arriving || open > 0 {
        let next_deadline = states
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                State::Queued(t) => Some(*t + START_GRACE),
                State::Running(t) => Some(*t + plugins[i].timeout()),
                State::Finished => None,
            })
            .min();
        let event = if arriving {
            let wait =
                next_deadline.map_or(START_GRACE, |d| d.saturating_duration_since(Instant::now()));
            crossbeam_channel::select! {
                recv(incoming) -> plugin => match plugin {
                    Ok(plugin) => {
                        let i = plugins.len();
                        let sender = tx.clone().expect("open while plugins arrive");
                        submit(pool, i, plugin.clone(), make_executor, sender);
                        plugins.push(plugin);
                        states.push(State::Queued(Instant::now()));
                        open += 1;
                        continue;
                    }
                    Err(_) => {
                        // Every collector is submitted: from now on a closed channel means every
                        // job dropped its sender without a result.
                        arriving = false;
                        tx = None;
                        continue;
                    }
                },
                recv(rx) -> event => event.map_err(|_| RecvTimeoutError::Disconnected),
                default(wait) => Err(RecvTimeoutError::Timeout),
            }
        } else {
            let deadline = next_deadline.expect("an open collector has a deadline");
            rx.recv_deadline(deadline)
        };
        match event {
            Ok((i, Event::Started(t))) => states[i] = State::Running(t),
            Ok((i, Event::Done(result, took))) => {
                if matches!(states[i], State::Finished) {
                    continue; // it already timed out
                }
                states[i] = State::Finished;
                open -= 1;
                reports.insert(plugins[i].name.clone(), finished(&plugins[i], result, took));
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                for (i, state) in states.iter_mut().enumerate() {
                    let p = &plugins[i];
                    let report = match state {
                        State::Running(t) if now >= *t + p.timeout() => failed(
                            p,
                            "timeout",
                            format!(
                                "collector did not finish in {}",
                                humantime::format_duration(p.timeout())
                            ),
                            p.timeout(),
                        ),
                        State::Queued(t) if now >= *t + START_GRACE => failed(
                            p,
                            "not_run",
                            "no free worker thread (another collector is hung)".to_string(),
                            Duration::ZERO,
                        ),
                        _ => continue,
                    };
                    if let PluginReport::Error {
                        error, duration_ms, ..
                    } = &report
                    {
                        tracing::warn!(plugin = %p.name, duration_ms, outcome = %error.kind, error = %error.message, "collector abandoned");
                    }
                    *state = State::Finished;
                    open -= 1;
                    reports.insert(p.name.clone(), report);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Every job dropped its sender without a result: a job thread died.
                for (i, state) in states.iter_mut().enumerate() {
                    if !matches!(state, State::Finished) {
                        let p = &plugins[i];
                        reports.insert(
                            p.name.clone(),
                            failed(
                                p,
                                "crashed",
                                "collector thread ended without a result".into(),
                                Duration::ZERO,
                            ),
                        );
                        *state = State::Finished;
                    }
                }
                open = 0;
            }
        }
    }
    reports
}

/// Starts collector `i` on the pool; its events go to `tx`.
fn submit(
    pool: &Pool,
    i: usize,
    plugin: LoadedPlugin,
    make_executor: &MakeExecutor,
    tx: Sender<(usize, Event)>,
) {
    let make = Arc::clone(make_executor);
    pool.execute(move || {
        let started = Instant::now();
        let _ = tx.send((i, Event::Started(started)));
        let deadline = started + plugin.timeout();
        let executor = make(deadline);
        let result = if plugin.isolated {
            crate::plugins::worker::collect(&plugin, deadline, executor.target_name().as_str())
        } else {
            plugin.collect(executor.sabi_reborrow())
        };
        let _ = tx.send((i, Event::Done(result, started.elapsed())));
    });
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn failed<D>(
    plugin: &LoadedPlugin,
    kind: &str,
    message: String,
    took: Duration,
) -> PluginReport<D> {
    PluginReport::Error {
        version: Some(plugin.version.clone()),
        duration_ms: millis(took),
        error: PluginFailure {
            kind: kind.to_string(),
            message,
        },
    }
}

fn finished<D: Data>(
    plugin: &LoadedPlugin,
    result: CollectResult,
    took: Duration,
) -> PluginReport<D> {
    match result {
        Ok(json) => match D::parse(json) {
            Ok(data) => {
                tracing::info!(plugin = %plugin.name, duration_ms = millis(took), outcome = "ok", "collector done");
                PluginReport::Ok {
                    version: plugin.version.clone(),
                    duration_ms: millis(took),
                    data,
                }
            }
            Err(e) => failed(
                plugin,
                "parse",
                format!("collector returned invalid JSON: {e}"),
                took,
            ),
        },
        Err(e) => {
            tracing::warn!(plugin = %plugin.name, duration_ms = millis(took), outcome = %e.kind, error = %e.message, "collector failed");
            failed(plugin, &e.kind, e.message, took)
        }
    }
}

/// How a collector's `data` is held in the report: parsed ([`Value`], agent mode: the part lists are
/// digested and the hostname read) or as the collector's JSON text ([`RawValue`], ssh and salt
/// mode: passed on as it came; a tree of maps and strings costs several times the text, ~0.5 MB for
/// `packages`'s 761 parts, for each host in flight).
pub trait Data: Sized + Send + 'static {
    /// The collector's JSON text; an error if it is not JSON.
    fn parse(json: String) -> Result<Self, serde_json::Error>;
    /// Its `identity.hostname` hint, if it is a string.
    fn identity_hostname(&self) -> Option<String>;
}

impl Data for Value {
    fn parse(json: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&json)
    }

    fn identity_hostname(&self) -> Option<String> {
        self.get("identity")
            .and_then(|i| i.get("hostname"))
            .and_then(|h| h.as_str())
            .map(str::to_string)
    }
}

impl Data for Box<RawValue> {
    /// The text as it came when it is compact JSON (a collector built with `plugin-api` writes it
    /// so); otherwise (whitespace, which would also break `--format json`'s one report a line)
    /// parsed and written compact, as a [`Value`] is.
    fn parse(json: String) -> Result<Self, serde_json::Error> {
        if is_compact(&json) {
            RawValue::from_string(json)
        } else {
            RawValue::from_string(serde_json::to_string(&serde_json::from_str::<Value>(
                &json,
            )?)?)
        }
    }

    fn identity_hostname(&self) -> Option<String> {
        // the `os` collector's data: a few hundred bytes
        serde_json::from_str::<Value>(self.get())
            .ok()?
            .identity_hostname()
    }
}

/// No whitespace outside strings (JSON strings hold none unescaped but spaces).
fn is_compact(json: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for b in json.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b' ' | b'\n' | b'\r' | b'\t' => return false,
                _ => {}
            }
        }
    }
    true
}

/// The report entry of a plugin that did not load.
pub fn load_failure<D>(failure: &LoadFailure) -> PluginReport<D> {
    PluginReport::Error {
        version: None,
        duration_ms: 0,
        error: PluginFailure {
            kind: "load".to_string(),
            message: failure.to_string(),
        },
    }
}
