//! The Redis keys of a lock key: `<prefix>{<tag>}` (the lease) and `<prefix>{<tag>}:fence`.
//!
//! The hash tag `<tag>` is the key's `Display` output, escaped so that it is never empty and
//! never contains a brace (Redis hashes only what lies between the first `{` and the next
//! `}`, and ignores an empty tag): `\` becomes `\\`, `{` becomes `\(`, `}` becomes `\)`, and
//! the empty key is written `\e`. The escaping is injective: distinct keys get distinct
//! Redis keys, and both Redis keys of one lock key always share one Cluster slot.

use std::fmt::{self, Display, Write as _};

/// The escaped hash tag of `key` (see the module docs).
pub(crate) fn tag(key: &dyn Display) -> String {
    struct Escaper(String);
    impl fmt::Write for Escaper {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                match c {
                    '\\' => self.0.push_str("\\\\"),
                    '{' => self.0.push_str("\\("),
                    '}' => self.0.push_str("\\)"),
                    c => self.0.push(c),
                }
            }
            Ok(())
        }
    }
    let mut out = Escaper(String::new());
    // Writing into a `String` cannot fail; a `Display` impl that returns an error anyway
    // leaves what it wrote so far.
    let _ = write!(out, "{key}");
    if out.0.is_empty() {
        return "\\e".to_owned();
    }
    out.0
}

/// The lease key of `key` under `prefix`.
pub(crate) fn lease_key(prefix: &str, key: &dyn Display) -> String {
    format!("{prefix}{{{}}}", tag(key))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn plain_keys_are_unchanged() {
        assert_eq!(lease_key("p:", &42), "p:{42}");
        assert_eq!(lease_key("p:", &"user:1"), "p:{user:1}");
    }

    #[test]
    fn braces_backslashes_and_the_empty_key_are_escaped() {
        assert_eq!(tag(&""), "\\e");
        assert_eq!(tag(&"}x"), "\\)x");
        assert_eq!(tag(&"x}"), "x\\)");
        assert_eq!(tag(&"a{b}c"), "a\\(b\\)c");
        assert_eq!(tag(&"\\"), "\\\\");
        assert_eq!(tag(&"\\e"), "\\\\e");
        assert_eq!(lease_key("p:", &""), "p:{\\e}");
    }

    #[test]
    fn the_tag_is_never_empty_and_holds_no_brace() {
        for key in ["", "{", "}", "{}", "}{", "\\", "x", "\\(", "\\)"] {
            let tag = tag(&key);
            assert!(!tag.is_empty(), "{key:?}");
            assert!(!tag.contains(['{', '}']), "{key:?} -> {tag:?}");
        }
    }

    /// Every string over an alphabet of the special characters (and two plain ones), up to
    /// length 4, gets its own tag.
    #[test]
    fn distinct_keys_get_distinct_tags() {
        let alphabet = ['\\', '{', '}', '(', ')', 'e'];
        let mut keys = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for k in &frontier {
                for c in alphabet {
                    let mut k = k.clone();
                    k.push(c);
                    next.push(k);
                }
            }
            keys.extend(next.iter().cloned());
            frontier = next;
        }
        let tags: HashSet<String> = keys.iter().map(|k| tag(k)).collect();
        assert_eq!(tags.len(), keys.len());
    }
}
