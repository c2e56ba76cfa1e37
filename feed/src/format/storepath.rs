//! Store paths: `/nix/store/<32 nix32 digits>-<name>`.

use std::fmt;

use super::nixbase32;

/// The only store directory hypernar serves; the upstream caches it mirrors use it too.
pub const STORE_DIR: &str = "/nix/store";
/// Length of the hash part of a store path, in nix32 digits (160 bits).
pub const HASH_LEN: usize = 32;
/// Nix's limit on the name part.
pub const MAX_NAME_LEN: usize = 211;

/// A validated store path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath(String);

/// Why a string is not a store path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("{0:?} is not under {STORE_DIR}/")]
    NotInStore(String),
    #[error("{0:?} has a malformed hash part")]
    Hash(String),
    #[error("{0:?} has an invalid name part")]
    Name(String),
}

impl StorePath {
    /// Parses an absolute store path.
    pub fn parse(s: &str) -> Result<Self, StorePathError> {
        let base = s
            .strip_prefix(STORE_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(s.to_owned()))?;
        Self::from_base_name(base).map_err(|e| match e {
            StorePathError::Hash(_) => StorePathError::Hash(s.to_owned()),
            StorePathError::Name(_) => StorePathError::Name(s.to_owned()),
            other => other,
        })
    }

    /// Parses `<hash>-<name>` (the form used in `References:`).
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        let bad_hash = || StorePathError::Hash(base.to_owned());
        if base.len() < HASH_LEN + 2 || base.as_bytes()[HASH_LEN] != b'-' {
            return Err(bad_hash());
        }
        let (hash, name) = (&base[..HASH_LEN], &base[HASH_LEN + 1..]);
        nixbase32::decode::<20>(hash).map_err(|_| bad_hash())?;
        let name_ok = name.len() <= MAX_NAME_LEN
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c));
        if !name_ok {
            return Err(StorePathError::Name(base.to_owned()));
        }
        Ok(StorePath(format!("{STORE_DIR}/{base}")))
    }

    /// The full path, `/nix/store/<hash>-<name>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<hash>-<name>`.
    pub fn base_name(&self) -> &str {
        &self.0[STORE_DIR.len() + 1..]
    }

    /// The 32-digit hash part, which names the narinfo (`<hash>.narinfo`).
    pub fn hash_part(&self) -> &str {
        &self.base_name()[..HASH_LEN]
    }

    /// The name part after the dash.
    pub fn name(&self) -> &str {
        &self.base_name()[HASH_LEN + 1..]
    }
}

/// Checks a bare hash part (as in `<hash>.narinfo`).
pub fn is_hash_part(s: &str) -> bool {
    s.len() == HASH_LEN && nixbase32::decode::<20>(s).is_ok()
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.0)
    }
}

impl serde::Serialize for StorePath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.base_name())
    }
}

impl<'de> serde::Deserialize<'de> for StorePath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StorePath::from_base_name(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_splits() {
        let p = StorePath::parse("/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a").unwrap();
        assert_eq!(p.hash_part(), "dvy33zhzyzyqssgblsj9zn6xikj3y7w8");
        assert_eq!(p.name(), "hn-a");
        assert_eq!(p.base_name(), "dvy33zhzyzyqssgblsj9zn6xikj3y7w8-hn-a");
        assert_eq!(StorePath::from_base_name(p.base_name()).unwrap(), p);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "/nix/store/",
            "/tmp/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a",
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8",
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-",
            "/nix/store/evy33zhzyzyqssgblsj9zn6xikj3y7w8-a",
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-.hidden",
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a/b",
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-a b",
            "/nix/store/../etc/passwd-dvy33zhzyzyqssgblsj9zn6xikj3y7",
        ] {
            assert!(StorePath::parse(bad).is_err(), "{bad} accepted");
        }
        let long = format!(
            "/nix/store/dvy33zhzyzyqssgblsj9zn6xikj3y7w8-{}",
            "a".repeat(212)
        );
        assert!(StorePath::parse(&long).is_err());
    }
}
