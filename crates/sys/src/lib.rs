//! Host OS access for rkubelet: mounts, pod-directory file helpers, safe path resolution and
//! host facts (resolv.conf, hostname).
//!
//! Everything here is synchronous; async callers wrap calls in `spawn_blocking`. Every error
//! names the path it concerns and the cause.

pub mod atomic_writer;
pub mod cgroup;
pub mod cgroup_metrics;
mod error;
pub mod fs;
pub mod host;
pub mod mount;
pub mod node_info;
pub mod path;
pub mod process;
pub mod stats;

pub use error::{Error, Result, WrappedIoError};
pub use fs::{
    FileType, ensure_dir, file_type, path_exists, read_to_string, remove_dir_all_no_cross_mounts, write_file,
};
pub use host::{ResolvConf, ResolvConfParseError, hostname, parse_resolv_conf, read_resolv_conf};
#[cfg(any(test, feature = "test-util"))]
pub use mount::{FakeMounter, MountCall};
pub use mount::{MountInfo, MountInfoError, Mounter, RealMounter, parse_mountinfo};
pub use path::{safe_join, safe_mkdir_all, validate_relative};
pub use process::{ProcStat, proc_self_stat};
