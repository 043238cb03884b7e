//! Processing status codes (edXML / QCVN 102: 01–06, 13, 15, 16) and the rules for which
//! status may follow which, per (document, recipient) pair.
//!
//! The chain of statuses is what leaders and auditors read, so every transition is checked
//! by [`StatusChain::apply`], which says why a refused one is refused. The recipient moves
//! the document forward (01 arrived → 03 accepted → 04 assigned → 05 processing → 06
//! completed, or 02 rejected); the sender may ask to take it back or change it (13) at any
//! point before it is finished, and the recipient agrees (15) or refuses (16).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A two-character status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusCode {
    /// 01: the recipient's DMS has it; no clerk has handled it yet.
    Arrived,
    /// 02: rejected by the recipient (with a reason).
    Rejected,
    /// 03: accepted, registered in the incoming book.
    Accepted,
    /// 04: assigned to someone (named).
    Assigned,
    /// 05: being processed.
    Processing,
    /// 06: completed.
    Completed,
    /// 13: the sender asks to take the document back or change it (with a reason).
    RecallRequested,
    /// 15: the recipient agrees to the sender's request.
    RecallAgreed,
    /// 16: the recipient refuses the sender's request.
    RecallRefused,
}

/// Who is posting a status, relative to the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The document's sender.
    Sender,
    /// One of the document's recipients.
    Recipient,
}

/// Why a status was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("unknown status code {0:?}; expected one of 01-06, 13, 15, 16")]
    UnknownCode(String),
    #[error("status {code} may only be posted by the document's {expected}")]
    WrongParty {
        code: StatusCode,
        expected: &'static str,
    },
    #[error("status {to} cannot follow {from}: {why}")]
    Transition {
        from: Stage,
        to: StatusCode,
        why: &'static str,
    },
}

impl StatusCode {
    /// All codes, in numeric order.
    pub const ALL: [StatusCode; 9] = [
        Self::Arrived,
        Self::Rejected,
        Self::Accepted,
        Self::Assigned,
        Self::Processing,
        Self::Completed,
        Self::RecallRequested,
        Self::RecallAgreed,
        Self::RecallRefused,
    ];

    /// The two-character code (`"01"` … `"16"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Arrived => "01",
            Self::Rejected => "02",
            Self::Accepted => "03",
            Self::Assigned => "04",
            Self::Processing => "05",
            Self::Completed => "06",
            Self::RecallRequested => "13",
            Self::RecallAgreed => "15",
            Self::RecallRefused => "16",
        }
    }

    /// Parses a two-character code.
    pub fn parse(s: &str) -> Result<Self, StatusError> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| StatusError::UnknownCode(s.to_owned()))
    }

    /// A short English description (for tables and reports).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Arrived => "arrived",
            Self::Rejected => "rejected",
            Self::Accepted => "accepted",
            Self::Assigned => "assigned",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::RecallRequested => "recall or update requested",
            Self::RecallAgreed => "recall or update agreed",
            Self::RecallRefused => "recall or update refused",
        }
    }

    /// Which party may post this code.
    pub fn party(self) -> Party {
        match self {
            Self::RecallRequested => Party::Sender,
            _ => Party::Recipient,
        }
    }

    /// Whether the code must carry a reason (02, 13, 16) or an assignee (04).
    pub fn needs_detail(self) -> bool {
        matches!(
            self,
            Self::Rejected | Self::RecallRequested | Self::RecallRefused | Self::Assigned
        )
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StatusCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a (document, recipient) pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Sent; the recipient has not confirmed arrival.
    Sent,
    /// The recipient's last processing status.
    At(StatusCode),
    /// Taken back with the recipient's agreement (13 then 15): nothing may follow.
    Recalled,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sent => f.write_str("sent (no status yet)"),
            Self::At(code) => write!(f, "{code} ({})", code.describe()),
            Self::Recalled => f.write_str("recalled"),
        }
    }
}

/// The status history of one recipient's copy of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChain {
    /// The processing stage.
    pub stage: Stage,
    /// A 13 is waiting for the recipient's 15 or 16.
    pub request_pending: bool,
}

impl Default for StatusChain {
    fn default() -> Self {
        Self {
            stage: Stage::Sent,
            request_pending: false,
        }
    }
}

impl StatusChain {
    /// Checks that `party` may post `code` now and returns the chain after it.
    pub fn apply(&self, party: Party, code: StatusCode) -> Result<StatusChain, StatusError> {
        self.apply_with(party, code, true)
    }

    /// Like [`Self::apply`], for a copy of the chain kept by the *other* party: a pending
    /// request does not hold back the recipient's processing statuses, which the recipient
    /// may have posted before the request reached it (its own node checked them in its
    /// order). Arrival and processing still follow the normal order.
    pub fn apply_mirrored(
        &self,
        party: Party,
        code: StatusCode,
    ) -> Result<StatusChain, StatusError> {
        self.apply_with(party, code, false)
    }

