//! Reading a Windows security descriptor in its SDDL text form (the `D:` part, "Security
//! Descriptor String Format" in the Win32 docs): which broad groups an allow ACE lets in. Pure
//! text, so it is unit-tested on every OS; `windows.rs` feeds it the key file's real DACL.

/// The well-known SIDs that mean "other users" (SDDL abbreviations): Everyone, Authenticated
/// Users, Users, Interactive, Guests, Anonymous.
const OTHERS: [(&str, &str); 6] = [
    ("WD", "Everyone"),
    ("AU", "Authenticated Users"),
    ("BU", "Users"),
    ("IU", "Interactive users"),
    ("BG", "Guests"),
    ("AN", "Anonymous"),
];

/// The first group of other users an allow ACE (`(A;...;SID)`) in `sddl` grants anything to,
/// by name; `None` when only SYSTEM, Administrators and named accounts are allowed.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn grants_others(sddl: &str) -> Option<&'static str> {
    sddl.split('(')
        .filter_map(|ace| ace.split(')').next())
        .filter(|ace| ace.starts_with("A;"))
        .filter_map(|ace| ace.rsplit(';').next())
        .find_map(|sid| OTHERS.iter().find(|(abbr, _)| *abbr == sid))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_aces_for_broad_groups_count() {
        assert_eq!(grants_others("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"), None);
        // A named account (a SID string) is the owner, not "others".
        assert_eq!(
            grants_others("D:P(A;;FA;;;SY)(A;;FA;;;S-1-5-21-1-2-3-1001)"),
            None
        );
        assert_eq!(
            grants_others("D:AI(A;ID;FA;;;SY)(A;ID;0x1200a9;;;BU)"),
            Some("Users")
        );
        assert_eq!(grants_others("D:(A;;GR;;;WD)"), Some("Everyone"));
        // A deny ACE for everyone keeps them out rather than letting them in.
        assert_eq!(grants_others("D:(D;;GA;;;WD)(A;;FA;;;SY)"), None);
    }
}
