//! Capture: the kernel programs loaded at offsets read from BTF, the ring buffer read and its
//! records decoded, live samples started, and every loss counted.

pub mod btf;
/// Kernel time to wall time (in `pipetrace-core`: the datasets need it too).
pub use pipetrace_core::clock;
pub mod decode;
pub mod file_hooks;
pub mod loader;
pub mod preflight;
pub mod reader;
pub mod sampler;
pub mod stats;