    fn apply_with(
        &self,
        party: Party,
        code: StatusCode,
        request_blocks: bool,
    ) -> Result<StatusChain, StatusError> {
        use StatusCode::*;
        if code.party() != party {
            let expected = if code.party() == Party::Sender {
                "sender"
            } else {
                "recipient"
            };
            return Err(StatusError::WrongParty { code, expected });
        }
        let refuse = |why| {
            Err(StatusError::Transition {
                from: self.stage,
                to: code,
                why,
            })
        };
        if self.stage == Stage::Recalled {
            return refuse("the document was recalled");
        }
        let current = match self.stage {
            Stage::At(c) => Some(c),
            _ => None,
        };
        let finished = matches!(current, Some(Rejected | Completed));
        let next = |stage| {
            Ok(StatusChain {
                stage,
                request_pending: self.request_pending,
            })
        };
        match code {
            RecallRequested if self.request_pending => {
                refuse("a request is already waiting for an answer")
            }
            RecallRequested if finished => {
                refuse("the recipient has already finished with the document")
            }
            RecallRequested => Ok(StatusChain {
                stage: self.stage,
                request_pending: true,
            }),
            RecallAgreed | RecallRefused if !self.request_pending => {
                refuse("the sender has not asked (13)")
            }
            RecallAgreed => Ok(StatusChain {
                stage: Stage::Recalled,
                request_pending: false,
            }),
            RecallRefused => Ok(StatusChain {
                stage: self.stage,
                request_pending: false,
            }),
            Arrived if self.request_pending => match current {
                None => next(Stage::At(Arrived)),
                Some(_) => refuse("arrival was already confirmed"),
            },
            _ if self.request_pending && request_blocks => {
                refuse("answer the sender's request (15 or 16) first")
            }
            Arrived => match current {
                None => next(Stage::At(Arrived)),
                Some(_) => refuse("arrival was already confirmed"),
            },
            Rejected => match current {
                Some(Arrived) => next(Stage::At(Rejected)),
                None => refuse("confirm arrival (01) first"),
                Some(_) => refuse(
                    "only a document that has arrived but is not yet accepted can be rejected",
                ),
            },
            Accepted => match current {
                Some(Arrived) => next(Stage::At(Accepted)),
                None => refuse("confirm arrival (01) first"),
                Some(_) => refuse("the document was already accepted or rejected"),
            },
            Assigned => match current {
                Some(Accepted | Assigned) => next(Stage::At(Assigned)),
                _ => refuse("only an accepted document can be assigned"),
            },
            Processing => match current {
                Some(Accepted | Assigned) => next(Stage::At(Processing)),
                _ => refuse("only an accepted or assigned document can be in processing"),
            },
            Completed => match current {
                Some(Accepted | Assigned | Processing) => next(Stage::At(Completed)),
                Some(Completed) => refuse("already completed"),
                _ => refuse("only an accepted document can be completed"),
            },
        }
    }
}

/// Longest reason or assignee in a [`StatusDetail`], in bytes.
pub const MAX_DETAIL_TEXT: usize = 2048;

/// The detail of a status: the plaintext of a status envelope's sealed inline payload
/// (deterministic CBOR), readable only by the other party. Codes and references stay in the
/// clear routing fields; reasons and assignees are sealed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusDetail {
    /// Why (02 rejected, 13 recall or update requested, 16 refused; optional otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// To whom (04 assigned only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

/// Why a status detail was refused; `field` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailError {
    #[error("status detail field `{field}`: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error(transparent)]
    Encoding(#[from] crate::cbor::CborError),
}

impl StatusDetail {
    /// Whether there is nothing to seal.
    pub fn is_empty(&self) -> bool {
        self.reason.is_none() && self.assignee.is_none()
    }

    /// Checks the detail against the code it goes with: 02, 13 and 16 need a reason, 04 an
    /// assignee, only 04 may name one, and each text is 1 to [`MAX_DETAIL_TEXT`] bytes.
    pub fn validate(&self, code: StatusCode) -> Result<(), DetailError> {
        let bad = |field, problem: &str| {
            Err(DetailError::Field {
                field,
                problem: problem.to_owned(),
            })
        };
        for (field, text) in [("reason", &self.reason), ("assignee", &self.assignee)] {
            if let Some(text) = text
                && (text.trim().is_empty() || text.len() > MAX_DETAIL_TEXT)
            {
                return Err(DetailError::Field {
                    field,
                    problem: format!("must be 1 to {MAX_DETAIL_TEXT} bytes of text"),
                });
            }
        }
        match code {
            StatusCode::Assigned if self.assignee.is_none() => {
                bad("assignee", "status 04 names the assignee")
            }
            StatusCode::Assigned => Ok(()),
            _ if self.assignee.is_some() => bad("assignee", "only status 04 names an assignee"),
            StatusCode::Rejected | StatusCode::RecallRequested | StatusCode::RecallRefused
                if self.reason.is_none() =>
            {
                bad("reason", "statuses 02, 13 and 16 give a reason")
            }
            _ => Ok(()),
        }
    }

