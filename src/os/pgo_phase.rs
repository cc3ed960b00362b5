//! The phases of a node's life that the profile-guided build's training tells apart
//! (`scripts/pgo.sh`): the library only reports them, to a hook that the binary installs in
//! the training's instrumented build alone (`src/pgo_training.rs`, `--cfg
//! p2pvpn_pgo_phases` given to the binary's crate only). Every other build has no hook, and
//! the library's code is the same in both, so the profile matches the code it optimises.
//!
//! Why: the link order puts the code a settled node runs first (`scripts/lib/link_order.py`),
//! so that what maps itself back after `os::trim` is a few 64 KiB windows. To know that code,
//! the training needs the functions a node ran between settling and being told to stop.

use std::sync::OnceLock;

/// A point in a node's life where the training's profile starts a new part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The control plane went quiet and the node trimmed for the first time (`io::settle`).
    Settled,
    /// The node was asked to stop; what follows is teardown.
    Stopping,
}

static HOOK: OnceLock<fn(Phase)> = OnceLock::new();

/// Installs the training's hook (once; a second call is ignored).
pub fn set_hook(hook: fn(Phase)) {
    let _ = HOOK.set(hook);
}

/// Reports a phase to the hook, if one is installed.
pub fn mark(phase: Phase) {
    if let Some(hook) = HOOK.get() {
        hook(phase);
    }
}
