//! What `up` prints while it works. On a terminal, a slow step under way (registering,
//! probing the NAT, punching) shows as one spinner line that the next finished step replaces;
//! anywhere else (a pipe, the journal) every step is a plain line, as before.
//!
//! Log lines go to stderr, which on a terminal is the same screen as the spinner on stdout. A
//! log line written while the spinner shows would start after the spinner's text and leave
//! fragments behind, so the log writer (`cli::logging`) goes through [`around_log`]: it clears
//! the spinner line, lets the log line out, and redraws the spinner below it.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
/// Carriage return, then "erase the whole line" (ECMA-48 EL with parameter 2).
const CLEAR_LINE: &str = "\r\x1b[2K";

/// The spinner's state and the logic of what to write; the output is passed in, so tests can
/// watch what a terminal would receive.
#[derive(Debug, Default)]
pub struct Screen {
    step: Option<String>,
    frame: usize,
    tty: bool,
}

impl Screen {
    pub const fn new(tty: bool) -> Self {
        Screen {
            step: None,
            frame: 0,
            tty,
        }
    }

    fn draw(&self, out: &mut dyn Write) {
        if let Some(step) = &self.step {
            let _ = write!(
                out,
                "{CLEAR_LINE}{} {step}",
                FRAMES[self.frame % FRAMES.len()]
            );
            let _ = out.flush();
        }
    }

    /// A finished step or an event: a line of its own.
    pub fn line(&mut self, out: &mut dyn Write, msg: &str) {
        if self.tty {
            let _ = writeln!(out, "{CLEAR_LINE}{msg}");
            self.draw(out);
        } else {
            let _ = writeln!(out, "{msg}");
        }
        let _ = out.flush();
    }

    /// A slow step begins (or moves on).
    pub fn step(&mut self, out: &mut dyn Write, msg: &str) {
        if self.tty {
            self.step = Some(msg.to_string());
            self.draw(out);
        } else {
            let _ = writeln!(out, "{msg}");
            let _ = out.flush();
        }
    }

    /// The step under way is over.
    pub fn done(&mut self, out: &mut dyn Write) {
        if self.tty && self.step.take().is_some() {
            let _ = write!(out, "{CLEAR_LINE}");
            let _ = out.flush();
        }
    }

    pub fn active(&self) -> bool {
        self.tty && self.step.is_some()
    }

    pub fn tick(&mut self, out: &mut dyn Write) {
        self.frame = self.frame.wrapping_add(1);
        self.draw(out);
    }

    /// Runs `log` (which writes a whole log line to its own stream) with the spinner line
    /// cleared from `out` first and redrawn after, so the two never share a line.
    pub fn around_log<T>(&mut self, out: &mut dyn Write, log: impl FnOnce() -> T) -> T {
        if !self.active() {
            return log();
        }
        let _ = write!(out, "{CLEAR_LINE}");
        let _ = out.flush();
        let result = log();
        self.draw(out);
        result
    }
}

/// The process's screen; whether stdout is a terminal is decided on first use.
static STATE: Mutex<Option<Screen>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Screen, &mut dyn Write) -> T) -> T {
    // A poisoned lock only means another thread panicked mid-print; the state is still usable.
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    let screen = s.get_or_insert_with(|| Screen::new(std::io::stdout().is_terminal()));
    f(screen, &mut std::io::stdout().lock())
}

/// A finished step or an event: a line of its own.
pub fn line(msg: &str) {
    with(|s, out| s.line(out, msg));
}

/// A slow step begins (or moves on): the spinner line on a terminal, a plain line elsewhere.
pub fn step(msg: &str) {
    with(|s, out| s.step(out, msg));
}

/// The step under way is over.
pub fn done() {
    with(|s, out| s.done(out));
}

/// A spinner is showing (the driver ticks it).
pub fn active() -> bool {
    with(|s, _| s.active())
}

pub fn tick() {
    with(|s, out| s.tick(out));
}

/// Writes a log line through `log` without mixing it into the spinner line (see the header).
pub fn around_log<T>(log: impl FnOnce() -> T) -> T {
    with(|s, out| s.around_log(out, log))
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// What a terminal shows after receiving `bytes`: lines as a user reads them, handling the
    /// carriage return and erase-line sequences the spinner uses.
    pub fn render(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(bytes).replace("\x1b[2K", "\x00");
        let mut lines = vec![String::new()];
        let mut col = 0;
        for ch in text.chars() {
            let cur = lines.last_mut().unwrap_or_else(|| unreachable!());
            match ch {
                '\n' => {
                    lines.push(String::new());
                    col = 0;
                }
                '\r' => col = 0,
                '\x00' => cur.clear(),
                c => {
                    let mut chars: Vec<char> = cur.chars().collect();
                    if col < chars.len() {
                        chars[col] = c;
                    } else {
                        chars.push(c);
                    }
                    *cur = chars.into_iter().collect();
                    col += 1;
                }
            }
        }
        lines
    }

    #[test]
    fn the_renderer_models_a_terminal() {
        assert_eq!(render(b"abc\r\x1b[2Kx\n"), ["x", ""]);
        assert_eq!(render(b"spin\rlog\n"), ["logn", ""]);
    }

    /// One terminal that both stdout and stderr write to.
    #[derive(Clone, Default)]
    pub struct Terminal(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Terminal {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Terminal {
        pub fn shown(&self) -> Vec<String> {
            render(&self.0.borrow())
        }
    }

    #[test]
    fn a_log_line_during_a_spinner_gets_a_line_of_its_own_and_the_spinner_comes_back() {
        let stdout = Terminal::default();
        let mut stderr = stdout.clone();
        let mut s = Screen::new(true);
        s.step(&mut stdout.clone(), "office: registering with the server");
        s.around_log(&mut stdout.clone(), || {
            stderr.write_all(b"WARN server unreachable\n")
        })
        .unwrap_or_else(|_| unreachable!());
        s.line(&mut stdout.clone(), "office: registered");
        let shown = stdout.shown();
        assert_eq!(
            shown,
            [
                "WARN server unreachable",
                "office: registered",
                "⠋ office: registering with the server"
            ],
            "{shown:?}"
        );
    }

    #[test]
    fn without_the_clearing_the_log_line_runs_into_the_spinner() {
        // The old behaviour, for contrast: what the test above guards against.
        let mut bytes = Vec::new();
        let mut s = Screen::new(true);
        s.step(&mut bytes, "office: registering");
        bytes.extend_from_slice(b"WARN server unreachable\n");
        let shown = render(&bytes);
        assert_eq!(shown[0], "⠋ office: registeringWARN server unreachable");
    }

    #[test]
    fn off_a_terminal_everything_is_a_plain_line() {
        let mut bytes = Vec::new();
        let mut s = Screen::new(false);
        s.step(&mut bytes, "punching");
        s.around_log(&mut bytes, || ());
        s.line(&mut bytes, "direct");
        s.done(&mut bytes);
        assert_eq!(String::from_utf8_lossy(&bytes), "punching\ndirect\n");
    }
}
