//! The profile-guided build's training hook (`scripts/pgo.sh` builds the instrumented binary
//! with `--cfg p2pvpn_pgo_phases` for this crate only): each phase of a node's life
//! (`p2pvpn::os::pgo_phase`) goes to its own profile file. The counts so far are written to the
//! current file, the counters zeroed, and the rest goes to the next file at exit:
//! `DIR/%p.profraw` (start-up), `DIR/%p.settled.profraw` (settled, until told to stop),
//! `DIR/%p.exit.profraw` (teardown). Merged, they are the node's whole profile.

use p2pvpn::os::pgo_phase::Phase;
use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::Mutex;

// compiler-rt's profile runtime, linked into every -Cprofile-generate binary (hidden symbols,
// so only a static reference reaches them).
unsafe extern "C" {
    fn __llvm_profile_write_file() -> c_int;
    fn __llvm_profile_reset_counters();
    fn __llvm_profile_set_filename(name: *const c_char);
}

/// The last phase that started a file.
static LAST: Mutex<Option<Phase>> = Mutex::new(None);

pub fn install() {
    p2pvpn::os::pgo_phase::set_hook(mark);
}

fn mark(phase: Phase) {
    let Ok(mut last) = LAST.lock() else { return };
    let suffix = match (*last, phase) {
        (None, Phase::Settled) => "settled",
        (Some(Phase::Settled), Phase::Stopping) => "exit",
        // A node stopped before it settled keeps one file; each phase starts once.
        _ => return,
    };
    let Some(name) = std::env::var("LLVM_PROFILE_FILE")
        .ok()
        .and_then(|f| {
            f.strip_suffix(".profraw")
                .map(|s| format!("{s}.{suffix}.profraw"))
        })
        .and_then(|f| CString::new(f).ok())
    else {
        eprintln!("pgo training: LLVM_PROFILE_FILE is not NAME.profraw; one profile file only");
        return;
    };
    // Kept for the process's life (a phase starts once), whether or not the runtime copies it.
    let name: &'static CStr = Box::leak(name.into_boxed_c_str());
    // SAFETY: compiler-rt's entry points, called under LAST's lock with a NUL-terminated name
    // that outlives every later write of the profile.
    unsafe {
        __llvm_profile_write_file();
        __llvm_profile_reset_counters();
        __llvm_profile_set_filename(name.as_ptr());
    }
    *last = Some(phase);
}
