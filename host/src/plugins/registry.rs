//! Loading collector libraries through the stable ABI, and calling them.
//!
//! Each library is opened with libloading, the abi_stable header is read under the plugin's symbol,
//! checked (`upgrade`, then `init_root_module`, which compares the whole type layout) and the library
//! is never unloaded (`std::mem::forget`): modules hold `'static` pointers into it. We never use
//! `RootModule::load_from_file`, which keeps one module per type for the whole process.

use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use abi_stable::{
    library::{AbiHeaderRef, LibraryError},
    std_types::{RResult, RStr},
};
use plugin_api::{CollectorModRef, ExecutorRef, DEFAULT_SYMBOL};

use crate::plugins::{
    abi_cache::{self, AbiCache},
    file::{Origin, PluginSpec},
};

/// A collector that loaded and passed the ABI check.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// The name its data is reported under.
    pub name: String,
    pub spec: PluginSpec,
    pub symbol: String,
    pub version: String,
    pub description: String,
    /// Runs in a child worker process (see `worker`).
    pub isolated: bool,
    module: CollectorModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("path", &self.spec.path)
            .field("version", &self.version)
            .finish()
    }
}

/// A plugin that could not be loaded: `error` is one line naming the cause.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub name: String,
    pub spec: PluginSpec,
    pub error: String,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {} ({}): {}",
            self.name,
            self.spec.path.display(),
            self.error
        )
    }
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Load a private copy of each library from this directory instead of the file itself, so a
    /// library replaced on disk (write-then-rename) is really loaded anew: `dlopen` of a path it has
    /// seen returns the old, cached code.
    pub private_copy_dir: Option<PathBuf>,
    /// Refuse plugin files writable by other users or not owned by root or us (like sshd's
    /// StrictModes).
    pub strict_permissions: bool,
    /// The file of layout checks already passed (`abi_cache`); `None`: every library is checked.
    pub abi_cache: Option<PathBuf>,
}

/// Everything `plugins.toml` names, loaded or not.
#[derive(Debug, Default, Clone)]
pub struct PluginRegistry {
    pub loaded: Vec<LoadedPlugin>,
    pub failed: Vec<LoadFailure>,
    /// Plugins with `enabled = false`: listed, never loaded.
    pub disabled: Vec<PluginSpec>,
}

impl PluginRegistry {
    /// Loads every enabled spec. A failure is logged in one line and recorded; the others load.
    pub fn load(specs: Vec<PluginSpec>, options: &LoadOptions) -> Self {
        RegistryCache::default().load(specs, options)
    }
}

/// What identifies a version of a library file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// A checked module, before it is given a name and settings from plugins.toml.
#[derive(Clone)]
struct Module {
    module: CollectorModRef,
    name: String,
    version: String,
    description: String,
    symbol: String,
}

/// Keeps loaded libraries across agent cycles: a file that did not change is not loaded again (a
/// library is never unloaded, so reloading would leak); a file replaced on disk is loaded anew,
/// from a private copy when `LoadOptions::private_copy_dir` is set.
#[derive(Default)]
pub struct RegistryCache {
    modules: HashMap<(PathBuf, String), (FileStamp, Result<Module, String>)>,
    /// Opened at the first library loaded, written after each `load_each`.
    abi: Option<AbiCache>,
}

impl RegistryCache {
    pub fn load(&mut self, specs: Vec<PluginSpec>, options: &LoadOptions) -> PluginRegistry {
        self.load_each(specs, options, |_| {})
    }

    /// [`RegistryCache::load`], handing each plugin to `loaded` as soon as it has loaded (so that
    /// it can start collecting while the next library loads).
    pub fn load_each(
        &mut self,
        specs: Vec<PluginSpec>,
        options: &LoadOptions,
        mut loaded: impl FnMut(&LoadedPlugin),
    ) -> PluginRegistry {
        let mut registry = PluginRegistry::default();
        for spec in specs {
            if !spec.enabled {
                registry.disabled.push(spec);
                continue;
            }
            match self.module(&spec, options) {
                Ok(module) => {
                    let name = if spec.origin == Origin::DropIn && !module.name.is_empty() {
                        module.name.clone()
                    } else {
                        spec.name.clone()
                    };
                    if registry.loaded.iter().any(|p| p.name == name) {
                        let failure = LoadFailure {
                            error: format!(
                                "another plugin is already loaded under the name {name:?}"
                            ),
                            name,
                            spec,
                        };
                        tracing::error!("{failure}");
                        registry.failed.push(failure);
                        continue;
                    }
                    tracing::debug!(plugin = %name, path = %spec.path.display(), "plugin loaded");
                    let plugin = LoadedPlugin {
                        name,
                        symbol: module.symbol,
                        version: module.version,
                        description: module.description,
                        module: module.module,
                        isolated: false,
                        spec,
                    };
                    loaded(&plugin);
                    registry.loaded.push(plugin);
                }
                Err(error) => {
                    let failure = LoadFailure {
                        name: spec.name.clone(),
                        spec,
                        error,
                    };
                    tracing::error!("{failure}");
                    registry.failed.push(failure);
                }
            }
        }
        if let Some(abi) = self.abi.as_mut() {
            abi.save();
        }
        registry
    }

