//! The ground truth: which export row belongs to which synthetic person.
//!
//! One row per export row, in the same order, in Ponte's vocabulary. It is what a linkage run is
//! scored against and must never be given to a node.

use serde::{Deserialize, Serialize};

use super::SynthError;

/// One export row and the person it truly refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRow {
    pub node_id: String,
    /// The entity's own record id (duplicates of one person have different ones).
    pub record_id: String,
    pub relationship_id: String,
    pub person_id: u32,
    /// Ponte service category.
    pub service: String,
    /// Ponte status.
    pub status: String,
    /// `YYYY-MM`
    pub since_month: String,
    pub unit: String,
    pub case_manager: bool,
}

/// The truth as CSV (comma-separated, header row first).
pub fn truth_csv(rows: &[TruthRow]) -> Result<Vec<u8>, SynthError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| SynthError(format!("writing the truth: {e}")))?;
    }
    if rows.is_empty() {
        writer
            .write_record([
                "node_id",
                "record_id",
                "relationship_id",
                "person_id",
                "service",
                "status",
                "since_month",
                "unit",
                "case_manager",
            ])
            .map_err(|e| SynthError(format!("writing the truth: {e}")))?;
    }
    writer
        .into_inner()
        .map_err(|e| SynthError(format!("writing the truth: {e}")))
}
