//! The privacy officers' disclosure policy: parsing and checking the TOML file, comparing two
//! versions, and deciding — rule by rule — what a who-else question may see. Pure: no I/O, no
//! clock (callers pass today's date).
//!
//! The file's keys, their defaults and their meaning are documented in `policy/default.toml`,
//! the policy shipped with the product (DOMAIN.md §7). What no policy can change:
//! - obscuring (*oscuramento*) is always honoured (`obscuring.honour = false` is an error);
//! - a tier can only be made stricter than DOMAIN.md §3's default ([`vocab::default_tier`]);
//! - break-glass (`emergenza`) never unlocks a consent-required tier without consent;
//! - closed relationships past retention are never shown, even before the sweep removes them.
//!
//! Guarantees callers rely on:
//! - [`check`] never panics on any text; every [`Problem`] has a 1-based line and column (in
//!   characters) pointing at the offending key or value (1:1 for whole-file problems);
//! - a [`Policy`] exists only for a text with no errors; its parsed rules are the file's values
//!   over the defaults, so two texts that say the same thing give equal rules ([`diff`] empty);
//! - [`decide`] evaluates the rules in a fixed order and records every one in the trace: once a
//!   rule withholds the relationship, the later ones are recorded as not evaluated.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use ponte_proto::limits::MAX_POLICY_BYTES;
use ponte_proto::v1::{self, BreakGlassReason, ConsentGiver, EntityType, OperatorRole, Purpose, RelationshipStatus, ServiceCategory};
use ponte_proto::vocab;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::linker::Band;
use crate::model::RelationshipMeta;

/// The policy shipped with the product (DOMAIN.md §7), used when no policy was ever loaded.
pub const DEFAULT_POLICY_TOML: &str = include_str!("../policy/default.toml");

/// Privacy-officer ids in `break_glass.notify`.
pub const MAX_NOTIFY: usize = 32;
/// Length of `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// What a requesting sector sees of a category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disclosure {
    Nothing,
    Generalised,
    Full,
}

impl Disclosure {
    /// The policy file's word: `nothing`, `generalised` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Disclosure::Nothing => "nothing",
            Disclosure::Generalised => "generalised",
            Disclosure::Full => "full",
        }
    }

    fn parse(s: &str) -> Result<Disclosure, String> {
        match s {
            "nothing" => Ok(Disclosure::Nothing),
            "generalised" => Ok(Disclosure::Generalised),
            "full" => Ok(Disclosure::Full),
            _ => Err(format!("{s:?} is not a disclosure; use full, generalised or nothing")),
        }
    }
}

/// Requesting sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sector {
    Social,
    Health,
}

impl Sector {
    const ALL: [Sector; 2] = [Sector::Social, Sector::Health];

    /// The policy file's word: `social` or `health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sector::Social => "social",
            Sector::Health => "health",
        }
    }

    fn parse(s: &str) -> Result<Sector, String> {
        match s {
            "social" => Ok(Sector::Social),
            "health" => Ok(Sector::Health),
            _ => Err(format!("{s:?} is not a sector; use social or health")),
        }
    }
}

/// What one sector sees: a default per tier (T1, T2, T3) and per-category overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SectorDisclosure {
    tiers: [Disclosure; 3],
    categories: BTreeMap<ServiceCategory, Disclosure>,
}

/// The parsed tables of a policy: the file's values over the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rules {
    description: String,
    purposes: BTreeMap<OperatorRole, BTreeSet<Purpose>>,
    anchor_statuses: BTreeSet<RelationshipStatus>,
    sectors: BTreeMap<EntityType, Sector>,
    /// Stricter tiers than the default, by category (wire tier numbers 1–3).
    tiers: BTreeMap<ServiceCategory, i32>,
    /// Indexed by `Sector as usize`.
    disclosure: [SectorDisclosure; 2],
    consent_required_for: BTreeSet<i32>,
    parent_cannot_unlock: BTreeSet<ServiceCategory>,
    break_glass_enabled: bool,
    break_glass_roles: BTreeSet<OperatorRole>,
    break_glass_notify: Vec<String>,
    show_possible: bool,
    case_manager_direct: bool,
    closed_months: u32,
    sweep_interval_secs: u64,
    audit_months: u32,
}

impl Rules {
    /// DOMAIN.md §7's defaults: what a file with only `version` means.
    fn defaults() -> Rules {
        use OperatorRole as R;
        use Purpose as P;
        let care = [P::ContinuitaAssistenziale, P::ConvocazioneUvm, P::DimissioneProtetta];
        let purposes = BTreeMap::from([
            (R::AssistenteSociale, BTreeSet::from(care)),
            (R::Mmg, BTreeSet::from(care)),
            (R::OperatorePua, BTreeSet::from([P::ContinuitaAssistenziale, P::ConvocazioneUvm])),
            (R::MembroUvm, BTreeSet::from([P::ContinuitaAssistenziale, P::ConvocazioneUvm])),
            (R::OperatoreCot, BTreeSet::from([P::DimissioneProtetta, P::ContinuitaAssistenziale])),
            (R::ReferentePrivacy, BTreeSet::from([P::RichiestaInteressato])),
        ]);
        Rules {
            description: String::new(),
            purposes,
            anchor_statuses: BTreeSet::from([
                RelationshipStatus::Segnalata,
                RelationshipStatus::InValutazione,
                RelationshipStatus::Attiva,
            ]),
            sectors: BTreeMap::from([
                (EntityType::Asl, Sector::Health),
                (EntityType::Comune, Sector::Social),
                (EntityType::Ats, Sector::Social),
                (EntityType::Provider, Sector::Social),
            ]),
            tiers: BTreeMap::new(),
            disclosure: [
                SectorDisclosure {
                    tiers: [Disclosure::Full, Disclosure::Generalised, Disclosure::Generalised],
                    categories: BTreeMap::new(),
                },
                SectorDisclosure { tiers: [Disclosure::Full; 3], categories: BTreeMap::new() },
            ],
            consent_required_for: BTreeSet::from([v1::SensitivityTier::T3 as i32]),
            parent_cannot_unlock: BTreeSet::from([ServiceCategory::Consultorio, ServiceCategory::Ivg]),
            break_glass_enabled: false,
            break_glass_roles: BTreeSet::from([OperatorRole::OperatoreCot, OperatorRole::Mmg]),
            break_glass_notify: vec!["dpo-federazione".to_string()],
            show_possible: true,
            case_manager_direct: false,
            closed_months: 12,
            sweep_interval_secs: 3600,
            audit_months: 24,
        }
    }

    /// The tier of `category` under this policy: the default, or the policy's stricter one.
    fn tier_of(&self, category: ServiceCategory) -> i32 {
        let default = vocab::default_tier(category) as i32;
        self.tiers.get(&category).map_or(default, |t| (*t).max(default))
    }
}

/// A checked policy. Construct with [`check`] or [`Policy::default_policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// `version` from the file.
    pub version: String,
    /// Hex SHA-256 of the file's text.
    pub sha256: String,
    /// The text it was parsed from.
    pub text: String,
    rules: Rules,
}

/// One problem found in a policy file, with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    /// `line:column: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// The result of checking a policy file: errors make it unusable, warnings flag risky settings.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Present exactly when `errors` is empty.
    pub policy: Option<Policy>,
    /// In the order they appear in the file.
    pub errors: Vec<Problem>,
    /// In the order they appear in the file.
    pub warnings: Vec<Problem>,
}

/// Checks a policy file's text (at most `MAX_POLICY_BYTES`).
pub fn check(text: &str) -> CheckReport {
    let mut c = Checker { text, errors: Vec::new(), warnings: Vec::new(), social_full: Vec::new() };
    if text.len() > MAX_POLICY_BYTES {
        c.error(0, format!("the policy is {} bytes; at most {MAX_POLICY_BYTES} bytes are allowed", text.len()));
        return c.report(None);
    }
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let at = e.span().map_or(0, |s| s.start);
            let message = e.message().trim();
            let hint = if message.starts_with("duplicate key") {
                ": a key may appear once per section (and a [section] once per file); remove or merge the repeated one"
            } else {
                ""
            };
            c.error(at, format!("TOML syntax error: {message}{hint}"));
            return c.report(None);
        }
    };
    let (version, rules) = c.policy(root.get_ref());
    let policy = match version {
        Some(version) if c.errors.is_empty() => Some(Policy {
            version,
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            text: text.to_string(),
            rules,
        }),
        _ => None,
    };
    c.report(policy)
}

static DEFAULT_POLICY: LazyLock<Policy> = LazyLock::new(|| {
    let report = check(DEFAULT_POLICY_TOML);
    match report.policy {
        Some(p) => p,
        None => panic!("the shipped default policy has errors: {:?}", report.errors),
    }
});

impl Policy {
    /// The shipped default policy.
    pub fn default_policy() -> Policy {
        DEFAULT_POLICY.clone()
    }

    /// `description` from the file (empty if none).
    pub fn description(&self) -> &str {
        &self.rules.description
    }

    /// Months after closure when a closed relationship is removed.
    pub fn retention_closed_months(&self) -> u32 {
        self.rules.closed_months
    }

    /// Seconds between retention sweeps.
    pub fn retention_sweep_secs(&self) -> u64 {
        self.rules.sweep_interval_secs
    }

    /// Months the audit log is kept.
    pub fn retention_audit_months(&self) -> u32 {
        self.rules.audit_months
    }

    /// Whether questions with purpose `emergenza` may be asked at all.
    pub fn break_glass_enabled(&self) -> bool {
        self.rules.break_glass_enabled
    }

    /// Privacy-officer ids notified of every break-glass question.
    pub fn break_glass_notify(&self) -> &[String] {
        &self.rules.break_glass_notify
    }

    /// Whether `role` may ask for `purpose` (break-glass: enabled and `role` listed).
    pub fn purpose_allowed(&self, role: OperatorRole, purpose: Purpose) -> bool {
        if purpose == Purpose::Emergenza {
            return self.rules.break_glass_enabled && self.rules.break_glass_roles.contains(&role);
        }
        self.rules.purposes.get(&role).is_some_and(|p| p.contains(&purpose))
    }

    /// Whether an anchor relationship with `status` gives need-to-know.
    pub fn status_allows_anchor(&self, status: RelationshipStatus) -> bool {
        self.rules.anchor_statuses.contains(&status)
    }

