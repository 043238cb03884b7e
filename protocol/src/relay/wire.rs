//! The node-to-node relay messages (direct push, receipts, custody hand-off) and their
//! bounded, canonical encoding. The transport (libp2p request-response in the node, an
//! in-memory network in the simulator) carries these bytes; gossip carries bare envelopes.

use serde::{Deserialize, Serialize};

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::content_id::ContentId;
use crate::envelope::MAX_ENVELOPE_LEN;

/// Largest encoded relay message: an envelope plus its receipts and framing.
pub const MAX_WIRE_LEN: usize = MAX_ENVELOPE_LEN + 16 * 1024;
/// Most receipts in one acknowledgement (one per tenant hosted on the answering node).
pub const MAX_RECEIPTS: usize = 256;
/// Longest refusal reason, in bytes.
pub const MAX_REASON: usize = 512;

/// What one hosted recipient (or custodian) says about a pushed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Receipt {
    /// Stored durably and delivered to the recipient's inbox; for documents, `status` is the
    /// recipient's signed 01 (arrived) status envelope.
    Arrived {
        recipient: AgencyId,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
        status: Option<Vec<u8>>,
    },
    /// Already delivered earlier (the answering node hosts `recipient`, so its word is
    /// authenticated by the transport); nothing new happened.
    Duplicate { recipient: AgencyId },
    /// Not delivered now; try again later (payload still being fetched, busy, unknown
    /// earlier document).
    Retry { recipient: AgencyId, reason: String },
    /// Will never be delivered (revoked sender or recipient, expired, invalid).
    Refused { recipient: AgencyId, reason: String },
}

impl Receipt {
    /// The agency the receipt is about.
    pub fn recipient(&self) -> &AgencyId {
        match self {
            Self::Arrived { recipient, .. }
            | Self::Duplicate { recipient }
            | Self::Retry { recipient, .. }
            | Self::Refused { recipient, .. } => recipient,
        }
    }
}

mod opt_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_bytes(bytes),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Some(serde_bytes::ByteBuf::deserialize(d)?.into_vec()))
    }
}

/// One relay message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Wire {
    /// Deliver this envelope to the recipients hosted on the receiving node.
    Push {
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
    },
    /// The answer to a push.
    PushAck {
        id: ContentId,
        receipts: Vec<Receipt>,
    },
    /// Hold this envelope (and fetch its payload) for `recipients` until they confirm.
    Custody {
        #[serde(with = "serde_bytes")]
        envelope: Vec<u8>,
        recipients: Vec<AgencyId>,
    },
    /// The answer to a custody request: which recipients the custodian now holds it for.
    CustodyAck {
        id: ContentId,
        accepted: Vec<AgencyId>,
        refused: Option<String>,
    },
}

/// Why relay message bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Encoding(#[from] CborError),
    #[error("relay message field `{field}`: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
}

impl Wire {
    /// Encodes as deterministic CBOR.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        Ok(cbor::to_canonical(self)?)
    }

    /// Decodes untrusted bytes, enforcing every limit.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let msg: Self = cbor::from_canonical(bytes, MAX_WIRE_LEN)?;
        let bad = |field, problem: String| Err(WireError::Field { field, problem });
        match &msg {
            Self::Push { envelope } | Self::Custody { envelope, .. }
                if envelope.len() > MAX_ENVELOPE_LEN =>
            {
                return bad(
                    "envelope",
                    format!("{} bytes; the limit is {MAX_ENVELOPE_LEN}", envelope.len()),
                );
            }
            Self::PushAck { receipts, .. } if receipts.len() > MAX_RECEIPTS => {
                return bad(
                    "receipts",
                    format!("{} receipts; the limit is {MAX_RECEIPTS}", receipts.len()),
                );
            }
            Self::Custody { recipients, .. }
            | Self::CustodyAck {
                accepted: recipients,
                ..
            } if recipients.len() > crate::envelope::MAX_RECIPIENTS => {
                return bad(
                    "recipients",
                    format!("more than {} recipients", crate::envelope::MAX_RECIPIENTS),
                );
            }
            _ => {}
        }
        let reasons: Vec<&String> = match &msg {
            Self::PushAck { receipts, .. } => receipts
                .iter()
                .filter_map(|r| match r {
                    Receipt::Retry { reason, .. } | Receipt::Refused { reason, .. } => Some(reason),
                    _ => None,
                })
                .collect(),
            Self::CustodyAck {
                refused: Some(reason),
                ..
            } => vec![reason],
            _ => vec![],
        };
        if reasons.iter().any(|r| r.len() > MAX_REASON) {
            return bad("reason", format!("longer than {MAX_REASON} bytes"));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let r = AgencyId::parse("000.00.00.H41").unwrap();
        let msgs = [
            Wire::Push {
                envelope: vec![1, 2, 3],
            },
            Wire::PushAck {
                id: ContentId([3; 32]),
                receipts: vec![
                    Receipt::Arrived {
                        recipient: r.clone(),
                        status: Some(vec![9; 10]),
                    },
                    Receipt::Arrived {
                        recipient: r.clone(),
                        status: None,
                    },
                    Receipt::Duplicate {
                        recipient: r.clone(),
                    },
                    Receipt::Retry {
                        recipient: r.clone(),
                        reason: "busy".into(),
                    },
                ],
            },
            Wire::Custody {
                envelope: vec![4],
                recipients: vec![r.clone()],
            },
            Wire::CustodyAck {
                id: ContentId([1; 32]),
                accepted: vec![r.clone()],
                refused: None,
            },
        ];
        for m in msgs {
            assert_eq!(Wire::decode(&m.to_bytes().unwrap()).unwrap(), m);
        }
        let long = Wire::PushAck {
            id: ContentId([3; 32]),
            receipts: vec![Receipt::Refused {
                recipient: r,
                reason: "x".repeat(MAX_REASON + 1),
            }],
        };
        assert!(matches!(
            Wire::decode(&long.to_bytes().unwrap()),
            Err(WireError::Field {
                field: "reason",
                ..
            })
        ));
        let big = Wire::Push {
            envelope: vec![0; MAX_WIRE_LEN],
        };
        assert!(Wire::decode(&big.to_bytes().unwrap()).is_err());
    }
}
