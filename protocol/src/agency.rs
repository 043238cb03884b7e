//! Agency identifiers: the national electronic agency code of edXML (`NNN.NN.NN.XNN`) and
//! the few other forms that only the roster may admit.
//!
//! The code is read right to left (DESIGN §3): level 1 is a letter and two digits (`G22`),
//! then two digits for level 2, two for level 3 and three for level 4. `000.46.24.H44` is a
//! level-3 unit whose parent is `000.00.24.H44`, whose parent is `000.00.00.H44`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest identifier accepted in any form, in bytes.
pub const MAX_AGENCY_ID_LEN: usize = 32;

/// Why a string is not an agency id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgencyIdError {
    #[error("agency id is empty")]
    Empty,
    #[error("agency id is {len} bytes long; the limit is {MAX_AGENCY_ID_LEN}")]
    TooLong { len: usize },
    #[error(
        "agency id {id:?} is not an edXML agency code `NNN.NN.NN.XNN` ({reason}) and not an admitted other form"
    )]
    NotEdxml { id: String, reason: &'static str },
    #[error(
        "agency id {id:?} has characters outside [A-Za-z0-9.-]; other forms may use only those"
    )]
    BadCharacters { id: String },
}

/// A validated agency identifier.
///
/// Either an edXML agency code (the usual case; its hierarchy is derivable) or an "other
/// form" such as a 12-digit enterprise id, which is syntactically valid but is honoured only
/// when the roster lists it (see [`crate::roster`]).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgencyId(String);

/// The parsed segments of an edXML agency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdxmlCode {
    /// Level 4 segment (three digits).
    pub level4: u16,
    /// Level 3 segment (two digits).
    pub level3: u8,
    /// Level 2 segment (two digits).
    pub level2: u8,
    /// Level 1 letter (`G` ministries and central bodies, `H` provinces, `A` Party bodies…).
    pub letter: char,
    /// Level 1 number (two digits).
    pub number: u8,
}

impl EdxmlCode {
    /// Parses the strict edXML shape `NNN.NN.NN.XNN`.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b = s.as_bytes();
        if b.len() != 13 {
            return Err("expected 13 characters");
        }
        let dots_ok = b.get(3) == Some(&b'.') && b.get(6) == Some(&b'.') && b.get(9) == Some(&b'.');
        if !dots_ok {
            return Err("expected dots at positions 4, 7 and 10");
        }
        let digits = |range: std::ops::Range<usize>| -> Result<u16, &'static str> {
            let part = b.get(range).ok_or("segment missing")?;
            part.iter().try_fold(0u16, |acc, &c| {
                if c.is_ascii_digit() {
                    Ok(acc * 10 + u16::from(c - b'0'))
                } else {
                    Err("expected digits in levels 2 to 4")
                }
            })
        };
        let level4 = digits(0..3)?;
        let level3 = u8::try_from(digits(4..6)?).map_err(|_| "level 3 out of range")?;
        let level2 = u8::try_from(digits(7..9)?).map_err(|_| "level 2 out of range")?;
        let letter = char::from(*b.get(10).ok_or("level 1 missing")?);
        if !letter.is_ascii_uppercase() {
            return Err("level 1 must start with an uppercase letter");
        }
        let number = u8::try_from(digits(11..13)?).map_err(|_| "level 1 out of range")?;
        if level2 == 0 && level3 != 0 {
            return Err("level 3 is set but level 2 is 000");
        }
        if level3 == 0 && level4 != 0 {
            return Err("level 4 is set but level 3 is 00");
        }
        Ok(Self {
            level4,
            level3,
            level2,
            letter,
            number,
        })
    }

    /// Administrative depth: 1 for a top-level unit (`000.00.00.H44`) to 4.
    pub fn level(&self) -> u8 {
        if self.level4 != 0 {
            4
        } else if self.level3 != 0 {
            3
        } else if self.level2 != 0 {
            2
        } else {
            1
        }
    }

    /// The parent unit's code (the lowest non-zero segment cleared), none at level 1.
    pub fn parent(&self) -> Option<Self> {
        match self.level() {
            4 => Some(Self { level4: 0, ..*self }),
            3 => Some(Self { level3: 0, ..*self }),
            2 => Some(Self { level2: 0, ..*self }),
            _ => None,
        }
    }

    /// The top-level unit, e.g. `H44`: the gossip topic of its whole subtree.
    pub fn top_level_unit(&self) -> String {
        format!("{}{:02}", self.letter, self.number)
    }
}