    /// Whether a closed relationship since `since_month` (YYYYMM, its closure month) is past
    /// retention on `today` (YYYYMMDD): `closed_months` or more months have passed.
    pub fn retention_expired(&self, since_month: u32, today: u32) -> bool {
        months_between(since_month, today / 100) >= i64::from(self.rules.closed_months)
    }
}

// ---------------------------------------------------------------------------------------------
// Checking the file

const TOP_KEYS: &[&str] = &[
    "version",
    "description",
    "purposes",
    "anchor",
    "sectors",
    "tiers",
    "disclosure",
    "consent",
    "obscuring",
    "break_glass",
    "bands",
    "contact",
    "retention",
];

/// Collects problems as (byte offset, message) while walking the parsed file.
struct Checker<'t> {
    text: &'t str,
    errors: Vec<(usize, String)>,
    warnings: Vec<(usize, String)>,
    /// `disclosure.social` keys set to full: (value offset, key, tier or category).
    social_full: Vec<(usize, String, Result<i32, ServiceCategory>)>,
}

type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;
type Value<'i> = Spanned<DeValue<'i>>;

impl Checker<'_> {
    fn error(&mut self, at: usize, message: String) {
        self.errors.push((at, message));
    }

    fn warning(&mut self, at: usize, message: String) {
        self.warnings.push((at, message));
    }

    fn report(self, policy: Option<Policy>) -> CheckReport {
        let positions = |v: Vec<(usize, String)>| {
            let mut v: Vec<Problem> = v
                .into_iter()
                .map(|(at, message)| {
                    let (line, column) = line_column(self.text, at);
                    Problem { line, column, message }
                })
                .collect();
            v.sort_by_key(|p| (p.line, p.column));
            v
        };
        let errors = positions(self.errors);
        let warnings = positions(self.warnings);
        CheckReport { policy: if errors.is_empty() { policy } else { None }, errors, warnings }
    }

    fn unknown_key(&mut self, key: &Key<'_>, section: &str, valid: &[&str]) {
        let place = if section.is_empty() { "at the top level".to_string() } else { format!("in [{section}]") };
        self.error(
            key.span().start,
            format!("unknown key {:?} {place}; valid keys: {}", key.get_ref().as_ref(), valid.join(", ")),
        );
    }

    fn wrong_type(&mut self, v: &Value<'_>, path: &str, expected: &str) {
        let found = v.get_ref().type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        self.error(v.span().start, format!("{path} must be {expected}, not {article} {found}"));
    }

    fn table<'a, 'i>(&mut self, v: &'a Value<'i>, path: &str) -> Option<&'a DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(v, path, &format!("a table (a [{path}] section)"));
                None
            }
        }
    }

    fn string<'a>(&mut self, v: &'a Value<'_>, path: &str) -> Option<&'a str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(v, path, "a string in double quotes");
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value<'_>, path: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, path, "true or false");
                None
            }
        }
    }

    /// A whole number in `lo..=hi`.
    fn integer(&mut self, v: &Value<'_>, path: &str, lo: i64, hi: i64, unit: &str) -> Option<i64> {
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, path, &format!("a whole number of {unit}"));
            return None;
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.span().start,
                    format!("{path} = {i} is out of range: use a whole number of {unit} from {lo} to {hi}"),
                );
                None
            }
        }
    }

    /// A list of names, each parsed by `parse`; duplicates are errors. Returns each value with
    /// the offset of its item, in file order, or None if any item was wrong.
    fn list<E: Clone + Eq>(
        &mut self,
        v: &Value<'_>,
        path: &str,
        parse: impl Fn(&str) -> Result<E, String>,
    ) -> Option<Vec<(E, usize)>> {
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(v, path, "a list of names in [ ], e.g. [\"a\", \"b\"]");
            return None;
        };
        let mut out: Vec<(E, usize)> = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items.iter() {
            let Some(s) = self.string(item, &format!("each item of {path}")) else {
                ok = false;
                continue;
            };
            match parse(s) {
                Ok(e) if out.iter().any(|(x, _)| *x == e) => {
                    self.error(item.span().start, format!("{s:?} is listed twice in {path}: remove one"));
                    ok = false;
                }
                Ok(e) => out.push((e, item.span().start)),
                Err(m) => {
                    self.error(item.span().start, format!("{path}: {m}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A string value parsed by `parse`.
    fn word<E>(&mut self, v: &Value<'_>, path: &str, parse: impl Fn(&str) -> Result<E, String>) -> Option<E> {
        let s = self.string(v, path)?;
        match parse(s) {
            Ok(e) => Some(e),
            Err(m) => {
                self.error(v.span().start, format!("{path}: {m}"));
                None
            }
        }
    }

    /// A table key parsed by `parse` (the error points at the key).
    fn key<E>(&mut self, k: &Key<'_>, section: &str, parse: impl Fn(&str) -> Result<E, String>) -> Option<E> {
        match parse(k.get_ref()) {
            Ok(e) => Some(e),
            Err(m) => {
                self.error(k.span().start, format!("[{section}]: {m}"));
                None
            }
        }
    }

    /// Walks the whole file: `version` (if valid) and the rules over the defaults.
    fn policy(&mut self, root: &DeTable<'_>) -> (Option<String>, Rules) {
        let mut r = Rules::defaults();
        let mut version = None;
        let mut version_seen = false;
        for (k, v) in root.iter() {
            match k.get_ref().as_ref() {
                "version" => {
                    version_seen = true;
                    version = self.version(v);
                }
                "description" => {
                    if let Some(s) = self.string(v, "description") {
                        if s.len() > MAX_DESCRIPTION_BYTES {
                            self.error(
                                v.span().start,
                                format!("description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed", s.len()),
                            );
                        }
                        r.description = s.to_string();
                    }
                }
                "purposes" => self.purposes(v, &mut r),
                "anchor" => self.anchor(v, &mut r),
                "sectors" => self.sectors(v, &mut r),
                "tiers" => self.tiers(v, &mut r),
                "disclosure" => self.disclosure(v, &mut r),
                "consent" => self.consent(v, &mut r),
                "obscuring" => self.obscuring(v),
                "break_glass" => self.break_glass(v, &mut r),
                "bands" => {
                    if let Some(t) = self.table(v, "bands") {
                        for (k, v) in t.iter() {
                            match k.get_ref().as_ref() {
                                "show_possible" => {
                                    if let Some(b) = self.boolean(v, "bands.show_possible") {
                                        r.show_possible = b;
                                    }
                                }
                                _ => self.unknown_key(k, "bands", &["show_possible"]),
                            }
                        }
                    }
                }
                "contact" => {
                    if let Some(t) = self.table(v, "contact") {
                        for (k, v) in t.iter() {
                            match k.get_ref().as_ref() {
                                "case_manager_direct" => {
                                    if let Some(b) = self.boolean(v, "contact.case_manager_direct") {
                                        r.case_manager_direct = b;
                                    }
                                }
                                _ => self.unknown_key(k, "contact", &["case_manager_direct"]),
                            }
                        }
                    }
                }
                "retention" => self.retention(v, &mut r),
                _ => self.unknown_key(k, "", TOP_KEYS),
            }
        }
        if !version_seen {
            self.error(0, "the policy has no version: add a line such as version = \"asl-2026.1\" at the top".into());
        }
        self.disclosure_warnings(&r);
        (version, r)
    }

    fn version(&mut self, v: &Value<'_>) -> Option<String> {
        let s = self.string(v, "version")?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.error(
                v.span().start,
                format!("version {s:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', e.g. \"asl-2026.2\""),
            );
            return None;
        }
        Some(s.to_string())
    }

    fn purposes(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "purposes") else { return };
        // The section, when present, is the complete list: a role not listed may not ask.
        r.purposes.clear();
        for (k, v) in t.iter() {
            let Some(role) = self.key(k, "purposes", parse_role) else { continue };
            let path = format!("purposes.{}", k.get_ref());
            if let Some(list) = self.list(v, &path, parse_ordinary_purpose) {
                r.purposes.insert(role, list.into_iter().map(|(p, _)| p).collect());
            }
        }
    }

    fn anchor(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "anchor") else { return };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "statuses" => {
                    let Some(list) = self.list(v, "anchor.statuses", |s| lookup(s, vocab::StatusName::ALL, vocab::StatusName::name, "relationship status")) else {
                        continue;
                    };
                    if list.is_empty() {
                        self.warning(v.span().start, "anchor.statuses is empty: every question will be refused".into());
                    }
                    for (s, at) in &list {
                        let what = match s {
                            RelationshipStatus::Sospesa => "suspended",
                            RelationshipStatus::Conclusa => "closed",
                            _ => continue,
                        };
                        self.warning(
                            *at,
                            format!(
                                "anchor.statuses lists {:?}: a {what} relationship would give need-to-know, which DOMAIN.md §7 reserves to active or pending ones (segnalata, in_valutazione, attiva); remove it unless the DPO approved this",
                                vocab::StatusName::name(*s)
                            ),
                        );
                    }
                    r.anchor_statuses = list.into_iter().map(|(s, _)| s).collect();
                }
                _ => self.unknown_key(k, "anchor", &["statuses"]),
            }
        }
    }

    fn sectors(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "sectors") else { return };
        for (k, v) in t.iter() {
            let Some(e) = self.key(k, "sectors", |s| lookup(s, vocab::EntityType::ALL, vocab::EntityType::name, "entity type"))
            else {
                continue;
            };
            if let Some(s) = self.word(v, &format!("sectors.{}", k.get_ref()), Sector::parse) {
                r.sectors.insert(e, s);
            }
        }
    }

    fn tiers(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "tiers") else { return };
        for (k, v) in t.iter() {
            let Some(c) = self.key(k, "tiers", parse_category) else { continue };
            let path = format!("tiers.{}", k.get_ref());
            let Some(tier) = self.word(v, &path, parse_tier) else { continue };
            let default = vocab::default_tier(c) as i32;
            if tier < default {
                self.error(
                    v.span().start,
                    format!(
                        "{path} = {:?} is less strict than the category's tier {} (DOMAIN.md §3): a policy may only make a tier stricter; use {:?} or a stricter tier, or remove the line",
                        tier_name(tier),
                        tier_name(default),
                        tier_name(default)
                    ),
                );
                continue;
            }
            if tier > default {
                r.tiers.insert(c, tier);
            }
        }
    }

    fn disclosure(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "disclosure") else { return };
        for (k, v) in t.iter() {
            let Ok(sector) = Sector::parse(k.get_ref()) else {
                self.unknown_key(k, "disclosure", &["social", "health"]);
                continue;
            };
            let section = format!("disclosure.{}", sector.as_str());
            let Some(st) = self.table(v, &section) else { continue };
            for (k, v) in st.iter() {
                let path = format!("{section}.{}", k.get_ref());
                if let Ok(tier) = parse_tier(k.get_ref()) {
                    if let Some(d) = self.word(v, &path, Disclosure::parse) {
                        r.disclosure[sector as usize].tiers[tier as usize - 1] = d;
                        if sector == Sector::Social && d == Disclosure::Full {
                            self.social_full.push((v.span().start, k.get_ref().to_string(), Ok(tier)));
                        }
                    }
                    continue;
                }
                let Some(c) = lookup(k.get_ref(), vocab::ServiceCategoryName::ALL, vocab::ServiceCategoryName::name, "").ok() else {
                    self.error(
                        k.span().start,
                        format!(
                            "unknown key {:?} in [{section}]; use t1, t2, t3 (the default of each tier) or a service category: {}",
                            k.get_ref().as_ref(),
                            names(vocab::ServiceCategoryName::ALL, vocab::ServiceCategoryName::name)
                        ),
                    );
                    continue;
                };
                if let Some(d) = self.word(v, &path, Disclosure::parse) {
                    r.disclosure[sector as usize].categories.insert(c, d);
                    if sector == Sector::Social && d == Disclosure::Full {
                        self.social_full.push((v.span().start, k.get_ref().to_string(), Err(c)));
                    }
                }
            }
        }
    }

    /// Social requesters seeing health-revealing categories in full: allowed, but flagged. Runs
    /// after the walk, when the policy's [tiers] (which may come later in the file) are known.
    fn disclosure_warnings(&mut self, r: &Rules) {
        for (at, key, tier_or_category) in std::mem::take(&mut self.social_full) {
            let tier = match tier_or_category {
                Ok(t) => t,
                Err(c) => r.tier_of(c),
            };
            if tier >= v1::SensitivityTier::T2 as i32 {
                self.warning(
                    at,
                    format!(
                        "disclosure.social.{key} = \"full\": social requesters would see a health-revealing ({}) category in full, where DOMAIN.md §7 says generalised; use \"generalised\" unless the DPO approved this",
                        tier_name(tier)
                    ),
                );
            }
        }
    }

    fn consent(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "consent") else { return };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "required_for" => {
                    let Some(list) = self.list(v, "consent.required_for", parse_tier) else { continue };
                    r.consent_required_for = list.into_iter().map(|(t, _)| t).collect();
                    if !r.consent_required_for.contains(&(v1::SensitivityTier::T3 as i32)) {
                        self.warning(
                            v.span().start,
                            "consent.required_for does not list \"t3\": T3 services (SerD, salute mentale, NPIA, consultorio, IVG, HIV, violenza di genere, tutela minori) will be disclosed without the person's consent; add \"t3\" unless the DPO approved this".into(),
                        );
                    }
                }
                "parent_cannot_unlock" => {
                    let Some(list) = self.list(v, "consent.parent_cannot_unlock", parse_category) else { continue };
                    r.parent_cannot_unlock = list.into_iter().map(|(c, _)| c).collect();
                    for (c, law) in [(ServiceCategory::Consultorio, "L. 405/1975"), (ServiceCategory::Ivg, "L. 194/1978")] {
                        if !r.parent_cannot_unlock.contains(&c) {
                            self.warning(
                                v.span().start,
                                format!(
                                    "consent.parent_cannot_unlock does not list {:?}: a parent's consent would unlock a minor's {} relationships ({law}); add it back",
                                    vocab::ServiceCategoryName::name(c),
                                    vocab::ServiceCategoryName::name(c)
                                ),
                            );
                        }
                    }
                }
                _ => self.unknown_key(k, "consent", &["required_for", "parent_cannot_unlock"]),
            }
        }
    }

    fn obscuring(&mut self, v: &Value<'_>) {
        let Some(t) = self.table(v, "obscuring") else { return };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "honour" => {
                    if self.boolean(v, "obscuring.honour") == Some(false) {
                        self.error(
                            v.span().start,
                            "obscuring.honour = false is not allowed: obscuring (oscuramento) cannot be turned off (FSE rules, DM 7/9/2023 art. 9); set it to true or remove the line".into(),
                        );
                    }
                }
                _ => self.unknown_key(k, "obscuring", &["honour"]),
            }
        }
    }

    fn break_glass(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "break_glass") else { return };
        let mut enabled_at = None;
        let mut notify_at = None;
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "enabled" => {
                    if let Some(b) = self.boolean(v, "break_glass.enabled") {
                        r.break_glass_enabled = b;
                        enabled_at = Some(v.span().start);
                    }
                }
                "roles" => {
                    if let Some(list) = self.list(v, "break_glass.roles", parse_role) {
                        r.break_glass_roles = list.into_iter().map(|(x, _)| x).collect();
                    }
                }
                "notify" => {
                    let Some(list) = self.list(v, "break_glass.notify", |s| {
                        vocab::check_node_id(s)
                            .map(|()| s.to_string())
                            .map_err(|_| format!("{s:?} is not a certificate id: use 1 to 64 lower-case letters, digits and '-', e.g. \"dpo-federazione\""))
                    }) else {
                        continue;
                    };
                    if list.len() > MAX_NOTIFY {
                        self.error(v.span().start, format!("break_glass.notify lists {} ids; at most {MAX_NOTIFY}", list.len()));
                        continue;
                    }
                    notify_at = Some(v.span().start);
                    r.break_glass_notify = list.into_iter().map(|(x, _)| x).collect();
                }
                _ => self.unknown_key(k, "break_glass", &["enabled", "roles", "notify"]),
            }
        }
        if r.break_glass_enabled && r.break_glass_notify.is_empty() {
            self.warning(
                notify_at.or(enabled_at).unwrap_or(v.span().start),
                "break_glass is enabled but break_glass.notify is empty: no privacy officer will be told of break-glass questions; add at least one privacy officer's certificate id".into(),
            );
        }
    }

    fn retention(&mut self, v: &Value<'_>, r: &mut Rules) {
        let Some(t) = self.table(v, "retention") else { return };
        for (k, v) in t.iter() {
            match k.get_ref().as_ref() {
                "closed_months" => {
                    let Some(n) = self.integer(v, "retention.closed_months", 1, 600, "months") else { continue };
                    if n > 120 {
                        self.warning(
                            v.span().start,
                            format!("retention.closed_months = {n}: closed relationships would be kept more than 10 years after closure; check the federation's retention schedule"),
                        );
                    }
                    r.closed_months = n as u32;
                }
                "sweep_interval_secs" => {
                    if let Some(n) = self.integer(v, "retention.sweep_interval_secs", 10, 86_400, "seconds") {
                        r.sweep_interval_secs = n as u64;
                    }
                }
                "audit_months" => {
                    let Some(n) = self.integer(v, "retention.audit_months", 1, 1200, "months") else { continue };
                    if n < 24 {
                        self.warning(
                            v.span().start,
                            format!("retention.audit_months = {n}: the audit log would be kept less than 24 months (DOMAIN.md §7); use 24 or more unless the DPO approved this"),
                        );
                    }
                    r.audit_months = n as u32;
                }
                _ => self.unknown_key(k, "retention", &["closed_months", "sweep_interval_secs", "audit_months"]),
            }
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..at].chars().count() + 1)
}

