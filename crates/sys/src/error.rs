//! Error types. I/O failures are wrapped with the operation and the path (youki-style
//! `WrappedIoError`), so a message is useful on its own.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An I/O error together with what was being done and to which path.
#[derive(Debug, thiserror::Error)]
pub enum WrappedIoError {
    #[error("failed to open {path}: {err}")]
    Open { err: io::Error, path: PathBuf },
    #[error("failed to create {path}: {err}")]
    Create { err: io::Error, path: PathBuf },
    #[error("failed to read {path}: {err}")]
    Read { err: io::Error, path: PathBuf },
    #[error("failed to write {path}: {err}")]
    Write { err: io::Error, path: PathBuf },
    #[error("failed to create directory {path}: {err}")]
    CreateDir { err: io::Error, path: PathBuf },
    #[error("failed to read directory {path}: {err}")]
    ReadDir { err: io::Error, path: PathBuf },
    #[error("failed to remove directory {path}: {err}")]
    RemoveDir { err: io::Error, path: PathBuf },
    #[error("failed to remove {path}: {err}")]
    RemoveFile { err: io::Error, path: PathBuf },
    #[error("failed to stat {path}: {err}")]
    Stat { err: io::Error, path: PathBuf },
    #[error("failed to set permissions of {path}: {err}")]
    Chmod { err: io::Error, path: PathBuf },
    #[error("failed to resolve {path}: {err}")]
    Canonicalize { err: io::Error, path: PathBuf },
}

impl WrappedIoError {
    /// The underlying `io::Error`.
    pub fn inner(&self) -> &io::Error {
        match self {
            Self::Open { err, .. }
            | Self::Create { err, .. }
            | Self::Read { err, .. }
            | Self::Write { err, .. }
            | Self::CreateDir { err, .. }
            | Self::ReadDir { err, .. }
            | Self::RemoveDir { err, .. }
            | Self::RemoveFile { err, .. }
            | Self::Stat { err, .. }
            | Self::Chmod { err, .. }
            | Self::Canonicalize { err, .. } => err,
        }
    }

    /// The path the failed operation concerned.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Open { path, .. }
            | Self::Create { path, .. }
            | Self::Read { path, .. }
            | Self::Write { path, .. }
            | Self::CreateDir { path, .. }
            | Self::ReadDir { path, .. }
            | Self::RemoveDir { path, .. }
            | Self::RemoveFile { path, .. }
            | Self::Stat { path, .. }
            | Self::Chmod { path, .. }
            | Self::Canonicalize { path, .. } => path,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.inner().kind()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] WrappedIoError),

    #[error("failed to mount tmpfs at {path} (options {options:?}): {source}")]
    Mount {
        path: PathBuf,
        options: String,
        #[source]
        source: nix::Error,
    },

    #[error("failed to unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("malformed mount table {path}: {source}")]
    MountInfo {
        path: PathBuf,
        #[source]
        source: crate::mount::MountInfoError,
    },

    #[error("refusing to remove {path}: it is still a mount point")]
    StillMounted { path: PathBuf },

    #[error("refusing to remove {path}: it is on a different filesystem than {root}")]
    CrossDevice { path: PathBuf, root: PathBuf },

    #[error("{path} exists but is not a directory")]
    NotADirectory { path: PathBuf },

    #[error("path {path:?} must be relative")]
    AbsolutePath { path: PathBuf },

    #[error("path {path:?} must not contain '..'")]
    Backstep { path: PathBuf },

    #[error("subpath {path} not within volume path {root}")]
    Escapes { path: PathBuf, root: PathBuf },

    #[error("{path} is not a file, directory, socket, block device or character device")]
    UnknownFileType { path: PathBuf },

    #[error("invalid {path}: {reason}")]
    ResolvConf { path: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    Hostname { path: PathBuf, reason: String },
}

impl Error {
    /// True when the error is an I/O "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}