    fn module(&mut self, spec: &PluginSpec, options: &LoadOptions) -> Result<Module, String> {
        let meta = std::fs::metadata(&spec.path).map_err(|e| format!("cannot open: {e}"))?;
        if !meta.is_file() {
            return Err("not a regular file".to_string());
        }
        if options.strict_permissions {
            crate::plugins::safety::check_plugin_file(&spec.path)?;
        }
        let stamp = FileStamp::of(&meta);
        let symbol = spec
            .symbol
            .clone()
            .unwrap_or_else(|| DEFAULT_SYMBOL.to_string());
        let key = (spec.path.clone(), symbol.clone());
        if let Some((cached, result)) = self.modules.get(&key) {
            if *cached == stamp {
                return result.clone();
            }
            tracing::info!(path = %spec.path.display(), "plugin file changed on disk: loading it anew");
        }
        let abi = self
            .abi
            .get_or_insert_with(|| AbiCache::open(options.abi_cache.clone()));
        let result = load_module(spec, &symbol, &meta, options, abi);
        self.modules.insert(key, (stamp, result.clone()));
        result
    }
}

static COPY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Loads one library and checks it. The error is one line, without the plugin's name (the caller
/// adds it).
fn load_module(
    spec: &PluginSpec,
    symbol: &str,
    meta: &std::fs::Metadata,
    options: &LoadOptions,
    abi: &mut AbiCache,
) -> Result<Module, String> {
    // With the cache on, the library is opened once, checked and loaded through that descriptor
    // (or copied from it): the file whose stamp is looked up or written down is the file loaded,
    // whatever is done to its path meanwhile.
    let pinned = if abi.enabled() {
        abi_cache::Pinned::open(&spec.path)
    } else {
        None
    };
    let opened;
    let file = match pinned.as_ref().and_then(abi_cache::Pinned::file) {
        Some(file) => file,
        None => {
            opened = std::fs::File::open(&spec.path).map_err(|e| format!("cannot open: {e}"))?;
            &opened
        }
    };
    check_elf(file, meta.len())?;
    let load_path = match (&options.private_copy_dir, &pinned) {
        (Some(dir), _) => private_copy(&spec.path, pinned.as_ref(), dir, &spec.name)?,
        (None, Some(p)) => p.proc_path(),
        (None, None) => spec.path.clone(),
    };
    let symbol_c =
        CString::new(symbol).map_err(|_| format!("symbol {symbol:?} contains a NUL byte"))?;

    // SAFETY: loading a library runs its initialisers; plugin files are code the operator chose to
    // run (and, with strict permissions, only root or we can have written them).
    let library = unsafe { libloading::Library::new(&load_path) }.map_err(|e| {
        let cause = libloading_cause(&e);
        // glibc names what it was given: the descriptor's path stands for the library's own
        let cause = if pinned.is_some() && options.private_copy_dir.is_none() {
            cause.replace(
                &load_path.display().to_string(),
                &spec.path.display().to_string(),
            )
        } else {
            cause
        };
        format!("cannot load library: {cause}")
    });
    if options.private_copy_dir.is_some() {
        // The mapping stays valid once the name is gone; nothing is left behind on disk.
        let _ = std::fs::remove_file(&load_path);
    }
    let library = library?;
    // SAFETY: the symbol is read as an abi_stable header; `upgrade` validates it before any other use.
    let header: AbiHeaderRef = unsafe {
        match library.get::<AbiHeaderRef>(symbol_c.as_bytes_with_nul()) {
            Ok(sym) => *sym,
            Err(e) => {
                return Err(format!(
                    "symbol {symbol} not found: {} (is it an auto-client collector?)",
                    libloading_cause(&e)
                ))
            }
        }
    };
    // Never unload: the module and every string it hands out point into the library.
    std::mem::forget(library);

    let lib_header = header
        .upgrade()
        .map_err(|e| describe_library_error(&e, symbol))?;
    // The stamp of what was loaded: the descriptor's before and after loading, when they agree.
    let stamp = pinned.and_then(abi_cache::Pinned::stamp_if_unchanged);
    let module = match &stamp {
        Some(stamp) if abi.contains(stamp, symbol) => {
            tracing::debug!(path = %spec.path.display(), "type layout checked before by this host binary: not checked again");
            // SAFETY: this host binary checked the layout of this very file (same device, inode,
            // size, modification and change time, settled when written down) under this symbol,
            // and the check passed (`abi_cache`).
            unsafe { lib_header.init_root_module_with_unchecked_layout::<CollectorModRef>() }
        }
        _ => {
            let checked = lib_header.init_root_module::<CollectorModRef>();
            if let (Ok(_), Some(stamp)) = (&checked, &stamp) {
                abi.insert(stamp, symbol);
            }
            checked
        }
    }
    .map_err(|e| describe_library_error(&e, symbol))?;
    let info = (module.info())();
    Ok(Module {
        module,
        name: info.name.into_string(),
        version: info.version.into_string(),
        description: info.description.into_string(),
        symbol: symbol.to_string(),
    })
}

