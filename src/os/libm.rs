//! `pow` and `log`, the only two functions of the C math library that the binary calls, defined
//! here so that the dynamic linker does not load glibc's libm.so.6 into every process.
//!
//! The callers: tokio's multi-threaded scheduler (`pow`, for the moving average of its task poll
//! times) and SQLite's FTS5 ranking function (`log`), which the server links and a node never
//! runs. Each reference alone made libm a needed library, and a process then mapped about 0.3
//! MiB of it: ld.so reads its tables and runs the IFUNC resolvers that pick `pow`'s and `log`'s
//! CPU variant at start, whatever the process later calls. With these definitions in the
//! executable the link resolves both calls here, `--as-needed` drops libm from the dynamic
//! section, and `tests/no_libm.rs` checks that it stays so.
//!
//! The bodies are the `libm` crate's (rust-lang/libm, the port of musl's math library that
//! Rust's compiler-builtins ships for targets without one): within 1 ulp like glibc's, which is
//! more than a moving average and a relevance rank need. glibc Linux only (the module is chosen
//! in `os/mod.rs`): other platforms keep their own math library.

/// `pow(3)`: `x` raised to the power `y`.
#[unsafe(no_mangle)]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `log(3)`: the natural logarithm of `x`.
#[unsafe(no_mangle)]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

#[cfg(test)]
mod tests {
    /// Within 1 ulp of the exact values (the standard library's `powf` and `ln` would call
    /// these very definitions, so the references are constants).
    #[test]
    fn answer_within_an_ulp() {
        let close = |got: f64, want: f64| (got - want).abs() <= f64::EPSILON * want.abs().max(1.0);
        for (x, y, want) in [
            (2.0, 10.0, 1024.0),
            (0.5, 0.25, 0.840_896_415_253_714_6),
            (0.9, 3.0, 0.729),
            (1.0, 0.0, 1.0),
            (0.0, 2.0, 0.0),
        ] {
            assert!(
                close(super::pow(x, y), want),
                "pow({x}, {y}) = {}",
                super::pow(x, y)
            );
        }
        for (x, want) in [
            (1.0, 0.0),
            (2.5, 0.916_290_731_874_155_1),
            (1e6, 13.815_510_557_964_274),
        ] {
            assert!(close(super::log(x), want), "log({x}) = {}", super::log(x));
        }
        assert!(super::log(-1.0).is_nan());
        assert_eq!(super::log(0.0), f64::NEG_INFINITY);
    }
}