impl fmt::Display for EdxmlCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:03}.{:02}.{:02}.{}{:02}",
            self.level4, self.level3, self.level2, self.letter, self.number
        )
    }
}

impl AgencyId {
    /// Parses an edXML agency code; other forms are refused (use [`AgencyId::parse_any`] where
    /// the roster decides).
    pub fn parse(s: &str) -> Result<Self, AgencyIdError> {
        check_len(s)?;
        EdxmlCode::parse(s)
            .map(|_| Self(s.to_owned()))
            .map_err(|reason| AgencyIdError::NotEdxml {
                id: s.to_owned(),
                reason,
            })
    }

    /// Parses an edXML code or a syntactically valid other form (`[A-Za-z0-9.-]`, at most
    /// [`MAX_AGENCY_ID_LEN`] bytes). Whether an other form may act is the roster's decision.
    pub fn parse_any(s: &str) -> Result<Self, AgencyIdError> {
        check_len(s)?;
        if EdxmlCode::parse(s).is_ok() {
            return Ok(Self(s.to_owned()));
        }
        if s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(AgencyIdError::BadCharacters { id: s.to_owned() })
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The edXML structure, if this id has the edXML shape.
    pub fn edxml(&self) -> Option<EdxmlCode> {
        EdxmlCode::parse(&self.0).ok()
    }

    /// Administrative level derived from the code (none for other forms).
    pub fn level(&self) -> Option<u8> {
        self.edxml().map(|c| c.level())
    }

    /// The parent agency derived from the code (none at level 1 and for other forms).
    pub fn parent(&self) -> Option<AgencyId> {
        self.edxml()
            .and_then(|c| c.parent())
            .map(|p| AgencyId(p.to_string()))
    }

    /// The top-level unit (`H44`); other forms use themselves as their own unit.
    pub fn top_level_unit(&self) -> String {
        self.edxml()
            .map(|c| c.top_level_unit())
            .unwrap_or_else(|| self.0.clone())
    }
}

fn check_len(s: &str) -> Result<(), AgencyIdError> {
    if s.is_empty() {
        Err(AgencyIdError::Empty)
    } else if s.len() > MAX_AGENCY_ID_LEN {
        Err(AgencyIdError::TooLong { len: s.len() })
    } else {
        Ok(())
    }
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyId({})", self.0)
    }
}

impl FromStr for AgencyId {
    type Err = AgencyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_any(s)
    }
}

impl Serialize for AgencyId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AgencyId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_any(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn levels_parents_and_units() {
        let id = AgencyId::parse("000.46.24.H44").unwrap();
        assert_eq!(id.level(), Some(3));
        let parent = id.parent().unwrap();
        assert_eq!(parent.as_str(), "000.00.24.H44");
        assert_eq!(parent.parent().unwrap().as_str(), "000.00.00.H44");
        assert_eq!(parent.parent().unwrap().parent(), None);
        assert_eq!(id.top_level_unit(), "H44");
        let office = AgencyId::parse("000.00.00.G22").unwrap();
        assert_eq!(office.level(), Some(1));
        let commune = AgencyId::parse("123.46.24.H44").unwrap();
        assert_eq!(commune.level(), Some(4));
        assert_eq!(commune.parent().unwrap().as_str(), "000.46.24.H44");
    }

    #[test]
    fn refuses_malformed_codes_with_reasons() {
        for (bad, why) in [
            ("000.00.00.h44", "uppercase"),
            ("000.00.00.G2", "13 characters"),
            ("000-00.00.G22", "dots"),
            ("0a0.00.00.G22", "digits"),
            ("000.46.00.H44", "level 3 is set"),
            ("001.00.24.H44", "level 4 is set"),
        ] {
            let err = AgencyId::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(AgencyId::parse(""), Err(AgencyIdError::Empty));
        assert!(matches!(
            AgencyId::parse(&"1".repeat(40)),
            Err(AgencyIdError::TooLong { len: 40 })
        ));
    }

    #[test]
    fn other_forms_only_through_parse_any() {
        assert!(AgencyId::parse("010203040506").is_err());
        let ent = AgencyId::parse_any("010203040506").unwrap();
        assert_eq!(ent.edxml(), None);
        assert_eq!(ent.top_level_unit(), "010203040506");
        assert!(matches!(
            AgencyId::parse_any("a b"),
            Err(AgencyIdError::BadCharacters { .. })
        ));
    }
}
