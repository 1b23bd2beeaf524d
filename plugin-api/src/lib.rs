//! The stable interface between `auto-client` and its collector plugins.
//!
//! This is the only crate a collector author depends on. A collector is a `cdylib` with one function
//! and one export line; its data is built with [`Data`], which follows report schema 2 (see
//! [`data`]) and refuses anything the server would refuse. A complete collector, `gpu`, that lists
//! the GPUs `nvidia-smi` sees as a part list and says so when it cannot see them:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use plugin_api::{export_collector, serde_json::{json, Value}, CollectError, Data, Target};
//!
//! const QUERY: &str =
//!     "nvidia-smi --query-gpu=serial,name,memory.total,driver_version --format=csv,noheader,nounits";
//!
//! fn collect(target: &Target<'_>, _options: &Value) -> Result<Value, CollectError> {
//!     let mut data = Data::new();
//!     // A volatile value is stored but never change-logged.
//!     let uptime = target.read_to_string("/proc/uptime")?;
//!     let seconds = uptime.split('.').next().and_then(|s| s.parse::<u64>().ok());
//!     data.volatile("uptime_seconds", seconds);
//!     match target.run_ok(QUERY, Duration::from_secs(8)) {
//!         Ok(csv) => {
//!             // Parts are identified by their serial, else by their position; `id` is unique.
//!             let gpus = data.list("gpus", &["serial", "index"]);
//!             for (index, line) in csv.lines().filter(|l| !l.trim().is_empty()).enumerate() {
//!                 let f: Vec<&str> = line.split(',').map(str::trim).collect();
//!                 let serial = f.first().filter(|s| !s.is_empty() && **s != "[N/A]");
//!                 let mib = f.get(2).and_then(|m| m.parse::<u64>().ok());
//!                 let id = serial.map_or_else(|| index.to_string(), |s| s.to_string());
//!                 gpus.part(id, json!({
//!                     "index": index,
//!                     "serial": serial,
//!                     "model": f.get(1),
//!                     "memory_bytes": mib.map(|m| m * 1024 * 1024),
//!                 }));
//!             }
//!             let driver = csv.lines().next().and_then(|l| l.split(',').nth(3)).map(str::trim);
//!             data.fact("driver_version", driver);
//!         }
//!         // Not an empty list: the GPUs are unknown, not gone.
//!         Err(e) => {
//!             data.unavailable("gpus", format!("nvidia-smi: {e}"));
//!             data.fact("driver_version", Value::Null).reason("driver_version", "no nvidia-smi");
//!         }
//!     }
//!     // Checks the data (names, units, unique ids); a mistake is an `invalid_data` error.
//!     data.build()
//! }
//!
//! export_collector!(name = "gpu", description = "NVIDIA GPUs (nvidia-smi)", collect = collect);
//! ```
//!
//! Its data, on a machine with one GPU:
//!
//! ```json
//! { "facts": { "driver_version": "535.104.05" },
//!   "volatile": { "uptime_seconds": 86400 },
//!   "lists": { "gpus": { "key": ["serial", "index"], "parts": [
//!       { "id": "1320221030212", "index": 0, "serial": "1320221030212",
//!         "model": "NVIDIA A100-SXM4-40GB", "memory_bytes": 42949672960 } ] } },
//!   "reasons": {} }
//! ```
//!
//! The other members are `identity` ([`Data::identity`]: `hostname`, `machine_id`, `serial`,
//! `system_uuid`, declared only when their source could be read) and `reasons`
//! ([`Data::reason`]: why a value is null). Names are `[a-z][a-z0-9_]{0,63}` and end in their
//! unit: `_bytes`, `_count`, `_seconds`, `_ms`, `_kib` hold non-negative whole numbers, `_mbps`,
//! `_mts`, `_mhz`, `_rpm`, `_watts`, `_percent`, `_gts` non-negative numbers.
//!
//! Test a collector with [`testing::FixtureExecutor`] (recorded outputs of real machines) and
//! [`testing::golden`] (its output on each fixture, kept in `output.json`).
//!
//! What crosses the boundary is only the `#[repr(C)]` types of this crate ([`CollectorMod`],
//! [`Executor_TO`], [`PluginInfo`], [`PluginError`], [`CommandOutput`]) built from abi_stable's `R*`
//! types; data travels as JSON text. What this crate is not for: loading plugins (that is the host's
//! `registry` module), or knowing anything about SSH, Salt or HTTP (the executor hides the transport).
//!
//! # Versioning: frozen version 1
//!
//! [`CollectorMod`] and [`Executor`] are version 1 of the interface and are frozen: no field, method
//! or type of them will ever change, and no field is appended. abi_stable checks the full type layout
//! of the root module when the host loads a plugin, so a plugin built against anything else (another
//! interface major, a changed type) is refused with a one-line error instead of running with a
//! mismatched layout. A future version 2 is a new module type exported under a new symbol; the host
//! will look for the version-2 symbol first and keep loading version-1 plugins as they are.
#![allow(non_camel_case_types, non_local_definitions)]

