//! The deployment's server list, kept across restarts in the network's state directory
//! (`<state>/<network>/servers`). A node whose token names only servers that have since gone
//! (it joined before the deployment grew, and the first server was retired or is down) still
//! reaches the deployment through a server it learned on an earlier run.
//!
//! One line per address, `plain ADDR` or `tls ADDR`, primary first: readable and editable by an
//! operator. The list comes from the server over the authenticated control channel
//! (`ServerMessage::Servers`); it is bounded here all the same, and a file that cannot be read
//! or parsed is ignored with a warning (the token's servers are still tried).

use crate::core::rendezvous::client::ServerAddr;
use anyhow::{Context, Result};
use std::path::Path;

/// Addresses kept: a deployment of a few servers, each with a plain and a TLS address, fits
/// many times over.
pub const MAX_SERVERS: usize = 64;

/// The saved list, or an empty one (no file yet, or a file that cannot be used: logged).
pub fn load(path: &Path) -> Vec<ServerAddr> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the saved server list; using the token's servers");
            return Vec::new();
        }
    };
    match parse(&text) {
        Ok(list) => list,
        Err(line) => {
            tracing::warn!(file = %path.display(), line, "the saved server list is malformed; using the token's servers (the next list from a server replaces the file)");
            Vec::new()
        }
    }
}

/// Parses the file's lines; `Err` names the first bad line (1-based).
fn parse(text: &str) -> std::result::Result<Vec<ServerAddr>, usize> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, addr) = line.split_once(' ').ok_or(i + 1)?;
        let tls = match kind {
            "plain" => false,
            "tls" => true,
            _ => return Err(i + 1),
        };
        let addr = addr.trim().parse().map_err(|_| i + 1)?;
        if out.len() < MAX_SERVERS {
            out.push(ServerAddr { addr, tls });
        }
    }
    Ok(out)
}

fn render(list: &[ServerAddr]) -> String {
    let mut text = String::from("# the deployment's servers as last told by a server, primary first (p2pvpn rewrites this file)\n");
    for s in list.iter().take(MAX_SERVERS) {
        let kind = if s.tls { "tls" } else { "plain" };
        text.push_str(&format!("{kind} {}\n", s.addr));
    }
    text
}

/// Writes the list (a temporary file renamed over the old one, so a crash never leaves half a
/// list).
pub fn save(path: &Path, list: &[ServerAddr]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(list)).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(addr: &str, tls: bool) -> ServerAddr {
        ServerAddr {
            addr: addr.parse().unwrap(),
            tls,
        }
    }

    #[test]
    fn a_saved_list_loads_back_in_order() {
        let dir = std::env::temp_dir().join(format!("p2p-learned-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("servers");
        let list = vec![
            s("192.0.2.2:7000", false),
            s("192.0.2.2:443", true),
            s("[2001:db8::1]:7000", false),
        ];
        save(&path, &list).unwrap();
        assert_eq!(load(&path), list);
        assert!(load(&dir.join("absent")).is_empty());
        std::fs::write(&path, "plain 192.0.2.2:7000\nudp 192.0.2.3:1\n").unwrap();
        assert!(load(&path).is_empty(), "a malformed file is ignored whole");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_lines_are_named_and_the_list_is_bounded() {
        assert_eq!(parse("plain 192.0.2.1:1\nplain nonsense\n"), Err(2));
        assert_eq!(parse("tls\n"), Err(1));
        let many: String = (0..100)
            .map(|i| format!("plain 192.0.2.1:{}\n", 1000 + i))
            .collect();
        assert_eq!(parse(&many).unwrap().len(), MAX_SERVERS);
    }
}