/// A truncated library can pass `dlopen` (its segments are mapped past the end of the file) and
/// crash with SIGBUS at the first call. Check that the ELF header, program headers, every loadable
/// segment and the section header table lie inside the file before loading it.
/// Reads at offsets (`pread`): the descriptor's own offset stays where it is, for a copy made from
/// it afterwards.
fn check_elf(f: &std::fs::File, len: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).map_err(|_| {
        format!("not a shared library: only {len} bytes, shorter than an ELF header")
    })?;
    if &h[..4] != b"\x7fELF" {
        return Err("not a shared library: no ELF header".to_string());
    }
    if h[4] != 2 || h[5] != 1 {
        return Err("not a 64-bit little-endian ELF library".to_string());
    }
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([h[o], h[o + 1]]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let (phoff, shoff) = (u64_at(&h, 32), u64_at(&h, 40));
    let (phentsize, phnum, shentsize, shnum) = (u16_at(54), u16_at(56), u16_at(58), u16_at(60));
    let truncated = |what: &str, end: u64| {
        format!(
            "truncated or damaged library: {what} ends at byte {end} but the file has {len} bytes"
        )
    };
    let ph_end = phoff + phentsize * phnum;
    if ph_end > len {
        return Err(truncated("the program header table", ph_end));
    }
    let sh_end = shoff + shentsize * shnum;
    if sh_end > len {
        return Err(truncated("the section header table", sh_end));
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.read_exact_at(&mut ph, phoff)
        .map_err(|e| format!("cannot read program headers: {e}"))?;
    for entry in ph.chunks_exact(phentsize.max(1) as usize) {
        let p_type = u32::from_le_bytes(entry[0..4].try_into().expect("4 bytes"));
        if p_type == 1 {
            let end = u64_at(entry, 8) + u64_at(entry, 32);
            if end > len {
                return Err(truncated("a loadable segment", end));
            }
        }
    }
    Ok(())
}

/// A copy of the library in `dir`, from `pinned`'s descriptor when there is one (else from `path`).
fn private_copy(
    path: &Path,
    pinned: Option<&abi_cache::Pinned>,
    dir: &Path,
    name: &str,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create private copy directory {}: {e}",
            dir.display()
        )
    })?;
    let n = COPY_COUNTER.fetch_add(1, Ordering::Relaxed);
    let target = dir.join(format!("{name}-{}-{n}.so", std::process::id()));
    let copied = match pinned {
        Some(p) => p.copy_to(&target),
        None => std::fs::copy(path, &target).map(|_| ()),
    };
    copied.map_err(|e| format!("cannot make a private copy in {}: {e}", dir.display()))?;
    Ok(target)
}

/// libloading's Display says only `dlopen failed`; the useful text is in `source()`.
fn libloading_cause(e: &libloading::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

/// One line for each abi_stable error; the ~900-line layout report is cut to its last `Error:` line.
fn describe_library_error(e: &LibraryError, symbol: &str) -> String {
    match e {
        LibraryError::InvalidAbiHeader(_) => format!(
            "no valid abi_stable header under symbol {symbol} (not a collector, or built with another abi_stable)"
        ),
        LibraryError::AbiInstability(_) => {
            let text = e.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| l.contains("Error:"))
                .map(|l| l.trim().to_string())
                .unwrap_or_else(|| text.lines().next().unwrap_or("").trim().to_string());
            tracing::debug!(report = %text, "full abi_stable layout report");
            format!("incompatible plugin interface (type layout differs): {last}")
        }
        other => {
            let text = other.to_string();
            let one: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            format!("incompatible plugin interface: {}", one.join(" "))
        }
    }
}

/// What one call to a collector gave.
pub type CollectResult = Result<String, plugin_api::CollectError>;

impl LoadedPlugin {
    /// Calls the collector on this thread. The export macro catches panics inside the plugin.
    pub fn collect(&self, executor: ExecutorRef<'_>) -> CollectResult {
        let options = self.spec.options_json.as_str();
        match (self.module.collect())(executor, RStr::from_str(options)) {
            RResult::ROk(json) => Ok(json.into_string()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.spec.timeout
    }
}
