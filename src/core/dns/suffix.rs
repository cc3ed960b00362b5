//! The DNS suffix a network's names live under: `<network>.p2p` unless the node's config sets
//! `dns_suffix`. Checked once, when the config is read, so the responder and the resolver
//! registration (`resolvectl domain LINK ~SUFFIX`) get a name both accept.

/// A node name takes at most 63 bytes and a dot (`names::NODE_NAME_MAX`); with the suffix the
/// whole name must stay within DNS's 253 (RFC 1035 §2.3.4, without the final dot).
pub const SUFFIX_MAX: usize = 253 - 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SuffixError {
    #[error(
        "DNS suffix {0:?} is not allowed: use dot-separated labels of 1-63 characters from a-z, \
         0-9, '-' and '_', at most {SUFFIX_MAX} characters in all (e.g. \"office.p2p\")"
    )]
    Invalid(String),
}

/// The suffix a network gets when its config does not name one.
pub fn default_suffix(network: &str) -> String {
    format!("{network}.p2p")
}

/// Checks a suffix and returns it in the form used everywhere: lower case, no trailing dot.
pub fn check_suffix(suffix: &str) -> Result<String, SuffixError> {
    let plain = suffix
        .strip_suffix('.')
        .unwrap_or(suffix)
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if plain.is_empty() || plain.len() > SUFFIX_MAX || !plain.split('.').all(label_ok) {
        let shown: String = suffix.chars().take(80).collect();
        return Err(SuffixError::Invalid(shown));
    }
    Ok(plain)
}