fn names<E: Copy>(all: &[E], name: impl Fn(E) -> String) -> String {
    all.iter().map(|e| name(*e)).collect::<Vec<_>>().join(", ")
}

/// Exact lower-case name lookup (policy files spell names one way only, so texts compare).
fn lookup<E: Copy>(s: &str, all: &[E], name: impl Fn(E) -> String, what: &str) -> Result<E, String> {
    all.iter()
        .copied()
        .find(|e| name(*e) == s)
        .ok_or_else(|| {
            let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            format!("{s:?} is not {article} {what}; use one of: {}", names(all, name))
        })
}

fn parse_role(s: &str) -> Result<OperatorRole, String> {
    lookup(s, vocab::OperatorRoleName::ALL, vocab::OperatorRoleName::name, "operator role")
}

fn parse_category(s: &str) -> Result<ServiceCategory, String> {
    lookup(s, vocab::ServiceCategoryName::ALL, vocab::ServiceCategoryName::name, "service category")
}

/// The purposes [purposes] may list: all but `emergenza`, which [break_glass] governs.
fn parse_ordinary_purpose(s: &str) -> Result<Purpose, String> {
    if s == "emergenza" {
        return Err(
            "\"emergenza\" is governed by [break_glass], not [purposes]: remove it here and set break_glass.enabled = true".into(),
        );
    }
    let ordinary: Vec<Purpose> =
        vocab::PurposeName::ALL.iter().copied().filter(|p| *p != Purpose::Emergenza).collect();
    lookup(s, &ordinary, vocab::PurposeName::name, "purpose")
}

/// `t1`, `t2`, `t3` → wire tier numbers 1–3.
fn parse_tier(s: &str) -> Result<i32, String> {
    match s {
        "t1" => Ok(1),
        "t2" => Ok(2),
        "t3" => Ok(3),
        _ => Err(format!("{s:?} is not a tier; use t1, t2 or t3")),
    }
}

fn tier_name(t: i32) -> &'static str {
    match t {
        1 => "t1",
        2 => "t2",
        3 => "t3",
        _ => "unspecified",
    }
}

/// Months from `from` to `to` (both YYYYMM); negative if `to` is earlier.
fn months_between(from: u32, to: u32) -> i64 {
    let m = |x: u32| i64::from(x / 100) * 12 + i64::from(x % 100);
    m(to) - m(from)
}

/// The UTC calendar day (YYYYMMDD) of a Unix time in seconds: what callers pass as
/// [`Question::today`] from their clock.
pub fn day_of_unix_time(secs: u64) -> u32 {
    ponte_proto::vocab::day_of_unix_time(secs)
}

