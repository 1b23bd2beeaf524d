//! Collecting this machine: every loaded plugin against the local executor (in worker processes
//! where isolated), and what the result means for the exit code. Used by `collect` and by the
//! agent's cycle.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use auto_proto::Report;
use plugin_api::Executor_TO;

use crate::{
    plugins::executor::LocalExecutor,
    plugins::file::PluginSpec,
    plugins::registry::{LoadOptions, PluginRegistry, RegistryCache},
    plugins::runner::{self, Data, MakeExecutor},
    plugins::worker,
    report, Isolation, Mode, Outcome,
};

/// Loads the plugins of `specs` (through `cache`) and collects this machine with them; load
/// failures become error entries. Each collector starts as soon as its library has loaded, while
/// the next one loads (loading is mostly abi_stable's layout check, ~0.5 ms a library here): the
/// first collector does not wait for the last library.
///
/// `D` is how each collector's data is held: parsed ([`serde_json::Value`]: the agent digests the
/// part lists, `--format table` walks them) or as the collector's JSON text (`collect --format
/// json` prints it as it came: no tree of maps built and written back, ~2 ms for `packages`).
pub fn load_and_collect<D: Data>(
    cache: &mut RegistryCache,
    specs: Vec<PluginSpec>,
    load: &LoadOptions,
    previous_hostname: Option<String>,
    isolation: Isolation,
) -> (PluginRegistry, Report<D>) {
    // Each collector thread gets its own glibc arena, grown by one `mprotect` per few pages as
    // it fills: 845 of them in one twelve-collector run here. Growing by 8 MiB at a time (address
    // space only: pages are still touched one by one) made it 123.
    // SAFETY: mallopt only tunes glibc's allocator; it may be called at any time.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 8 << 20);
    }
    let name = report::local_hostname();
    let _span = tracing::info_span!("target", host = %name).entered();
    let target = name.clone();
    let make: MakeExecutor = Arc::new(move |deadline| {
        Executor_TO::from_value(
            LocalExecutor {
                target_name: target.clone(),
                deadline,
            },
            TD_Opaque,
        )
    });
    let pool = crate::pool::Pool::new("collector", specs.iter().filter(|s| s.enabled).count());
    let (tx, incoming) = crossbeam_channel::unbounded();
    let (mut registry, mut plugins) = std::thread::scope(|scope| {
        let span = tracing::Span::current();
        let collecting = scope.spawn(move || {
            let _span = span.entered();
            runner::collect_stream(&incoming, &make, &pool)
        });
        let started = std::time::Instant::now();
        let registry = cache.load_each(specs, load, |plugin| {
            let mut plugin = plugin.clone();
            worker::mark(&mut plugin, isolation);
            let _ = tx.send(plugin);
        });
        drop(tx);
        tracing::debug!(
            took_us = started.elapsed().as_micros() as u64,
            "plugins loaded"
        );
        let plugins = collecting
            .join()
            .expect("the collecting thread does not panic");
        (registry, plugins)
    });
    worker::mark_isolated(&mut registry, isolation);
    for failure in &registry.failed {
        plugins.insert(failure.name.clone(), runner::load_failure(failure));
    }
    let hostname = report::target_hostname(&plugins, &name);
    let report = report::build(hostname, previous_hostname, Mode::Agent, plugins);
    (registry, report)
}

/// 0 when every plugin loaded and reported, 1 when any failed, 2 when none could run.
pub fn report_outcome<D>(report: &Report<D>, registry: &PluginRegistry) -> Outcome {
    if registry.loaded.is_empty() {
        Outcome::Fatal
    } else if report.plugins.values().all(|p| p.is_ok()) {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    }
}
