//! What differs between operating systems, behind one interface: default directories, private
//! files (Unix modes; Windows ACLs), the privilege `up` needs, the server's exclusive lock and
//! descriptor budget. One file per OS (`unix.rs`, `windows.rs`), chosen here at the module level
//! so that the callers carry no `#[cfg]`. Whatever a platform cannot do yet returns an error
//! that names what is missing, never a silent success.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod libm;
pub mod malloc;
pub mod pgo_phase;
pub mod sddl;
pub mod trim;