// ---------------------------------------------------------------------------------------------
// Comparing versions

/// What changed between two policy versions, one line per change, in a stable order.
///
/// Compares the parsed rules (defaults filled in), not the texts: reformatting or spelling a
/// default out gives no line. Order: version, description, then the file's sections in the
/// order of `default.toml`, vocabulary values in wire order. Changes that weaken a protection
/// carry a `(WARNING: …)` note.
pub fn diff(old: &Policy, new: &Policy) -> Vec<String> {
    let (a, b) = (&old.rules, &new.rules);
    let mut out = Vec::new();
    if old.version != new.version {
        out.push(format!("version: {} → {}", old.version, new.version));
    }
    if a.description != b.description {
        out.push("description: changed".to_string());
    }
    for role in vocab::OperatorRoleName::ALL {
        let empty = BTreeSet::new();
        let (pa, pb) = (a.purposes.get(role).unwrap_or(&empty), b.purposes.get(role).unwrap_or(&empty));
        let path = format!("purposes.{}", vocab::OperatorRoleName::name(*role));
        set_diff(&mut out, &path, vocab::PurposeName::ALL, pa, pb, vocab::PurposeName::name, |_, _| None);
    }
    set_diff(&mut out, "anchor.statuses", vocab::StatusName::ALL, &a.anchor_statuses, &b.anchor_statuses, vocab::StatusName::name, |s, added| {
        (added && matches!(s, RelationshipStatus::Sospesa | RelationshipStatus::Conclusa))
            .then(|| "WARNING: gives need-to-know without an active or pending relationship".to_string())
    });
    for e in vocab::EntityType::ALL {
        let (sa, sb) = (a.sectors.get(e).copied().unwrap_or(Sector::Social), b.sectors.get(e).copied().unwrap_or(Sector::Social));
        if sa != sb {
            out.push(format!("sectors.{}: {} → {}", vocab::EntityType::name(*e), sa.as_str(), sb.as_str()));
        }
    }
    for c in vocab::ServiceCategoryName::ALL {
        let (ta, tb) = (a.tier_of(*c), b.tier_of(*c));
        if ta != tb {
            out.push(format!("tiers.{}: {} → {}", vocab::ServiceCategoryName::name(*c), tier_name(ta), tier_name(tb)));
        }
    }
    for s in Sector::ALL {
        let (da, db) = (&a.disclosure[s as usize], &b.disclosure[s as usize]);
        for t in 0..3 {
            if da.tiers[t] != db.tiers[t] {
                out.push(format!(
                    "disclosure.{}.t{}: {} → {}",
                    s.as_str(),
                    t + 1,
                    da.tiers[t].as_str(),
                    db.tiers[t].as_str()
                ));
            }
        }
        for c in vocab::ServiceCategoryName::ALL {
            let (ca, cb) = (da.categories.get(c), db.categories.get(c));
            if ca != cb {
                let show = |d: Option<&Disclosure>| d.map_or("(tier default)", |d| d.as_str());
                out.push(format!(
                    "disclosure.{}.{}: {} → {}",
                    s.as_str(),
                    vocab::ServiceCategoryName::name(*c),
                    show(ca),
                    show(cb)
                ));
            }
        }
    }
    set_diff(&mut out, "consent.required_for", &[1, 2, 3], &a.consent_required_for, &b.consent_required_for, |t| tier_name(t).to_string(), |t, added| {
        (!added && t == 3).then(|| "WARNING: T3 disclosed without consent".to_string())
    });
    set_diff(
        &mut out,
        "consent.parent_cannot_unlock",
        vocab::ServiceCategoryName::ALL,
        &a.parent_cannot_unlock,
        &b.parent_cannot_unlock,
        vocab::ServiceCategoryName::name,
        |c, added| {
            (!added && matches!(c, ServiceCategory::Consultorio | ServiceCategory::Ivg))
                .then(|| "WARNING: a parent's consent unlocks a minor's protected service".to_string())
        },
    );
    if a.break_glass_enabled != b.break_glass_enabled {
        out.push(format!("break_glass.enabled: {} → {}", a.break_glass_enabled, b.break_glass_enabled));
    }
    set_diff(&mut out, "break_glass.roles", vocab::OperatorRoleName::ALL, &a.break_glass_roles, &b.break_glass_roles, vocab::OperatorRoleName::name, |_, _| None);
    let all_notify: BTreeSet<String> = a.break_glass_notify.iter().chain(&b.break_glass_notify).cloned().collect();
    let all_notify: Vec<String> = all_notify.into_iter().collect();
    let (na, nb): (BTreeSet<String>, BTreeSet<String>) =
        (a.break_glass_notify.iter().cloned().collect(), b.break_glass_notify.iter().cloned().collect());
    set_diff(&mut out, "break_glass.notify", &all_notify, &na, &nb, |s| s, |_, _| None);
    if a.show_possible != b.show_possible {
        out.push(format!("bands.show_possible: {} → {}", a.show_possible, b.show_possible));
    }
    if a.case_manager_direct != b.case_manager_direct {
        out.push(format!("contact.case_manager_direct: {} → {}", a.case_manager_direct, b.case_manager_direct));
    }
    if a.closed_months != b.closed_months {
        out.push(format!("retention.closed_months: {} → {}", a.closed_months, b.closed_months));
    }
    if a.sweep_interval_secs != b.sweep_interval_secs {
        out.push(format!("retention.sweep_interval_secs: {} → {}", a.sweep_interval_secs, b.sweep_interval_secs));
    }
    if a.audit_months != b.audit_months {
        let note = if b.audit_months < 24 { " (WARNING: audit kept less than 24 months)" } else { "" };
        out.push(format!("retention.audit_months: {} → {}{note}", a.audit_months, b.audit_months));
    }
    out
}

/// `path: + x` / `path: − x` lines for the members of `all` (in its order) added or removed.
fn set_diff<E: Clone + Ord>(
    out: &mut Vec<String>,
    path: &str,
    all: &[E],
    a: &BTreeSet<E>,
    b: &BTreeSet<E>,
    name: impl Fn(E) -> String,
    note: impl Fn(E, bool) -> Option<String>,
) {
    for e in all {
        let added = match (a.contains(e), b.contains(e)) {
            (false, true) => true,
            (true, false) => false,
            _ => continue,
        };
        let sign = if added { "+" } else { "−" };
        let note = note(e.clone(), added).map(|n| format!(" ({n})")).unwrap_or_default();
        out.push(format!("{path}: {sign} {}{note}", name(e.clone())));
    }
}

// ---------------------------------------------------------------------------------------------
// Deciding

/// A question as the policy sees it.
#[derive(Debug, Clone)]
pub struct Question {
    pub asker_node: String,
    pub asker_entity: EntityType,
    pub role: OperatorRole,
    pub purpose: Purpose,
    /// Required with purpose `emergenza`.
    pub break_glass: Option<BreakGlassReason>,
    /// Today, YYYYMMDD (consent validity, retention).
    pub today: u32,
}

/// A consent as the coordinator keeps it (already checked on arrival).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Consent {
    /// `node/consent_id`.
    pub label: String,
    pub categories: Vec<i32>,
    pub recipients: Vec<i32>,
    pub purposes: Vec<i32>,
    pub valid_from: u32,
    pub valid_until: u32,
    pub given_by: i32,
}

/// Why a question is refused before anything is looked up about the person. The text goes back
/// to the asking node and into the audit log: it says what is wrong and how to fix it, and never
/// anything about the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The question names no operator role.
    RoleUnspecified,
    /// The question names no purpose.
    PurposeUnspecified,
    PurposeNotAllowed { role: String, purpose: String },
    BreakGlassDisabled,
    BreakGlassRoleNotAllowed { role: String },
    BreakGlassReasonMissing,
    BreakGlassReasonWithoutEmergency,
    AnchorNotHeld,
    AnchorNotActive,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::RoleUnspecified => write!(
                f,
                "the question names no operator role: set operator_role to the role of the operator asking"
            ),
            Refusal::PurposeUnspecified => write!(
                f,
                "the question names no purpose: set purpose to the reason the operator is asking"
            ),
            Refusal::PurposeNotAllowed { role, purpose } => write!(
                f,
                "the purpose '{purpose}' is not allowed for the operator role '{role}' under the federation's policy: ask with a purpose the role allows, or ask the privacy officer to add it"
            ),
            Refusal::BreakGlassDisabled => write!(
                f,
                "break-glass (purpose 'emergenza') is not enabled under the federation's policy: ask with an ordinary purpose, or ask the privacy officer to enable [break_glass]"
            ),
            Refusal::BreakGlassRoleNotAllowed { role } => write!(
                f,
                "the operator role '{role}' may not ask under break-glass (purpose 'emergenza'): the policy's break_glass.roles lists the roles that may"
            ),
            Refusal::BreakGlassReasonMissing => write!(
                f,
                "a break-glass question (purpose 'emergenza') needs a reason: set break_glass_reason to pericolo_di_vita or incapacita_di_consentire"
            ),
            Refusal::BreakGlassReasonWithoutEmergency => write!(
                f,
                "a break-glass reason is only accepted with the purpose 'emergenza': leave break_glass_reason unset, or ask with purpose emergenza"
            ),
            Refusal::AnchorNotHeld => write!(
                f,
                "the anchor is not one of this node's published relationships: a node may only ask about a person it has in care (publish the relationship first)"
            ),
            Refusal::AnchorNotActive => write!(
                f,
                "the anchor relationship's status does not give need-to-know under the federation's policy (by default only segnalata, in_valutazione and attiva do): a closed or suspended relationship does not allow asking"
            ),
        }
    }
}