    /// The plaintext to seal: deterministic CBOR.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DetailError> {
        Ok(crate::cbor::to_canonical(self)?)
    }

    /// Decodes an opened status payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DetailError> {
        Ok(crate::cbor::from_canonical(
            bytes,
            2 * MAX_DETAIL_TEXT + 64,
        )?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::StatusCode::*;
    use super::*;

    fn run(steps: &[(Party, StatusCode)]) -> Result<StatusChain, StatusError> {
        steps
            .iter()
            .try_fold(StatusChain::default(), |chain, (p, c)| chain.apply(*p, *c))
    }

    const R: Party = Party::Recipient;
    const S: Party = Party::Sender;

    #[test]
    fn the_normal_path_and_its_shortcuts() {
        let full = run(&[
            (R, Arrived),
            (R, Accepted),
            (R, Assigned),
            (R, Assigned),
            (R, Processing),
            (R, Completed),
        ]);
        assert_eq!(full.unwrap().stage, Stage::At(Completed));
        assert_eq!(
            run(&[(R, Arrived), (R, Accepted), (R, Completed)])
                .unwrap()
                .stage,
            Stage::At(Completed)
        );
        assert_eq!(
            run(&[(R, Arrived), (R, Rejected)]).unwrap().stage,
            Stage::At(Rejected)
        );
    }

    #[test]
    fn refusals_say_why() {
        let err = run(&[(R, Accepted)]).unwrap_err().to_string();
        assert!(err.contains("confirm arrival"), "{err}");
        let err = run(&[(R, Arrived), (R, Arrived)]).unwrap_err().to_string();
        assert!(err.contains("already confirmed"), "{err}");
        let err = run(&[(R, Arrived), (R, Accepted), (R, Rejected)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not yet accepted"), "{err}");
        let err = run(&[(R, Arrived), (R, Accepted), (R, Completed), (R, Processing)]).unwrap_err();
        assert!(matches!(
            err,
            StatusError::Transition {
                from: Stage::At(Completed),
                to: Processing,
                ..
            }
        ));
        assert!(matches!(
            run(&[(S, Arrived)]),
            Err(StatusError::WrongParty { .. })
        ));
        assert!(matches!(
            run(&[(R, RecallRequested)]),
            Err(StatusError::WrongParty { .. })
        ));
    }

    #[test]
    fn recall_flow() {
        let recalled = run(&[(R, Arrived), (S, RecallRequested), (R, RecallAgreed)]).unwrap();
        assert_eq!(recalled.stage, Stage::Recalled);
        assert!(recalled.apply(R, Accepted).is_err());
        assert!(recalled.apply(S, RecallRequested).is_err());
        let refused = run(&[(S, RecallRequested), (R, RecallRefused)]).unwrap();
        assert_eq!(refused, StatusChain::default());
        let err = run(&[(R, Arrived), (S, RecallRequested), (R, Accepted)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("answer the sender's request"), "{err}");
        // Arrival is a fact, whatever is pending; the other party's copy lets processing
        // through too (the recipient posted it before the request reached it).
        let pending = run(&[(S, RecallRequested)]).unwrap();
        assert_eq!(pending.apply(R, Arrived).unwrap().stage, Stage::At(Arrived));
        let arrived = pending.apply(R, Arrived).unwrap();
        assert!(arrived.apply(R, Accepted).is_err());
        let mirrored = arrived.apply_mirrored(R, Accepted).unwrap();
        assert_eq!(
            mirrored,
            StatusChain {
                stage: Stage::At(Accepted),
                request_pending: true
            }
        );
        assert!(run(&[(R, RecallAgreed)]).is_err());
        assert!(run(&[(S, RecallRequested), (S, RecallRequested)]).is_err());
        assert!(
            run(&[
                (R, Arrived),
                (R, Accepted),
                (R, Completed),
                (S, RecallRequested)
            ])
            .is_err()
        );
    }

    #[test]
    fn details_fit_their_codes_and_round_trip() {
        let reason = StatusDetail {
            reason: Some("sai thể thức".into()),
            assignee: None,
        };
        assert!(reason.validate(Rejected).is_ok());
        assert!(StatusDetail::default().validate(Rejected).is_err());
        assert!(StatusDetail::default().validate(Accepted).is_ok());
        assert!(reason.validate(Assigned).is_err());
        let assignee = StatusDetail {
            reason: None,
            assignee: Some("Nguyễn Văn A".into()),
        };
        assert!(assignee.validate(Assigned).is_ok());
        assert!(assignee.validate(Processing).is_err());
        let long = StatusDetail {
            reason: Some("x".repeat(MAX_DETAIL_TEXT + 1)),
            assignee: None,
        };
        assert!(long.validate(RecallRequested).is_err());
        let bytes = reason.to_bytes().unwrap();
        assert_eq!(StatusDetail::from_bytes(&bytes).unwrap(), reason);
    }

    #[test]
    fn codes_round_trip() {
        for code in StatusCode::ALL {
            assert_eq!(StatusCode::parse(code.as_str()).unwrap(), code);
        }
        assert_eq!(
            StatusCode::parse("07"),
            Err(StatusError::UnknownCode("07".into()))
        );
    }
}
