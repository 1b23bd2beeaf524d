//! Loading and running collectors: `plugins.toml` (`file`), the checked loading of `.so` files
//! (`registry`, `safety`, `abi_cache`: the layout checks already passed), running them against a
//! target with deadlines (`runner`), in a child process when isolated (`worker`), and the local
//! executor (`executor`).

pub mod abi_cache;
pub mod executor;
pub mod file;
pub mod registry;
pub mod runner;
pub mod safety;
pub mod worker;