/// Checks purpose, role, break-glass and the need-to-know anchor, in that order; the first
/// failure is the refusal. `anchor` is the asking node's own published relationship the
/// question is anchored on (None: the node holds no such relationship).
pub fn check_question(policy: &Policy, q: &Question, anchor: Option<&RelationshipMeta>) -> Result<(), Refusal> {
    let role_name = || vocab::OperatorRoleName::name(q.role);
    if q.role == OperatorRole::Unspecified {
        return Err(Refusal::RoleUnspecified);
    }
    if q.purpose == Purpose::Unspecified {
        return Err(Refusal::PurposeUnspecified);
    }
    let reason = q.break_glass.filter(|r| *r != BreakGlassReason::Unspecified);
    if q.purpose == Purpose::Emergenza {
        if !policy.rules.break_glass_enabled {
            return Err(Refusal::BreakGlassDisabled);
        }
        if !policy.rules.break_glass_roles.contains(&q.role) {
            return Err(Refusal::BreakGlassRoleNotAllowed { role: role_name() });
        }
        if reason.is_none() {
            return Err(Refusal::BreakGlassReasonMissing);
        }
    } else {
        if reason.is_some() {
            return Err(Refusal::BreakGlassReasonWithoutEmergency);
        }
        if !policy.purpose_allowed(q.role, q.purpose) {
            return Err(Refusal::PurposeNotAllowed { role: role_name(), purpose: vocab::PurposeName::name(q.purpose) });
        }
    }
    let anchor = anchor.ok_or(Refusal::AnchorNotHeld)?;
    let status = RelationshipStatus::try_from(anchor.status).unwrap_or(RelationshipStatus::Unspecified);
    if !policy.status_allows_anchor(status) {
        return Err(Refusal::AnchorNotActive);
    }
    Ok(())
}

/// One rule's outcome for one relationship, for [`Decision::trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// What may be shown of one relationship, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub disclosure: Disclosure,
    /// Every rule evaluated, in order, for `explain`. Never sent to a case worker.
    pub trace: Vec<RuleOutcome>,
}

/// The rules [`decide`] applies, in order: the names in [`RuleOutcome::rule`].
pub const RULES: [&str; 6] = ["band", "obscuring", "retention", "tier", "consent", "sector-disclosure"];

/// A relationship in (or possibly in) the person's cluster, as the policy sees it.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub relationship: &'a RelationshipMeta,
    pub band: Band,
    pub obscured: bool,
    /// Consents recorded for the target's person cluster (already revoked ones removed).
    pub consents: &'a [&'a Consent],
}

/// Decides what `q` may see of `t`: the rules of [`RULES`], in order. The trace always has one
/// entry per rule; after the rule that withholds the relationship (if any), the rest read
/// `passed: false, detail: "not evaluated"`. Purpose and anchor are [`check_question`]'s.
pub fn decide(policy: &Policy, q: &Question, t: &Target<'_>) -> Decision {
    let r = &policy.rules;
    let rel = t.relationship;
    let category = ServiceCategory::try_from(rel.category).unwrap_or(ServiceCategory::Unspecified);
    let category_name = vocab::ServiceCategoryName::name(category);
    let mut trace = Vec::with_capacity(RULES.len());
    let withhold = |mut trace: Vec<RuleOutcome>, rule: &'static str, detail: String| {
        trace.push(RuleOutcome { rule, passed: false, detail });
        for rest in &RULES[trace.len()..] {
            trace.push(RuleOutcome { rule: rest, passed: false, detail: "not evaluated".into() });
        }
        Decision { disclosure: Disclosure::Nothing, trace }
    };
    let pass = |trace: &mut Vec<RuleOutcome>, rule: &'static str, detail: String| {
        trace.push(RuleOutcome { rule, passed: true, detail });
    };

    // 1. band
    match t.band {
        Band::Possible if !r.show_possible => {
            return withhold(trace, "band", "possible match: not shown (bands.show_possible = false)".into());
        }
        Band::Possible => pass(&mut trace, "band", "possible match: shown flagged \"to be verified\" (bands.show_possible = true)".into()),
        Band::Probable => pass(&mut trace, "band", "probable match: always shown".into()),
        Band::Certain => pass(&mut trace, "band", "certain match: always shown".into()),
    }

    // 2. obscuring
    if t.obscured {
        return withhold(trace, "obscuring", "the relationship is obscured (oscuramento) at the person's request".into());
    }
    pass(&mut trace, "obscuring", "not obscured".into());

    // 3. retention
    if rel.status == RelationshipStatus::Conclusa as i32 {
        let months = months_between(rel.since_month, q.today / 100);
        if policy.retention_expired(rel.since_month, q.today) {
            return withhold(
                trace,
                "retention",
                format!(
                    "closed in {}, {months} months ago: past retention (retention.closed_months = {})",
                    rel.since_month, r.closed_months
                ),
            );
        }
        pass(
            &mut trace,
            "retention",
            format!("closed in {}, {months} months ago: within retention ({} months)", rel.since_month, r.closed_months),
        );
    } else {
        pass(&mut trace, "retention", "not closed: retention does not apply".into());
    }

    // 4. tier
    let declared = rel.tier.clamp(0, 3);
    let tier = declared.max(r.tier_of(category));
    let source = if tier > declared { format!("policy tiers.{category_name}") } else { "the relationship".into() };
    pass(&mut trace, "tier", format!("{category_name}: {} (from {source})", tier_name(tier)));

    // 5. consent
    if r.consent_required_for.contains(&tier) {
        let mut failures = Vec::new();
        let mut matched = None;
        for c in t.consents {
            match consent_failure(r, q, category, c) {
                None => {
                    matched = Some(c.label.clone());
                    break;
                }
                Some(why) => failures.push(format!("{}: {why}", c.label)),
            }
        }
        match matched {
            Some(label) => pass(&mut trace, "consent", format!("{} needs consent: consent {label} covers it", tier_name(tier))),
            None if failures.is_empty() => {
                return withhold(trace, "consent", format!("{} needs consent: no consent recorded for the person", tier_name(tier)));
            }
            None => {
                return withhold(
                    trace,
                    "consent",
                    format!("{} needs consent: no consent covers it ({})", tier_name(tier), failures.join("; ")),
                );
            }
        }
    } else {
        pass(&mut trace, "consent", format!("{} does not need consent", tier_name(tier)));
    }

    // 6. sector-disclosure
    let s = sector(policy, q.asker_entity);
    let sd = &r.disclosure[s as usize];
    let (d, from) = match sd.categories.get(&category) {
        Some(d) => (*d, format!("disclosure.{}.{category_name}", s.as_str())),
        None => (sd.tiers[(tier.max(1) - 1) as usize], format!("disclosure.{}.{}", s.as_str(), tier_name(tier.max(1)))),
    };
    let entity = vocab::EntityType::name(q.asker_entity);
    let detail = format!("{} requester ({entity}): {} ({from})", s.as_str(), d.as_str());
    if d == Disclosure::Nothing {
        return withhold(trace, "sector-disclosure", detail);
    }
    pass(&mut trace, "sector-disclosure", detail);
    Decision { disclosure: d, trace }
}

/// Why consent `c` does not cover `category` for `q` (the first failing dimension), or None.
fn consent_failure(r: &Rules, q: &Question, category: ServiceCategory, c: &Consent) -> Option<&'static str> {
    if !c.categories.contains(&(category as i32)) {
        Some("category not in its scope")
    } else if !c.recipients.contains(&(q.asker_entity as i32)) {
        Some("the requester's entity type is not among its recipients")
    } else if !c.purposes.contains(&(q.purpose as i32)) {
        Some("the purpose is not in its scope")
    } else if !(c.valid_from <= q.today && q.today <= c.valid_until) {
        Some("not valid today")
    } else if c.given_by == ConsentGiver::Genitore as i32 && r.parent_cannot_unlock.contains(&category) {
        Some("given by a parent, who cannot unlock this category (consent.parent_cannot_unlock)")
    } else {
        None
    }
}

/// The requesting sector of an entity type under `policy` (`[sectors]`); an entity type the
/// table does not name (unspecified) is social.
pub fn sector(policy: &Policy, e: EntityType) -> Sector {
    policy.rules.sectors.get(&e).copied().unwrap_or(Sector::Social)
}

