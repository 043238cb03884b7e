//! Agency identifiers: the national electronic agency code of edXML (`NNN.NN.NN.XNN`) and
//! the few other forms that only the roster may admit.
//!
//! The code is read right to left (DESIGN §3): level 1 is a letter and two digits (`G22`),
//! then two digits for level 2, two for level 3 and three for level 4. `000.46.24.H44` is a
//! level-3 unit whose parent is `000.00.24.H44`, whose parent is `000.00.00.H44`.

use std::fmt;
use std::str::FromStr;

use arrayvec::ArrayString;
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
///
/// Held inline (at most [`MAX_AGENCY_ID_LEN`] bytes), not on the heap: ids are copied into
/// every pending delivery, timer and map key of the relay, many times per document sent,
/// and a heap copy each time was a measurable share of the relay thread. It orders, hashes
/// and compares as the string it is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgencyId(ArrayString<MAX_AGENCY_ID_LEN>);

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
        let inline = inline(s)?;
        EdxmlCode::parse(s)
            .map(|_| Self(inline))
            .map_err(|reason| AgencyIdError::NotEdxml {
                id: s.to_owned(),
                reason,
            })
    }

    /// Parses an edXML code or a syntactically valid other form (`[A-Za-z0-9.-]`, at most
    /// [`MAX_AGENCY_ID_LEN`] bytes). Whether an other form may act is the roster's decision.
    pub fn parse_any(s: &str) -> Result<Self, AgencyIdError> {
        let inline = inline(s)?;
        if EdxmlCode::parse(s).is_ok() {
            return Ok(Self(inline));
        }
        if s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        {
            Ok(Self(inline))
        } else {
            Err(AgencyIdError::BadCharacters { id: s.to_owned() })
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The edXML structure, if this id has the edXML shape.
    pub fn edxml(&self) -> Option<EdxmlCode> {
        EdxmlCode::parse(self.as_str()).ok()
    }

    /// Administrative level derived from the code (none for other forms).
    pub fn level(&self) -> Option<u8> {
        self.edxml().map(|c| c.level())
    }

    /// The parent agency derived from the code (none at level 1 and for other forms).
    pub fn parent(&self) -> Option<AgencyId> {
        self.edxml()
            .and_then(|c| c.parent())
            .and_then(|p| ArrayString::from(&p.to_string()).ok())
            .map(AgencyId)
    }

    /// The top-level unit (`H44`); other forms use themselves as their own unit.
    pub fn top_level_unit(&self) -> String {
        self.edxml()
            .map(|c| c.top_level_unit())
            .unwrap_or_else(|| self.0.to_string())
    }
}

/// `s` held inline, if its length is allowed.
fn inline(s: &str) -> Result<ArrayString<MAX_AGENCY_ID_LEN>, AgencyIdError> {
    if s.is_empty() {
        return Err(AgencyIdError::Empty);
    }
    ArrayString::from(s).map_err(|_| AgencyIdError::TooLong { len: s.len() })
}

impl fmt::Display for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for AgencyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyId({})", self.as_str())
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
        s.serialize_str(self.as_str())
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

    #[test]
    fn held_inline_it_orders_and_hashes_as_its_string() {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        let longest = "a".repeat(MAX_AGENCY_ID_LEN);
        let texts = [
            "000.00.00.H41",
            "000.00.01.G07",
            "000.46.24.H44",
            "010203040506",
            "010203040506-x",
            longest.as_str(),
        ];
        let ids: Vec<AgencyId> = texts
            .iter()
            .map(|t| AgencyId::parse_any(t).unwrap())
            .collect();
        let hasher = RandomState::new();
        for (a, ta) in ids.iter().zip(texts) {
            assert_eq!(a.as_str(), ta);
            assert_eq!(hasher.hash_one(a), hasher.hash_one(ta));
            for (b, tb) in ids.iter().zip(texts) {
                assert_eq!(a.cmp(b), ta.cmp(tb), "{ta} against {tb}");
            }
        }
        assert!(matches!(
            AgencyId::parse_any(&"a".repeat(MAX_AGENCY_ID_LEN + 1)),
            Err(AgencyIdError::TooLong { len: 33 })
        ));
    }
}