use std::{panic::AssertUnwindSafe, time::Duration};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::{RRef, VersionStrings},
    std_types::{ROption, RResult, RStr, RString, RVec},
    StableAbi,
};

pub use serde_json;

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}

pub mod batch;
pub mod data;
pub mod testing;

pub use data::{Data, List};

/// The symbol under which [`export_collector!`] exports the module header when no symbol is given.
///
/// It is abi_stable's own default (`abi_stable::library::ROOT_MODULE_LOADER_NAME`), so a plugin made
/// with `#[export_root_module]` is found without configuration too.
pub const DEFAULT_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Name, version and one-line description of a collector.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    pub name: RString,
    pub version: RString,
    pub description: RString,
}

/// An error a collector or an executor reports.
///
/// `kind` is one short lower-case word that tools can match on (`timeout`, `command_failed`,
/// `not_found`, `permission_denied`, `unavailable`, `parse`, `io`, `panic`, `transport`, `bad_options`);
/// it is a string, not an enum, so that new kinds never change the layout.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub kind: RString,
    pub message: RString,
}

/// What a command run on the target gave back.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    pub stdout: RVec<u8>,
    pub stderr: RVec<u8>,
    /// `None` when the command was ended by a signal.
    pub exit_code: ROption<i32>,
}

/// How a collector reaches its target. The host implements it once per mode (local processes, SSH,
/// Salt); the collector never learns which.
///
/// Implementations on the host side must not panic: these methods are called through `extern "C"`
/// shims, where a panic aborts the process. The host catches its own panics inside each method.
#[sabi_trait]
pub trait Executor {
    /// Runs `command` with `sh -c` semantics on the target, in the C locale (`LC_ALL=C`: English
    /// messages whatever the target's login sets); the executor kills it after `timeout_ms` and
    /// answers with a `timeout` error.
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError>;

    /// Reads a whole file of the target.
    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError>;

    /// The name the host knows the target by (the local hostname, the SSH host, the minion id).
    fn target_name(&self) -> RString;
}

/// The executor as it crosses the boundary: a borrowed, type-erased trait object.
pub type ExecutorRef<'a> = Executor_TO<'a, RRef<'a, ()>>;

/// Version 1 of the root module every collector exports. Frozen: see the crate docs.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = CollectorModRef)))]
#[sabi(missing_field(panic))]
pub struct CollectorMod {
    pub info: extern "C" fn() -> PluginInfo,
    /// Collects from the target; `options_json` is the `options` table of `plugins.toml` as JSON
    /// (`{}` when absent); the answer is the collector's data as JSON text.
    #[sabi(last_prefix_field)]
    pub collect:
        for<'a, 'b> extern "C" fn(ExecutorRef<'a>, RStr<'b>) -> RResult<RString, PluginError>,
}

impl RootModule for CollectorModRef {
    declare_root_module_statics! {CollectorModRef}
    const BASE_NAME: &'static str = "auto_collector";
    const NAME: &'static str = "auto_collector";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A collector's error, in std types. Converted to and from [`PluginError`] at the boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectError {
    pub kind: String,
    pub message: String,
}

impl CollectError {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// Output of a command or file could not be understood.
    pub fn parse(message: impl Into<String>) -> Self {
        Self::new("parse", message)
    }
}

impl std::fmt::Display for CollectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for CollectError {}

impl From<PluginError> for CollectError {
    fn from(e: PluginError) -> Self {
        Self::new(e.kind.into_string(), e.message.into_string())
    }
}

impl From<CollectError> for PluginError {
    fn from(e: CollectError) -> Self {
        PluginError {
            kind: e.kind.into(),
            message: e.message.into(),
        }
    }
}

/// What a command gave back, in std types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A command's output as text: the bytes as they are where they are UTF-8 (one copy out of the
/// host's buffer, which abi_stable makes for a vector another binary allocated; no lossy pass),
/// else with U+FFFD for each invalid sequence.
fn text(bytes: RVec<u8>) -> String {
    String::from_utf8(bytes.into_vec())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The collector's safe view of its target: std types in, std types out.
pub struct Target<'a> {
    executor: ExecutorRef<'a>,
}

impl<'a> Target<'a> {
    pub fn new(executor: ExecutorRef<'a>) -> Self {
        Self { executor }
    }

