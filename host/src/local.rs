//! Collecting this machine: every loaded plugin against the local executor (in worker processes
//! where isolated), and what the result means for the exit code. Used by `collect` and by the
//! agent's cycle.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use auto_proto::Report;
use plugin_api::Executor_TO;

use crate::{
    plugins::executor::LocalExecutor,
    plugins::registry::PluginRegistry,
    plugins::runner::{self, MakeExecutor},
    plugins::worker,
    report, Isolation, Mode, Outcome,
};

/// Collects this machine with every loaded plugin; load failures become error entries.
pub fn collect_local(
    registry: &PluginRegistry,
    previous_hostname: Option<String>,
    isolation: Isolation,
) -> Report {
    let mut registry = registry.clone();
    worker::mark_isolated(&mut registry, isolation);
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
    let pool = crate::pool::Pool::new("collector", registry.loaded.len());
    let mut plugins = runner::collect_all(&registry.loaded, &make, &pool);
    for failure in &registry.failed {
        plugins.insert(failure.name.clone(), runner::load_failure(failure));
    }
    let hostname = report::target_hostname(&plugins, &name);
    report::build(hostname, previous_hostname, Mode::Agent, plugins)
}

/// 0 when every plugin loaded and reported, 1 when any failed, 2 when none could run.
pub fn report_outcome(report: &Report, registry: &PluginRegistry) -> Outcome {
    if registry.loaded.is_empty() {
        Outcome::Fatal
    } else if report.plugins.values().all(|p| p.is_ok()) {
        Outcome::AllWell
    } else {
        Outcome::PartialFailure
    }
}
