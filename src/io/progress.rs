//! What `up` prints while it works. On a terminal, a slow step under way (registering,
//! probing the NAT, punching) shows as one spinner line that the next finished step replaces;
//! anywhere else (a pipe, the journal) every step is a plain line, as before.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

struct State {
    step: Option<String>,
    frame: usize,
    tty: Option<bool>,
}

static STATE: Mutex<State> = Mutex::new(State {
    step: None,
    frame: 0,
    tty: None,
});

fn with<T>(f: impl FnOnce(&mut State, bool) -> T) -> T {
    // A poisoned lock only means another thread panicked mid-print; the state is still usable.
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let tty = *s.tty.get_or_insert_with(|| std::io::stdout().is_terminal());
    f(&mut s, tty)
}

fn draw(s: &State) {
    if let Some(step) = &s.step {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r\x1b[2K{} {step}", FRAMES[s.frame % FRAMES.len()]);
        let _ = out.flush();
    }
}

/// A finished step or an event: a line of its own.
pub fn line(msg: &str) {
    with(|s, tty| {
        if tty {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "\r\x1b[2K{msg}");
            drop(out);
            draw(s);
        } else {
            println!("{msg}");
        }
    });
}

/// A slow step begins (or moves on): the spinner line on a terminal, a plain line elsewhere.
pub fn step(msg: &str) {
    with(|s, tty| {
        if tty {
            s.step = Some(msg.to_string());
            draw(s);
        } else {
            println!("{msg}");
        }
    });
}

/// The step under way is over.
pub fn done() {
    with(|s, tty| {
        if tty && s.step.take().is_some() {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
        }
    });
}

/// A spinner is showing (the driver ticks it).
pub fn active() -> bool {
    with(|s, tty| tty && s.step.is_some())
}

pub fn tick() {
    with(|s, _| {
        s.frame = s.frame.wrapping_add(1);
        draw(s);
    });
}