/// The contact role shown for a relationship's contact under `policy`: `case_manager_unita`
/// becomes `segreteria_unita` unless `contact.case_manager_direct` (role-based contact,
/// DOMAIN.md §7); every other value is shown as it is.
pub fn shown_contact(policy: &Policy, contact: i32) -> i32 {
    if contact == v1::ContactRole::CaseManagerUnita as i32 && !policy.rules.case_manager_direct {
        v1::ContactRole::SegreteriaUnita as i32
    } else {
        contact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponte_proto::v1::{ContactRole, SensitivityTier};

    fn policy(text: &str) -> Policy {
        let r = check(text);
        assert!(r.errors.is_empty(), "unexpected errors: {:?}", r.errors);
        r.policy.expect("no errors, so a policy")
    }

    /// `version = "t"` then `rest`: the rest starts on line 2.
    fn with(rest: &str) -> String {
        format!("version = \"t\"\n{rest}")
    }

    fn shown(ps: &[Problem]) -> Vec<String> {
        ps.iter().map(Problem::to_string).collect()
    }

    /// Exactly one error, at `at` ("line:column"), whose message contains `needle`.
    fn one_error(text: &str, at: &str, needle: &str) {
        let r = check(text);
        assert!(r.policy.is_none());
        assert_eq!(r.errors.len(), 1, "{:?}", shown(&r.errors));
        let e = r.errors[0].to_string();
        assert!(e.starts_with(&format!("{at}: ")), "expected at {at}: {e}");
        assert!(e.contains(needle), "expected {needle:?} in {e}");
    }

    /// No errors and exactly one warning, at `at`, containing `needle`.
    fn one_warning(text: &str, at: &str, needle: &str) {
        let r = check(text);
        assert!(r.errors.is_empty(), "{:?}", shown(&r.errors));
        assert!(r.policy.is_some());
        assert_eq!(r.warnings.len(), 1, "{:?}", shown(&r.warnings));
        let w = r.warnings[0].to_string();
        assert!(w.starts_with(&format!("{at}: ")), "expected at {at}: {w}");
        assert!(w.contains(needle), "expected {needle:?} in {w}");
    }

    #[test]
    fn default_policy_is_clean_and_means_the_defaults() {
        let r = check(DEFAULT_POLICY_TOML);
        assert!(r.errors.is_empty(), "{:?}", shown(&r.errors));
        assert!(r.warnings.is_empty(), "{:?}", shown(&r.warnings));
        let p = r.policy.unwrap();
        assert_eq!(p.version, "default-2026.1");
        assert_eq!(p.sha256, hex::encode(Sha256::digest(DEFAULT_POLICY_TOML.as_bytes())));
        assert_eq!(p.sha256.len(), 64);
        assert_eq!(p, Policy::default_policy());
        // Every section spelled out in default.toml says what the built-in defaults say.
        let bare = policy("version = \"default-2026.1\"");
        assert_eq!(Rules { description: String::new(), ..p.rules.clone() }, bare.rules);
        assert_eq!(diff(&p, &bare), vec!["description: changed"]);
        assert_eq!(p.retention_closed_months(), 12);
        assert_eq!(p.retention_sweep_secs(), 3600);
        assert_eq!(p.retention_audit_months(), 24);
        assert_eq!(p.break_glass_notify(), ["dpo-federazione"]);
        assert!(!p.break_glass_enabled());
    }

    #[test]
    fn syntax_error_has_its_position() {
        one_error(&with("[bands]\nshow_possible = tru\n"), "3:17", "TOML syntax error");
        one_error(&with("[bands\n"), "2:7", "TOML syntax error");
        one_error(&with("[bands]\nshow_possible = true\nshow_possible = false\n"), "4:1", "duplicate key: a key may appear once");
        one_error(&with("[bands]\nshow_possible = tru\n"), "3:17", "invalid boolean, expected `true`");
    }

    #[test]
    fn unknown_keys_name_the_valid_ones() {
        one_error(&with("[bands]\nshow_posible = true\n"), "3:1", "unknown key \"show_posible\" in [bands]; valid keys: show_possible");
        one_error(&with("verison = \"x\"\n"), "2:1", "valid keys: version, description, purposes");
        one_error(&with("[retention]\nclosed = 3\n"), "3:1", "closed_months, sweep_interval_secs, audit_months");
        one_error(&with("[disclosure.social]\nt4 = \"full\"\n"), "3:1", "use t1, t2, t3");
        one_error(&with("[disclosure.sociale]\nt1 = \"full\"\n"), "2:13", "valid keys: social, health");
    }

    #[test]
    fn unknown_role_and_purpose() {
        one_error(&with("[purposes]\nassistente = [\"convocazione_uvm\"]\n"), "3:1", "\"assistente\" is not an operator role; use one of: assistente_sociale");
        one_error(&with("[purposes]\nmmg = [\"continuita\", \"convocazione_uvm\"]\n"), "3:8", "\"continuita\" is not a purpose");
        one_error(&with("[break_glass]\nroles = [\"mmg\", \"medico\"]\n"), "3:17", "\"medico\" is not an operator role");
        one_error(&with("[purposes]\nmmg = [\"convocazione_uvm\", \"convocazione_uvm\"]\n"), "3:28", "listed twice");
    }

    #[test]
    fn emergenza_belongs_to_break_glass() {
        one_error(
            &with("[purposes]\nmmg = [\"convocazione_uvm\", \"emergenza\"]\n"),
            "3:28",
            "\"emergenza\" is governed by [break_glass], not [purposes]: remove it here and set break_glass.enabled = true",
        );
    }

    #[test]
    fn tiers_only_get_stricter() {
        one_error(&with("[tiers]\ncentro_diurno = \"t1\"\n"), "3:17", "less strict than the category's tier t2");
        one_error(&with("[tiers]\nserd = \"t2\"\n"), "3:8", "only make a tier stricter");
        one_error(&with("[tiers]\nadi = \"t3\"\n"), "3:1", "\"adi\" is not a service category");
        let p = policy(&with("[tiers]\ncentro_diurno = \"t3\"\nsegretariato_sociale = \"t1\"\n"));
        assert_eq!(p.rules.tier_of(ServiceCategory::CentroDiurno), 3);
        assert_eq!(p.rules.tiers.len(), 1, "a tier equal to the default is no override");
    }

    #[test]
    fn obscuring_cannot_be_turned_off() {
        one_error(&with("[obscuring]\nhonour = false\n"), "3:10", "cannot be turned off");
        assert!(check(&with("[obscuring]\nhonour = true\n")).errors.is_empty());
    }

    #[test]
    fn version_is_required_and_checked() {
        one_error("version = \"bad version!\"\n", "1:11", "is not valid");
        one_error(&format!("version = \"{}\"", "a".repeat(65)), "1:11", "1 to 64");
        one_error("# no version\n[bands]\nshow_possible = true\n", "1:1", "the policy has no version");
        one_error("version = 3\n", "1:11", "version must be a string in double quotes, not an integer");
        assert_eq!(policy("version = \"asl-2026.2_b\"").version, "asl-2026.2_b");
    }

    #[test]
    fn values_out_of_range_or_of_the_wrong_type() {
        one_error(&with("[retention]\nclosed_months = 0\n"), "3:17", "from 1 to 600");
        one_error(&with("[retention]\nclosed_months = 601\n"), "3:17", "retention.closed_months = 601 is out of range");
        one_error(&with("[retention]\nsweep_interval_secs = 5\n"), "3:23", "from 10 to 86400");
        one_error(&with("[retention]\naudit_months = 2.5\n"), "3:16", "a whole number of months");
        one_error(&with("[bands]\nshow_possible = \"yes\"\n"), "3:17", "true or false");
        one_error(&with("purposes = 3\n"), "2:12", "a table");
        one_error(&with("[sectors]\nasl = \"sanitario\"\n"), "3:7", "use social or health");
        one_error(&with("[sectors]\nusl = \"health\"\n"), "3:1", "is not an entity type");
        one_error(&with("[disclosure.health]\nt2 = \"partial\"\n"), "3:6", "use full, generalised or nothing");
        one_error(&with("[break_glass]\nnotify = [\"DPO Lecce\"]\n"), "3:11", "is not a certificate id");
        one_error(&with("[consent]\nrequired_for = [\"t3\", 3]\n"), "3:23", "must be a string");
        let r = check(&" ".repeat(MAX_POLICY_BYTES + 1));
        assert_eq!(shown(&r.errors), [format!("1:1: the policy is {} bytes; at most {MAX_POLICY_BYTES} bytes are allowed", MAX_POLICY_BYTES + 1)]);
    }

    #[test]
    fn columns_count_characters_and_problems_come_in_file_order() {
        // "è" is two bytes: the column counts it once.
        one_error(&with("description = \"è\"\n[bands]\nshow_possible = 1\n"), "4:17", "true or false");
        let r = check(&with("[retention]\nsweep_interval_secs = 1\n[bands]\nshow_possible = 1\n[anchor]\nstatuses = [\"x\"]\n"));
        let at: Vec<(usize, usize)> = r.errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, [(3, 23), (5, 17), (7, 13)]);
    }

    #[test]
    fn warnings_flag_weakened_protections() {
        one_warning(&with("[consent]\nrequired_for = [\"t2\"]\n"), "3:16", "T3 services");
        one_warning(&with("[consent]\nrequired_for = []\n"), "3:16", "without the person's consent");
        one_warning(&with("[anchor]\nstatuses = [\"attiva\", \"conclusa\"]\n"), "3:23", "\"conclusa\": a closed relationship");
        one_warning(&with("[anchor]\nstatuses = [\"sospesa\", \"attiva\"]\n"), "3:13", "suspended");
        one_warning(&with("[break_glass]\nenabled = true\nnotify = []\n"), "4:10", "no privacy officer will be told");
        one_warning(&with("[retention]\naudit_months = 12\n"), "3:16", "less than 24 months");
        one_warning(&with("[retention]\nclosed_months = 121\n"), "3:17", "more than 10 years");
        one_warning(&with("[disclosure.social]\nt2 = \"full\"\n"), "3:6", "health-revealing (t2)");
        one_warning(&with("[disclosure.social]\nresidenziale_rsa = \"full\"\nsegretariato_sociale = \"full\"\n"), "3:20", "residenziale_rsa");
        // The warning sees a stricter tier declared later in the file.
        one_warning(&with("[disclosure.social]\ncontributo_economico = \"full\"\n[tiers]\ncontributo_economico = \"t2\"\n"), "3:24", "(t2)");
        one_warning(&with("[consent]\nparent_cannot_unlock = [\"ivg\"]\n"), "3:24", "minor's consultorio");
        // Enabled with the default notify list is fine.
        let r = check(&with("[break_glass]\nenabled = true\n"));
        assert!(r.errors.is_empty() && r.warnings.is_empty(), "{:?} {:?}", r.errors, r.warnings);
    }

    #[test]
    fn purposes_section_is_the_complete_list() {
        let p = policy(&with("[purposes]\nmmg = [\"continuita_assistenziale\"]\n"));
        assert!(p.purpose_allowed(OperatorRole::Mmg, Purpose::ContinuitaAssistenziale));
        assert!(!p.purpose_allowed(OperatorRole::Mmg, Purpose::ConvocazioneUvm));
        assert!(!p.purpose_allowed(OperatorRole::AssistenteSociale, Purpose::ContinuitaAssistenziale));
        let d = Policy::default_policy();
        assert!(d.purpose_allowed(OperatorRole::AssistenteSociale, Purpose::ContinuitaAssistenziale));
        assert!(!d.purpose_allowed(OperatorRole::OperatorePua, Purpose::DimissioneProtetta));
        assert!(!d.purpose_allowed(OperatorRole::Mmg, Purpose::Emergenza));
    }

    #[test]
    fn diff_lists_changes_in_order() {
        let old = Policy::default_policy();
        let new = policy(
            r#"version = "asl-2026.2"
description = "Default Ponte policy: DOMAIN.md §7 as shipped"
[retention]
closed_months = 6
audit_months = 12
[consent]
required_for = []
[disclosure.social]
t2 = "full"
centro_diurno = "nothing"
[purposes]
mmg = ["continuita_assistenziale", "convocazione_uvm", "dimissione_protetta", "richiesta_interessato"]
assistente_sociale = ["continuita_assistenziale", "convocazione_uvm", "dimissione_protetta"]
operatore_pua = ["continuita_assistenziale", "convocazione_uvm"]
membro_uvm = ["continuita_assistenziale", "convocazione_uvm"]
operatore_cot = ["continuita_assistenziale"]
referente_privacy = ["richiesta_interessato"]
[tiers]
centro_diurno = "t3"
[sectors]
provider = "health"
[break_glass]
enabled = true
notify = ["dpo-federazione", "dpo-asl-lecce"]
[anchor]
statuses = ["segnalata", "in_valutazione", "attiva", "sospesa"]
[contact]
case_manager_direct = true
[bands]
show_possible = false
"#,
        );
        assert_eq!(
            diff(&old, &new),
            [
                "version: default-2026.1 → asl-2026.2",
                "purposes.operatore_cot: − dimissione_protetta",
                "purposes.mmg: + richiesta_interessato",
                "anchor.statuses: + sospesa (WARNING: gives need-to-know without an active or pending relationship)",
                "sectors.provider: social → health",
                "tiers.centro_diurno: t2 → t3",
                "disclosure.social.t2: generalised → full",
                "disclosure.social.centro_diurno: (tier default) → nothing",
                "consent.required_for: − t3 (WARNING: T3 disclosed without consent)",
                "break_glass.enabled: false → true",
                "break_glass.notify: + dpo-asl-lecce",
                "bands.show_possible: true → false",
                "contact.case_manager_direct: false → true",
                "retention.closed_months: 12 → 6",
                "retention.audit_months: 24 → 12 (WARNING: audit kept less than 24 months)",
            ]
        );
        assert!(diff(&old, &old).is_empty());
        assert_eq!(diff(&new, &old)[0], "version: asl-2026.2 → default-2026.1");
        // Reformatting or spelling out defaults is no change.
        let spelled = policy("version = \"default-2026.1\"\ndescription = \"Default Ponte policy: DOMAIN.md §7 as shipped\"\n[retention]\nclosed_months = 12 # same\n");
        assert!(diff(&old, &spelled).is_empty(), "{:?}", diff(&old, &spelled));
    }

    // --- questions --------------------------------------------------------------------------

    fn rel(category: ServiceCategory, status: RelationshipStatus) -> RelationshipMeta {
        RelationshipMeta {
            entity_type: EntityType::Asl as i32,
            unit: "distretto-lecce.pua".into(),
            category: category as i32,
            tier: vocab::default_tier(category) as i32,
            status: status as i32,
            since_month: 202402,
            case_manager: false,
            plan: v1::PlanType::PlanNone as i32,
            contact: ContactRole::SportelloPua as i32,
        }
    }

    fn q(entity: EntityType, role: OperatorRole, purpose: Purpose) -> Question {
        Question { asker_node: "comune-lecce".into(), asker_entity: entity, role, purpose, break_glass: None, today: 20250115 }
    }

    #[test]
    fn check_question_table() {
        use OperatorRole as R;
        use Purpose as P;
        let d = Policy::default_policy();
        let bg = policy(&with("[break_glass]\nenabled = true\n"));
        let active = rel(ServiceCategory::SegretariatoSociale, RelationshipStatus::Attiva);
        let pending = rel(ServiceCategory::SegretariatoSociale, RelationshipStatus::Segnalata);
        let closed = rel(ServiceCategory::SegretariatoSociale, RelationshipStatus::Conclusa);
        let suspended = rel(ServiceCategory::SegretariatoSociale, RelationshipStatus::Sospesa);
        let reason = Some(BreakGlassReason::PericoloDiVita);
        type Case<'a> = (&'a Policy, R, P, Option<BreakGlassReason>, Option<&'a RelationshipMeta>, Result<(), Refusal>);
        let cases: Vec<Case<'_>> = vec![
            (&d, R::AssistenteSociale, P::ContinuitaAssistenziale, None, Some(&active), Ok(())),
            (&d, R::OperatorePua, P::ConvocazioneUvm, None, Some(&pending), Ok(())),
            (&d, R::ReferentePrivacy, P::RichiestaInteressato, None, Some(&active), Ok(())),
            (&d, R::Unspecified, P::ContinuitaAssistenziale, None, Some(&active), Err(Refusal::RoleUnspecified)),
            (&d, R::Mmg, P::Unspecified, None, Some(&active), Err(Refusal::PurposeUnspecified)),
            (
                &d,
                R::OperatorePua,
                P::DimissioneProtetta,
                None,
                Some(&active),
                Err(Refusal::PurposeNotAllowed { role: "operatore_pua".into(), purpose: "dimissione_protetta".into() }),
            ),
            (
                &d,
                R::ReferentePrivacy,
                P::ContinuitaAssistenziale,
                None,
                Some(&active),
                Err(Refusal::PurposeNotAllowed { role: "referente_privacy".into(), purpose: "continuita_assistenziale".into() }),
            ),
            (&d, R::Mmg, P::Emergenza, reason, Some(&active), Err(Refusal::BreakGlassDisabled)),
            (&bg, R::Mmg, P::Emergenza, reason, Some(&active), Ok(())),
            (&bg, R::OperatoreCot, P::Emergenza, Some(BreakGlassReason::IncapacitaDiConsentire), Some(&active), Ok(())),
            (&bg, R::AssistenteSociale, P::Emergenza, reason, Some(&active), Err(Refusal::BreakGlassRoleNotAllowed { role: "assistente_sociale".into() })),
            (&bg, R::Mmg, P::Emergenza, None, Some(&active), Err(Refusal::BreakGlassReasonMissing)),
            (&bg, R::Mmg, P::Emergenza, Some(BreakGlassReason::Unspecified), Some(&active), Err(Refusal::BreakGlassReasonMissing)),
            (&bg, R::Mmg, P::ContinuitaAssistenziale, reason, Some(&active), Err(Refusal::BreakGlassReasonWithoutEmergency)),
            (&bg, R::Mmg, P::Emergenza, reason, None, Err(Refusal::AnchorNotHeld)),
            (&d, R::Mmg, P::ContinuitaAssistenziale, None, None, Err(Refusal::AnchorNotHeld)),
            (&d, R::Mmg, P::ContinuitaAssistenziale, None, Some(&closed), Err(Refusal::AnchorNotActive)),
            (&d, R::Mmg, P::ContinuitaAssistenziale, None, Some(&suspended), Err(Refusal::AnchorNotActive)),
        ];
        for (i, (p, role, purpose, reason, anchor, want)) in cases.into_iter().enumerate() {
            let mut question = q(EntityType::Comune, role, purpose);
            question.break_glass = reason;
            assert_eq!(check_question(p, &question, anchor), want, "case {i}");
        }
        // The anchor statuses come from the policy.
        let lax = policy(&with("[anchor]\nstatuses = [\"attiva\", \"sospesa\"]\n"));
        let question = q(EntityType::Comune, R::Mmg, P::ContinuitaAssistenziale);
        assert_eq!(check_question(&lax, &question, Some(&suspended)), Ok(()));
        assert_eq!(check_question(&lax, &question, Some(&pending)), Err(Refusal::AnchorNotActive));
        // Refusal texts say how to fix, and nothing about the person.
        assert!(Refusal::BreakGlassDisabled.to_string().contains("enable [break_glass]"));
        assert!(Refusal::BreakGlassReasonMissing.to_string().contains("pericolo_di_vita"));
    }

    // --- decisions --------------------------------------------------------------------------

    fn consent(categories: &[ServiceCategory], recipients: &[EntityType], purposes: &[Purpose]) -> Consent {
        Consent {
            label: "asl-lecce/c1".into(),
            categories: categories.iter().map(|c| *c as i32).collect(),
            recipients: recipients.iter().map(|e| *e as i32).collect(),
            purposes: purposes.iter().map(|p| *p as i32).collect(),
            valid_from: 20240101,
            valid_until: 20251231,
            given_by: ConsentGiver::Interessato as i32,
        }
    }

    fn decide_one(p: &Policy, question: &Question, r: &RelationshipMeta, band: Band, obscured: bool, consents: &[&Consent]) -> Decision {
        let d = decide(p, question, &Target { relationship: r, band, obscured, consents });
        assert_eq!(d.trace.iter().map(|o| o.rule).collect::<Vec<_>>(), RULES, "every rule recorded, in order");
        d
    }

    /// The rule that withheld the relationship (the last one passed = false before "not evaluated").
    fn failed_rule(d: &Decision) -> Option<&'static str> {
        d.trace.iter().find(|o| !o.passed).map(|o| o.rule)
    }

    #[test]
    fn decide_sector_disclosure() {
        let d = Policy::default_policy();
        let comune = q(EntityType::Comune, OperatorRole::AssistenteSociale, Purpose::ContinuitaAssistenziale);
        let asl = q(EntityType::Asl, OperatorRole::Mmg, Purpose::ContinuitaAssistenziale);
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        let sad = rel(ServiceCategory::AssistenzaDomiciliareSociale, RelationshipStatus::Attiva);
        let x = decide_one(&d, &comune, &adi, Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Generalised, "social gets generalised T2");
        assert!(x.trace.iter().all(|o| o.passed));
        assert!(x.trace[5].detail.contains("disclosure.social.t2"), "{}", x.trace[5].detail);
        assert_eq!(decide_one(&d, &asl, &adi, Band::Certain, false, &[]).disclosure, Disclosure::Full, "health gets full");
        assert_eq!(decide_one(&d, &comune, &sad, Band::Certain, false, &[]).disclosure, Disclosure::Full, "T1 full for social");
        // Per-category override beats the tier default, for that sector only.
        let p = policy(&with("[disclosure.social]\ncure_domiciliari = \"full\"\n[disclosure.health]\nsegretariato_sociale = \"nothing\"\n"));
        let x = decide_one(&p, &comune, &adi, Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Full);
        assert!(x.trace[5].detail.contains("disclosure.social.cure_domiciliari"), "{}", x.trace[5].detail);
        assert_eq!(decide_one(&p, &comune, &rel(ServiceCategory::CurePalliative, RelationshipStatus::Attiva), Band::Certain, false, &[]).disclosure, Disclosure::Generalised);
        let x = decide_one(&p, &asl, &rel(ServiceCategory::SegretariatoSociale, RelationshipStatus::Attiva), Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert_eq!(failed_rule(&x), Some("sector-disclosure"));
        // The sectors table decides who is social.
        let p = policy(&with("[sectors]\ncomune = \"health\"\n"));
        assert_eq!(sector(&p, EntityType::Comune), Sector::Health);
        assert_eq!(decide_one(&p, &comune, &adi, Band::Certain, false, &[]).disclosure, Disclosure::Full);
        assert_eq!(sector(&d, EntityType::Unspecified), Sector::Social);
    }

    #[test]
    fn decide_tier_override_is_stricter() {
        let p = policy(&with("[tiers]\ncentro_diurno = \"t3\"\n"));
        let asl = q(EntityType::Asl, OperatorRole::Mmg, Purpose::ContinuitaAssistenziale);
        let cd = rel(ServiceCategory::CentroDiurno, RelationshipStatus::Attiva);
        let x = decide_one(&p, &asl, &cd, Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing, "now T3: needs consent");
        assert!(x.trace[3].detail.contains("t3 (from policy tiers.centro_diurno)"), "{}", x.trace[3].detail);
        assert_eq!(failed_rule(&x), Some("consent"));
        assert_eq!(x.trace[5], RuleOutcome { rule: "sector-disclosure", passed: false, detail: "not evaluated".into() });
        let c = consent(&[ServiceCategory::CentroDiurno], &[EntityType::Asl], &[Purpose::ContinuitaAssistenziale]);
        assert_eq!(decide_one(&p, &asl, &cd, Band::Certain, false, &[&c]).disclosure, Disclosure::Full);
        // Without the override the default policy shows it.
        assert_eq!(decide_one(&Policy::default_policy(), &asl, &cd, Band::Certain, false, &[]).disclosure, Disclosure::Full);
        // A node's declared stricter tier counts too.
        let mut declared = cd.clone();
        declared.tier = SensitivityTier::T3 as i32;
        assert_eq!(decide_one(&Policy::default_policy(), &asl, &declared, Band::Certain, false, &[]).disclosure, Disclosure::Nothing);
    }

    #[test]
    fn decide_consent_each_dimension() {
        use EntityType as E;
        use Purpose as P;
        use ServiceCategory as C;
        let d = Policy::default_policy();
        let comune = q(E::Comune, OperatorRole::AssistenteSociale, P::ContinuitaAssistenziale);
        let serd = rel(C::Serd, RelationshipStatus::Attiva);
        let good = consent(&[C::Serd, C::SaluteMentale], &[E::Comune, E::Asl], &[P::ContinuitaAssistenziale]);
        let x = decide_one(&d, &comune, &serd, Band::Certain, false, &[&good]);
        assert_eq!(x.disclosure, Disclosure::Generalised, "T3 with consent, social: generalised");
        assert!(x.trace[4].passed && x.trace[4].detail.contains("asl-lecce/c1"), "{}", x.trace[4].detail);

        let no_consent = decide_one(&d, &comune, &serd, Band::Certain, false, &[]);
        assert_eq!(no_consent.disclosure, Disclosure::Nothing);
        assert!(no_consent.trace[4].detail.contains("no consent recorded"));

        let cases: Vec<(Consent, &str)> = vec![
            (consent(&[C::SaluteMentale], &[E::Comune], &[P::ContinuitaAssistenziale]), "category"),
            (consent(&[C::Serd], &[E::Asl], &[P::ContinuitaAssistenziale]), "entity type"),
            (consent(&[C::Serd], &[E::Comune], &[P::ConvocazioneUvm]), "purpose"),
            (Consent { valid_until: 20250114, ..good.clone() }, "not valid today"),
            (Consent { valid_from: 20250116, ..good.clone() }, "not valid today"),
        ];
        for (c, why) in &cases {
            let x = decide_one(&d, &comune, &serd, Band::Certain, false, &[c]);
            assert_eq!(x.disclosure, Disclosure::Nothing, "{why}");
            assert_eq!(failed_rule(&x), Some("consent"));
            assert!(x.trace[4].detail.contains(why), "{why}: {}", x.trace[4].detail);
        }
        // Validity is inclusive at both ends.
        for c in [Consent { valid_until: 20250115, ..good.clone() }, Consent { valid_from: 20250115, ..good.clone() }] {
            assert_eq!(decide_one(&d, &comune, &serd, Band::Certain, false, &[&c]).disclosure, Disclosure::Generalised);
        }
        // One covering consent among failing ones is enough.
        let x = decide_one(&d, &comune, &serd, Band::Certain, false, &[&cases[0].0, &good]);
        assert_eq!(x.disclosure, Disclosure::Generalised);
        // T2 needs no consent by default; with required_for t2 it does.
        let adi = rel(C::CureDomiciliari, RelationshipStatus::Attiva);
        assert_eq!(decide_one(&d, &comune, &adi, Band::Certain, false, &[]).disclosure, Disclosure::Generalised);
        let strict = policy(&with("[consent]\nrequired_for = [\"t2\", \"t3\"]\n"));
        assert_eq!(decide_one(&strict, &comune, &adi, Band::Certain, false, &[]).disclosure, Disclosure::Nothing);
    }

    #[test]
    fn decide_parent_cannot_unlock_consultorio() {
        use ServiceCategory as C;
        let d = Policy::default_policy();
        let asl = q(EntityType::Asl, OperatorRole::Mmg, Purpose::ContinuitaAssistenziale);
        let scope = [C::Consultorio, C::Npia];
        let mut parent = consent(&scope, &[EntityType::Asl], &[Purpose::ContinuitaAssistenziale]);
        parent.given_by = ConsentGiver::Genitore as i32;
        let x = decide_one(&d, &asl, &rel(C::Consultorio, RelationshipStatus::Attiva), Band::Certain, false, &[&parent]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert!(x.trace[4].detail.contains("parent"), "{}", x.trace[4].detail);
        // The same parent's consent unlocks NPIA, and the person's own consent unlocks consultorio.
        assert_eq!(decide_one(&d, &asl, &rel(C::Npia, RelationshipStatus::Attiva), Band::Certain, false, &[&parent]).disclosure, Disclosure::Full);
        let own = Consent { given_by: ConsentGiver::Interessato as i32, ..parent.clone() };
        assert_eq!(decide_one(&d, &asl, &rel(C::Consultorio, RelationshipStatus::Attiva), Band::Certain, false, &[&own]).disclosure, Disclosure::Full);
    }

    #[test]
    fn decide_break_glass_does_not_unlock_t3() {
        let bg = policy(&with("[break_glass]\nenabled = true\n"));
        let mut emergency = q(EntityType::Asl, OperatorRole::OperatoreCot, Purpose::Emergenza);
        emergency.break_glass = Some(BreakGlassReason::PericoloDiVita);
        let serd = rel(ServiceCategory::Serd, RelationshipStatus::Attiva);
        let x = decide_one(&bg, &emergency, &serd, Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert_eq!(failed_rule(&x), Some("consent"));
        // A consent for another purpose does not cover an emergency either.
        let c = consent(&[ServiceCategory::Serd], &[EntityType::Asl], &[Purpose::ContinuitaAssistenziale]);
        assert_eq!(decide_one(&bg, &emergency, &serd, Band::Certain, false, &[&c]).disclosure, Disclosure::Nothing);
        let c = consent(&[ServiceCategory::Serd], &[EntityType::Asl], &[Purpose::Emergenza]);
        assert_eq!(decide_one(&bg, &emergency, &serd, Band::Certain, false, &[&c]).disclosure, Disclosure::Full);
        // T2 is shown under break-glass as for any question.
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);
        assert_eq!(decide_one(&bg, &emergency, &adi, Band::Certain, false, &[]).disclosure, Disclosure::Full);
    }

    #[test]
    fn decide_band_obscuring_retention() {
        let d = Policy::default_policy();
        let hide = policy(&with("[bands]\nshow_possible = false\n"));
        let asl = q(EntityType::Asl, OperatorRole::Mmg, Purpose::ContinuitaAssistenziale);
        let adi = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Attiva);

        assert_eq!(decide_one(&d, &asl, &adi, Band::Possible, false, &[]).disclosure, Disclosure::Full);
        let x = decide_one(&hide, &asl, &adi, Band::Possible, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert_eq!(failed_rule(&x), Some("band"));
        assert!(x.trace[1..].iter().all(|o| !o.passed && o.detail == "not evaluated"));
        assert_eq!(decide_one(&hide, &asl, &adi, Band::Probable, false, &[]).disclosure, Disclosure::Full);

        let x = decide_one(&d, &asl, &adi, Band::Certain, true, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert_eq!(failed_rule(&x), Some("obscuring"));
        // Obscuring beats consent.
        let c = consent(&[ServiceCategory::CureDomiciliari], &[EntityType::Asl], &[Purpose::ContinuitaAssistenziale]);
        assert_eq!(decide_one(&d, &asl, &adi, Band::Certain, true, &[&c]).disclosure, Disclosure::Nothing);

        // Closed in 2024-01; today 2025-01-15: exactly 12 months → expired.
        let mut closed = rel(ServiceCategory::CureDomiciliari, RelationshipStatus::Conclusa);
        closed.since_month = 202401;
        let x = decide_one(&d, &asl, &closed, Band::Certain, false, &[]);
        assert_eq!(x.disclosure, Disclosure::Nothing);
        assert_eq!(failed_rule(&x), Some("retention"));
        closed.since_month = 202402; // 11 months
        assert_eq!(decide_one(&d, &asl, &closed, Band::Certain, false, &[]).disclosure, Disclosure::Full);
        let six = policy(&with("[retention]\nclosed_months = 6\n"));
        assert_eq!(decide_one(&six, &asl, &closed, Band::Certain, false, &[]).disclosure, Disclosure::Nothing);
        // Active relationships never expire.
        let mut old = adi.clone();
        old.since_month = 199001;
        assert_eq!(decide_one(&d, &asl, &old, Band::Certain, false, &[]).disclosure, Disclosure::Full);
        assert!(d.retention_expired(202401, 20250101));
        assert!(!d.retention_expired(202401, 20241231));
    }

    #[test]
    fn contact_and_dates() {
        let d = Policy::default_policy();
        let direct = policy(&with("[contact]\ncase_manager_direct = true\n"));
        let cm = ContactRole::CaseManagerUnita as i32;
        assert_eq!(shown_contact(&d, cm), ContactRole::SegreteriaUnita as i32);
        assert_eq!(shown_contact(&direct, cm), cm);
        assert_eq!(shown_contact(&d, ContactRole::SportelloPua as i32), ContactRole::SportelloPua as i32);
        assert_eq!(day_of_unix_time(0), 19700101);
        assert_eq!(day_of_unix_time(951_782_400), 20000229);
        assert_eq!(day_of_unix_time(1_735_689_599), 20241231);
        assert_eq!(day_of_unix_time(1_735_689_600), 20250101);
    }
}
