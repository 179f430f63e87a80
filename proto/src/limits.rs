//! Bounds that every receiver enforces. Crossing one gives a specific error, never a panic.

/// Items in one publish batch.
pub const MAX_BATCH_ITEMS: usize = 1_000;
/// Size of one gRPC message, both directions.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Length of an opaque reference, a node id, a unit code or an operator id.
pub const MAX_ID_LEN: usize = 64;
/// Exact tokens per published item.
pub const MAX_TOKENS_PER_ITEM: usize = 8;
/// Exact-token length (HMAC-SHA256 output).
pub const TOKEN_BYTES: usize = 32;
/// Largest record-level filter accepted, in bytes (8192 bits).
pub const MAX_FILTER_BYTES: usize = 1024;
/// Field-level filters per item.
pub const MAX_FIELD_FILTERS: usize = 16;
/// References in one withdraw request.
pub const MAX_WITHDRAW_REFERENCES: usize = 1_000;
/// Size of a policy file (TOML text).
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// Values in each list of a consent's scope (categories, recipients, purposes).
pub const MAX_CONSENT_SCOPE: usize = 32;
/// Entries returned by one audit query.
pub const MAX_AUDIT_QUERY: usize = 10_000;
