//! Names the host accepts for plugins, versions and job ids: short, plain
//! ASCII, never a path (no `/`, no `..`), so that none can reach outside
//! the data dir or confuse a URL.

use super::ServiceError;
use std::cmp::Ordering;

/// The longest name or version.
const MAX_LEN: usize = 64;

/// Letters, digits, `-` and `_`, then also `.` after the first character.
pub fn check_name(what: &str, name: &str) -> Result<(), ServiceError> {
    check(what, name, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A version: as a name, with `+` too (semver build metadata).
pub fn check_version(what: &str, version: &str) -> Result<(), ServiceError> {
    check(what, version, |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

fn check(what: &str, text: &str, allowed: impl Fn(char) -> bool) -> Result<(), ServiceError> {
    let refuse = |why: &str| Err(ServiceError::BadRequest(format!("{what} {text:?} {why}")));
    if text.is_empty() || text.len() > MAX_LEN {
        return refuse(&format!("must be 1 to {MAX_LEN} characters long"));
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return refuse("must start with a letter or a digit");
    }
    if !text.chars().all(allowed) || text.contains("..") {
        return refuse("may hold only letters, digits, '-', '_' and '.' (and no '..')");
    }
    Ok(())
}

/// Orders versions by their dot-separated parts, numerically where both
/// parts are numbers (`0.10.0` is newer than `0.9.1`), as text otherwise.
pub fn newer(a: &str, b: &str) -> Ordering {
    let mut left = a.split(['.', '-', '+']);
    let mut right = b.split(['.', '-', '+']);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_odd_characters_are_refused() {
        for bad in ["", "../etc", "a/b", ".hidden", "a..b", "a b", "ünï", "a\\b", &"x".repeat(65)] {
            assert!(check_name("plugin", bad).is_err(), "{bad:?}");
        }
        for good in ["max-temperature", "max_temperature_agg", "p1.2"] {
            assert!(check_name("plugin", good).is_ok(), "{good:?}");
        }
        assert!(check_version("version", "1.2.3+build.4").is_ok());
        assert!(check_version("version", "1.2/3").is_err());
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert_eq!(newer("0.10.0", "0.9.1"), Ordering::Greater);
        assert_eq!(newer("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(newer("1.0", "1.0.1"), Ordering::Less);
    }
}
