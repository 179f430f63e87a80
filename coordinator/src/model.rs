//! The coordinator's plain values: what it stores about a published item, checked on arrival.
//!
//! Conversion from the wire happens here, once: every field is bounded and every closed
//! vocabulary value checked, so the core below never sees an unchecked value.

use ponte_proto::limits::{MAX_FIELD_FILTERS, MAX_TOKENS_PER_ITEM, TOKEN_BYTES};
use ponte_proto::v1;
use ponte_proto::vocab;
use serde::{Deserialize, Serialize};

/// How sure a link is. Ordered from strongest to weakest. Shared by the linker, the link graph,
/// the scorer, the policy and the answer, so it lives below all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Band {
    Certain = 1,
    Probable = 2,
    Possible = 3,
}

impl Band {
    /// Certain and probable links merge clusters; possible ones do not.
    pub fn is_strong(self) -> bool {
        self <= Band::Probable
    }
}

/// Internal item number (stable for the life of an item; never leaves the coordinator). It is
/// also the item's row in the linker's filter matrices.
pub type ItemId = u64;
/// A person cluster's id (0 is never used).
pub type ClusterId = u64;

/// Identifies a published item: the publishing node and its opaque reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemKey {
    pub node: String,
    pub reference: String,
}

impl ItemKey {
    /// `node/reference`: how the audit log names an item.
    pub fn label(&self) -> String {
        format!("{}/{}", self.node, self.reference)
    }
}

/// Non-clinical description of a care relationship (closed vocabularies, wire numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationshipMeta {
    pub entity_type: i32,
    pub unit: String,
    pub category: i32,
    /// The stricter of the node's declared tier and the category's default tier.
    pub tier: i32,
    pub status: i32,
    pub since_month: u32,
    pub case_manager: bool,
    pub plan: i32,
    pub contact: i32,
}

/// One keyed exact token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Token {
    pub kind: i32,
    #[serde(with = "hex::serde")]
    pub value: [u8; TOKEN_BYTES],
}

/// One item's encoding under one key epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochEncoding {
    pub epoch: u32,
    #[serde(with = "hex::serde")]
    pub clk: Vec<u8>,
    pub tokens: Vec<Token>,
}

/// What the coordinator keeps of one published item: its encodings (one per key epoch it was
/// published under), the identity revision they encode, and the relationship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredItem {
    pub key: ItemKey,
    pub revision: u64,
    pub encodings: Vec<EpochEncoding>,
    pub quality_flags: u32,
    pub relationship: RelationshipMeta,
    /// The holding entity's display name, from its certificate at publish time.
    #[serde(default)]
    pub entity_name: String,
    /// Obscured (oscuramento) by its node at the person's request: never shown to anyone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub obscured: bool,
}

impl StoredItem {
    pub fn encoding(&self, epoch: u32) -> Option<&EpochEncoding> {
        self.encodings.iter().find(|e| e.epoch == epoch)
    }

    /// Adds or replaces the encoding of one epoch.
    pub fn set_encoding(&mut self, enc: EpochEncoding) {
        self.encodings.retain(|e| e.epoch != enc.epoch);
        self.encodings.push(enc);
        self.encodings.sort_by_key(|e| e.epoch);
    }
}

/// One checked publication: an item's encoding under one epoch, with its relationship.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub key: ItemKey,
    pub revision: u64,
    pub encoding: EpochEncoding,
    pub quality_flags: u32,
    pub relationship: RelationshipMeta,
    pub entity_name: String,
    pub obscured: bool,
}

impl Publication {
    /// A new item holding this publication (its encoding left to the caller).
    pub fn new_item(&self) -> StoredItem {
        StoredItem {
            key: self.key.clone(),
            revision: self.revision,
            encodings: Vec::new(),
            quality_flags: self.quality_flags,
            relationship: self.relationship.clone(),
            entity_name: self.entity_name.clone(),
            obscured: self.obscured,
        }
    }

    /// Sets on `item` what this publication says of it (revision, flags, relationship, entity
    /// name, obscuring); encodings are left to the caller.
    pub fn update(&self, item: &mut StoredItem) {
        item.revision = self.revision;
        item.quality_flags = self.quality_flags;
        item.relationship = self.relationship.clone();
        item.entity_name = self.entity_name.clone();
        item.obscured = self.obscured;
    }
}