    /// Runs a command; a non-zero exit is not an error here (see [`Target::run_ok`]).
    pub fn run(&self, command: &str, timeout: Duration) -> Result<Output, CollectError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        match self.executor.run(command.into(), ms) {
            RResult::ROk(out) => Ok(Output {
                stdout: text(out.stdout),
                stderr: text(out.stderr),
                exit_code: out.exit_code.into_option(),
            }),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Runs a command and returns its stdout; a non-zero exit becomes a `command_failed` error that
    /// names the command and quotes the first line of its stderr.
    pub fn run_ok(&self, command: &str, timeout: Duration) -> Result<String, CollectError> {
        let out = self.run(command, timeout)?;
        if out.success() {
            return Ok(out.stdout);
        }
        let first = out.stderr.lines().next().unwrap_or("").trim();
        let status = match out.exit_code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        Err(CollectError::new(
            "command_failed",
            format!("`{command}` failed with {status}: {first}"),
        ))
    }

    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, CollectError> {
        match self.executor.read_file(path.into()) {
            RResult::ROk(v) => Ok(v.into_vec()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Reads a file as text (invalid UTF-8 is replaced, never an error).
    pub fn read_to_string(&self, path: &str) -> Result<String, CollectError> {
        self.read_file(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn name(&self) -> String {
        self.executor.target_name().into_string()
    }
}

/// The signature of a collector function, as [`export_collector!`] takes it.
pub type CollectFn = fn(&Target<'_>, &serde_json::Value) -> Result<serde_json::Value, CollectError>;

/// Turns a panic payload into text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

thread_local! {
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The plugin's own std prints a panic to stderr with its default hook; the host reports it instead
/// (as an error entry and a log line), so the plugin's hook only remembers where it happened.
fn install_quiet_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|p| *p.borrow_mut() = at);
        }));
    });
}

/// Runs a collector function behind the boundary: parses the options, catches any panic, and
/// serialises the answer. Used by [`export_collector!`]; public for it only.
#[doc(hidden)]
pub fn __run_collect(
    collect: CollectFn,
    executor: ExecutorRef<'_>,
    options_json: RStr<'_>,
) -> RResult<RString, PluginError> {
    install_quiet_panic_hook();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let text = options_json.as_str();
        let options: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(text).map_err(|e| {
                CollectError::new("bad_options", format!("options are not valid JSON: {e}"))
            })?
        };
        let target = Target::new(executor);
        let data = collect(&target, &options)?;
        serde_json::to_string(&data)
            .map_err(|e| CollectError::new("parse", format!("data is not serialisable: {e}")))
    }));
    match result {
        Ok(Ok(json)) => RResult::ROk(json.into()),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => {
            let at = PANIC_LOCATION
                .with(|p| p.borrow_mut().take())
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            RResult::RErr(PluginError {
                kind: "panic".into(),
                message: format!("collector panicked{at}: {}", panic_message(&*payload)).into(),
            })
        }
    }
}

/// Builds the [`PluginInfo`] of a collector, catching panics (there are none in practice: the
/// strings are constants). Used by [`export_collector!`].
#[doc(hidden)]
pub fn __info(name: &str, version: &str, description: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        version: version.into(),
        description: description.into(),
    }
}

/// Exports a collector function as a plugin.
///
/// ```no_run
/// # use plugin_api::{export_collector, serde_json::Value, CollectError, Data, Target};
/// # fn collect(_: &Target<'_>, _: &Value) -> Result<Value, CollectError> { Data::new().build() }
/// export_collector!(name = "cpu", description = "processor model and counts", collect = collect);
/// // or under a symbol of its own (then name it in plugins.toml):
/// export_collector!(name = "cpu", description = "...", collect = collect, symbol = "my_cpu_v1");
/// ```
///
/// The version is the collector crate's `CARGO_PKG_VERSION`. Every entry point is wrapped in
/// `catch_unwind`: a panic in the collector becomes an error of kind `panic`.
#[macro_export]
macro_rules! export_collector {
    (name = $name:expr, description = $desc:expr, collect = $collect:path $(,)?) => {
        $crate::export_collector!(@export $name, $desc, $collect, "_1as_0lib_1header_0root_bmodule_bloader");
    };
    (name = $name:expr, description = $desc:expr, collect = $collect:path, symbol = $sym:literal $(,)?) => {
        $crate::export_collector!(@export $name, $desc, $collect, $sym);
    };
    (@export $name:expr, $desc:expr, $collect:path, $sym:literal) => {
        const _: () = {
            use $crate::__private::abi_stable::{
                library::{CheckTypeLayout, LibHeader, RootModuleResult},
                prefix_type::PrefixTypeTrait,
                std_types::{RResult, RStr, RString},
            };

            extern "C" fn __auto_info() -> $crate::PluginInfo {
                match ::std::panic::catch_unwind(|| {
                    $crate::__info($name, env!("CARGO_PKG_VERSION"), $desc)
                }) {
                    Ok(info) => info,
                    Err(_) => $crate::__info("invalid", "0.0.0", "info() panicked"),
                }
            }

            extern "C" fn __auto_collect<'a, 'b>(
                executor: $crate::ExecutorRef<'a>,
                options: RStr<'b>,
            ) -> RResult<RString, $crate::PluginError> {
                $crate::__run_collect($collect, executor, options)
            }

            fn __auto_module() -> $crate::CollectorModRef {
                $crate::CollectorMod {
                    info: __auto_info,
                    collect: __auto_collect,
                }
                .leak_into_prefix()
            }

            extern "C" fn __auto_erased_module() -> RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(__auto_module)
            }

            #[export_name = $sym]
            pub static __AUTO_COLLECTOR_HEADER: LibHeader = unsafe {
                LibHeader::from_constructor::<$crate::CollectorModRef>(
                    __auto_erased_module,
                    CheckTypeLayout::Yes,
                )
            };
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_symbol_is_abi_stables_own() {
        assert_eq!(DEFAULT_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
