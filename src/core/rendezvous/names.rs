//! The one rule for node and network names, shared by the CLI (before it sends a join) and the
//! server (before it admits one), so a member cannot register a name the CLI would refuse: an
//! escape sequence, a newline, an empty or a 5,000-character name would otherwise end up in
//! `network members` and every peer's `status`.

/// Linux interface names (`p2p-NETWORK`) and file names are made from network names.
pub const NETWORK_NAME_MAX: usize = 32;
/// A DNS label's limit (RFC 1035 §2.3.4), since node names are host names by default.
pub const NODE_NAME_MAX: usize = 63;

/// A name that breaks the rule; the message says the rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "network name {0:?} is not allowed: use 1-{NETWORK_NAME_MAX} characters from a-z, 0-9, \
         '-' and '_'"
    )]
    Network(String),
    #[error(
        "node name {0:?} is not allowed: use 1-{NODE_NAME_MAX} characters from A-Z, a-z, 0-9, \
         '-', '_' and '.'"
    )]
    Node(String),
}

/// At most this many characters of a refused name are quoted back, so that a 5,000-character
/// name does not become a 5,000-character error.
const QUOTED_MAX: usize = 80;

fn quoted(name: &str) -> String {
    match name.char_indices().nth(QUOTED_MAX) {
        Some((cut, _)) => format!("{}...", &name[..cut]),
        None => name.to_string(),
    }
}

pub fn check_network_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= NETWORK_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NameError::Network(quoted(name)))
    }
}

pub fn check_node_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= NODE_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(NameError::Node(quoted(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_dangerous_ones_do_not() {
        assert!(check_node_name("alice-1.lab_2").is_ok());
        assert!(check_network_name("office-1").is_ok());
        for bad in ["", "a\nb", "\x1b[2J", "a b", "ünï", &"x".repeat(64)] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "Office", "../etc", &"x".repeat(33)] {
            assert!(check_network_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_long_name_is_quoted_short() {
        let err = check_node_name(&"x".repeat(5000)).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
        assert!(err.contains("1-63 characters"), "{err}");
    }
}