/// A checked relationship from the wire.
pub fn relationship_from_wire(r: Option<&v1::Relationship>, node_entity: v1::EntityType) -> Result<RelationshipMeta, String> {
    let r = r.ok_or("the relationship is missing")?;
    vocab::check_unit_code(&r.unit)?;
    let category = vocab::ServiceCategoryName::from_wire(r.category)?;
    let status = vocab::StatusName::from_wire(r.status)?;
    vocab::check_month(r.since_month).map_err(|e| format!("since_month: {e}"))?;
    let declared = v1::SensitivityTier::try_from(r.tier).unwrap_or(v1::SensitivityTier::Unspecified);
    let tier = std::cmp::max(declared as i32, vocab::default_tier(category) as i32);
    let plan = if r.plan == 0 { v1::PlanType::PlanNone as i32 } else { vocab::PlanTypeName::from_wire(r.plan)? as i32 };
    let contact = if r.contact == 0 {
        v1::ContactRole::SegreteriaUnita as i32
    } else {
        vocab::ContactRoleName::from_wire(r.contact)? as i32
    };
    if r.entity_type != 0 && r.entity_type != node_entity as i32 {
        return Err(format!(
            "entity_type {} differs from the entity type in the node's certificate ({})",
            r.entity_type,
            vocab::EntityType::name(node_entity)
        ));
    }
    Ok(RelationshipMeta {
        entity_type: node_entity as i32,
        unit: r.unit.clone(),
        category: category as i32,
        tier,
        status: status as i32,
        since_month: r.since_month,
        case_manager: r.case_manager,
        plan,
        contact,
    })
}

/// The lengths the linkage schema gives to published filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingShape {
    pub clk_bytes: usize,
    /// (field, bytes) of each field-level filter.
    pub field_filters: Vec<(String, usize)>,
}

impl EncodingShape {
    pub fn of(schema: &ponte_proto::schema::LinkageSchema) -> EncodingShape {
        EncodingShape {
            clk_bytes: schema.clk_bytes(),
            field_filters: schema.field_filter_bytes().into_iter().map(|(f, b)| (f.to_string(), b)).collect(),
        }
    }
}

/// A checked item from the wire.
pub fn item_from_wire(
    node: &str,
    entity_name: &str,
    node_entity: v1::EntityType,
    epoch: u32,
    shape: &EncodingShape,
    item: &v1::PublishedItem,
) -> Result<Publication, String> {
    let clk_bytes = shape.clk_bytes;
    vocab::check_reference(&item.reference)?;
    let enc = item.encoding.as_ref().ok_or("the identity encoding is missing")?;
    if enc.clk.len() != clk_bytes {
        return Err(format!(
            "the record-level filter is {} bytes; the linkage schema says {clk_bytes}",
            enc.clk.len()
        ));
    }
    if enc.tokens.len() > MAX_TOKENS_PER_ITEM {
        return Err(format!("{} exact tokens; at most {MAX_TOKENS_PER_ITEM}", enc.tokens.len()));
    }
    if enc.field_filters.len() > MAX_FIELD_FILTERS {
        return Err(format!("{} field filters; at most {MAX_FIELD_FILTERS}", enc.field_filters.len()));
    }
    for f in &enc.field_filters {
        match shape.field_filters.iter().find(|(name, _)| *name == f.field) {
            Some((_, len)) if *len == f.bits.len() => {}
            Some((_, len)) => {
                return Err(format!("the field filter {:?} is {} bytes; the linkage schema says {len}", f.field, f.bits.len()));
            }
            None => return Err(format!("the linkage schema has no field filter {:?}", f.field.chars().take(64).collect::<String>())),
        }
    }
    let mut tokens = Vec::with_capacity(enc.tokens.len());
    for t in &enc.tokens {
        let kind = v1::TokenKind::try_from(t.kind).map_err(|_| format!("unknown token kind {}", t.kind))?;
        if kind == v1::TokenKind::Unspecified {
            return Err("a token has no kind".into());
        }
        let value: [u8; TOKEN_BYTES] = t
            .value
            .as_slice()
            .try_into()
            .map_err(|_| format!("a token is {} bytes; tokens are {TOKEN_BYTES}", t.value.len()))?;
        tokens.push(Token { kind: t.kind, value });
    }
    let relationship = relationship_from_wire(item.relationship.as_ref(), node_entity)?;
    Ok(Publication {
        key: ItemKey { node: node.to_string(), reference: item.reference.clone() },
        revision: item.revision,
        obscured: item.obscured,
        encoding: EpochEncoding { epoch, clk: enc.clk.clone(), tokens },
        quality_flags: enc.quality_flags,
        relationship,
        entity_name: entity_name.to_string(),
    })
}
