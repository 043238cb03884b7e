//! The relay's durable key space: column families and the batches of writes the relay core
//! asks for. The core never touches storage; it returns [`Batch`]es in
//! `Action::Persist` and learns they are durable from `Event::Committed`. The node writes
//! them to RocksDB (one synced `WriteBatch`, grouped); the simulator keeps them in memory
//! and drops uncommitted batches on a simulated crash.
//!
//! Batches commit in the order they were issued, so a committed batch implies every earlier
//! one committed too.

/// A column family. Keys are byte strings whose layout is documented per column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// content id (32) → signed envelope bytes. Everything this node holds or sent.
    Envelopes,
    /// content id (32) ‖ recipient → `DeliveryRecord` (CBOR): envelopes this node must get
    /// acknowledged (its tenants' outbox, and custody it accepted for others).
    Deliveries,
    /// tenant ‖ 0x00 ‖ inbox position (u64 BE) → content id: each tenant's inbox, in order.
    Inbox,
    /// content id (32) → `SeenRecord` (CBOR): envelopes received for local tenants (dedupe),
    /// with the 01 statuses they were answered with.
    Seen,
    /// tenant → `ChainHead` (CBOR): a local tenant's last sequence number and envelope id.
    Chains,
    /// sender ‖ 0x00 ‖ seq (u64 BE) → content id: sequence numbers seen per sender (forks).
    SenderSeq,
    /// document id (32) ‖ recipient → `StatusRecord` (CBOR): the status chain per recipient.
    Statuses,
    /// sender ‖ 0x00 ‖ seq (u64 BE) → `Equivocation` (CBOR): two signed envelopes, same seq.
    Evidence,
    /// payload id (32) → sealed manifest bytes: external payloads held here.
    Payloads,
    /// chunk id (32) → ciphertext chunk: stored once however many payloads share it.
    Chunks,
    /// name → value: small node-wide values (roster, counters).
    Meta,
    /// central node name ‖ 0x00 ‖ content id (32) → ledger entry bytes: this node's own
    /// envelopes not yet proven included in that central node's log (written by the node in
    /// the same batch as the envelope; the relay core neither reads nor writes it).
    LedgerQueue,
}

impl Column {
    /// Every column, in a fixed order.
    pub const ALL: [Column; 12] = [
        Self::Envelopes,
        Self::Deliveries,
        Self::Inbox,
        Self::Seen,
        Self::Chains,
        Self::SenderSeq,
        Self::Statuses,
        Self::Evidence,
        Self::Payloads,
        Self::Chunks,
        Self::Meta,
        Self::LedgerQueue,
    ];

    /// The column family's name in RocksDB.
    pub fn name(self) -> &'static str {
        match self {
            Self::Envelopes => "envelopes",
            Self::Deliveries => "deliveries",
            Self::Inbox => "inbox",
            Self::Seen => "seen",
            Self::Chains => "chains",
            Self::SenderSeq => "sender_seq",
            Self::Statuses => "statuses",
            Self::Evidence => "evidence",
            Self::Payloads => "payloads",
            Self::Chunks => "chunks",
            Self::Meta => "meta",
            Self::LedgerQueue => "ledger_queue",
        }
    }
}

/// One write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or overwrite.
    Put {
        column: Column,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Remove (no error if absent).
    Delete { column: Column, key: Vec<u8> },
}

/// Read access to what is durable (or committed in order before): the relay core reads
/// through it, after its own overlay of batches not yet committed.
pub trait StoreView {
    /// The value at `key`, if any.
    fn get(&self, column: Column, key: &[u8]) -> Option<Vec<u8>>;
}

/// Writes that must become durable together, atomically, before the effects that depend
/// on them (acknowledgements, 01 statuses, inbox notifications) are released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Issued in increasing order by one relay.
    pub id: u64,
    /// The writes, applied in order.
    pub ops: Vec<StoreOp>,
}

impl Batch {
    /// Adds a put.
    pub fn put(&mut self, column: Column, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(StoreOp::Put { column, key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, column: Column, key: Vec<u8>) {
        self.ops.push(StoreOp::Delete { column, key });
    }

    /// Bytes written (keys and values), for quotas and metrics.
    pub fn size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                StoreOp::Put { key, value, .. } => key.len() + value.len(),
                StoreOp::Delete { key, .. } => key.len(),
            })
            .sum()
    }
}
