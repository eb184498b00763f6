//! CRI v1 client for rkubelet: the `RuntimeService` and `ImageService` seams, a tonic client over
//! the runtime's unix socket, and (feature `test-util`) an in-memory `FakeRuntime`.

mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
mod reference;
mod remote;
mod service;

pub use error::{Error, Result};
#[cfg(any(test, feature = "test-util"))]
pub use fake::FakeRuntime;
pub use k8s_cri::v1 as api;
pub use reference::normalize_ref;
pub use remote::{CallObserver, RemoteRuntime};
pub use service::{ImageService, RuntimeService};
