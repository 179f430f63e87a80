//! The encoder: a normalised identity → a record-level Bloom filter (CLK), optional field-level
//! filters, and keyed exact tokens, hardened as the linkage schema says.
//!
//! # Keys
//!
//! Every key is derived from the linkage secret with HKDF-SHA256 (salt `ponte-linkage/v1`) under
//! its own info string, so no two uses share a key:
//!
//! | info | use |
//! |---|---|
//! | `ponte/v1/clk/<feature>` | the feature's tokens in the CLK |
//! | `ponte/v1/clk-salted-yob/<feature>` | the same, salted with the year of birth |
//! | `ponte/v1/field/<feature>` | the feature's tokens in its field-level filter |
//! | `ponte/v1/field-salted-yob/<feature>` | the same, salted |
//! | `ponte/v1/token/<kind>` | exact tokens |
//! | `ponte/v1/balance/clk`, `ponte/v1/balance/field/<feature>` | balancing permutations |
//! | `ponte/v1/blip/record-seed`, `ponte/v1/blip/stream` | BLIP randomness |
//!
//! Field filters have keys of their own so that their bits cannot be lined up with the CLK's
//! (which would split the CLK back into per-field pieces).
//!
//! # Hashing
//!
//! A token's bit positions are read from HMAC-SHA256(key, input) as successive little-endian
//! 16-bit chunks masked to the filter length, and when more than 16 positions are needed from
//! HMAC-SHA256(key, input ‖ 0x00 ‖ counter) for counter = 1, 2, … ("random hashing"; never double
//! hashing). The input is the token's UTF-8 bytes; for a salted token it is the birth year as two
//! big-endian bytes followed by the token, under the salted key. A record without a birth year
//! hashes the tokens of salted fields unsalted (plain key, no year). Filter lengths are powers
//! of two, so positions are unbiased. Missing values contribute no tokens: absence never looks
//! like agreement.
//!
//! # Hardening
//!
//! In the order of `ponte_proto::schema`: XOR-fold → Rule 90 → BLIP → balance, the same for the
//! CLK and every field filter.
//!
//! **BLIP** flips each bit with probability p using a keyed PRF, not a random generator:
//! 1. record seed = HMAC-SHA256(K_seed, raw CLK), where K_seed is HKDF info
//!    `ponte/v1/blip/record-seed` and the raw CLK is the record's CLK before any hardening (all its
//!    features, salted as configured);
//! 2. the filter's stream is the concatenation of HMAC-SHA256(K_stream, label ‖ 0x00 ‖ record
//!    seed ‖ counter as 8 big-endian bytes) for counter = 0, 1, …, with label `clk` or
//!    `field/<feature>`, read as little-endian u32 values;
//! 3. the gaps between flipped bits are geometric: each u32 `u` gives the number of bits to leave
//!    untouched, the count of j ≥ 1 with u < T_j, where T_0 = 2³², T_j = ⌊T_{j−1}·(2³² − P)/2³²⌋
//!    and P = round(p·2³²). Each bit is thus flipped independently with probability P/2³², in
//!    integer arithmetic only (identical on every platform), reading ~p·n values instead of n.
//!
//! Why deterministic: the same record must always encode to the same bytes. A node republishes
//! records (after a crash, a changed relationship, a re-import); re-sent batches are idempotent
//! upserts and an unchanged encoding is recognisably unchanged. Fresh noise on each publication
//! would instead let the coordinator collect several noisy copies of one record and take the
//! majority of each bit, averaging BLIP's protection away. Seeding from the whole record (not
//! only the filter's own field) gives equal values in different records different flips, so a
//! frequent name's field filter does not get one fixed noise pattern.
//!
//! **Balancing** appends the complement and applies a fixed permutation of the 2n positions,
//! drawn once per filter by Fisher–Yates from HMAC-SHA256(K_balance, counter as 8 big-endian
//! bytes) as little-endian u32 values, unbiased by rejection.
//!
//! Pure: same secret + schema + identity → same bytes, on every platform. Fast: the keyed HMAC
//! states are prepared once per encoder and cloned per token; tokens are hashed from borrowed
//! bytes without allocating.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use ponte_proto::schema::{Hardening, LinkageSchema, Tokenizer};
use ponte_proto::v1::TokenKind;
use sha2::Sha256;

use crate::normalise::{NormalisedIdentity, OtherIdKind, Sex};
use crate::secret::LinkageSecret;

type HmacSha256 = Hmac<Sha256>;

/// The encoding of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    /// The record-level filter as published: `schema.clk_bytes()` bytes.
    pub clk: Vec<u8>,
    pub tokens: Vec<(TokenKind, [u8; 32])>,
    pub quality_flags: u32,
    /// (feature, published filter) for every schema field with `field_filter_bits`, in schema
    /// order; present (all zero before hardening) even when the value is missing.
    pub field_filters: Vec<(String, Vec<u8>)>,
}

/// The features of `ponte_proto::schema::KNOWN_FEATURES`, resolved once per encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feature {
    Surname,
    SurnameFirstToken,
    SurnameAlias,
    GivenNames,
    GivenNameFirst,
    GivenNameCanonical,
    Sex,
    BirthYear,
    BirthMonth,
    BirthDay,
    Birthplace,
    CodiceFiscaleChars,
}

impl Feature {
    fn from_name(name: &str) -> Option<Feature> {
        Some(match name {
            "surname" => Feature::Surname,
            "surname_first_token" => Feature::SurnameFirstToken,
            "surname_alias" => Feature::SurnameAlias,
            "given_names" => Feature::GivenNames,
            "given_name_first" => Feature::GivenNameFirst,
            "given_name_canonical" => Feature::GivenNameCanonical,
            "sex" => Feature::Sex,
            "birth_year" => Feature::BirthYear,
            "birth_month" => Feature::BirthMonth,
            "birth_day" => Feature::BirthDay,
            "birthplace" => Feature::Birthplace,
            "codice_fiscale_chars" => Feature::CodiceFiscaleChars,
            _ => return None,
        })
    }

    /// The feature's value for `id`, borrowed; `None` when missing or empty.
    fn value<'a>(self, id: &'a NormalisedIdentity) -> Option<Value<'a>> {
        let text = |s: &'a str| (!s.is_empty()).then_some(Value::Text(s));
        match self {
            Feature::Surname => text(&id.surname),
            Feature::SurnameFirstToken => id.surname_tokens.first().and_then(|s| text(s)),
            Feature::SurnameAlias => id.surname_alias.as_deref().and_then(text),
            Feature::GivenNames => {
                id.given_names.iter().any(|g| !g.is_empty()).then_some(Value::Joined(&id.given_names))
            }
            Feature::GivenNameFirst => id.given_names.first().and_then(|s| text(s)),
            Feature::GivenNameCanonical => id
                .given_name_canonical
                .as_deref()
                .or(id.given_names.first().map(String::as_str))
                .and_then(text),
            Feature::Sex => id.sex.map(|s| Value::Ascii(*if s == Sex::M { b"M   " } else { b"F   " }, 1)),
            Feature::BirthYear => id.birth_date.map(|d| Value::Ascii(digits4(d.year), 4)),
            Feature::BirthMonth => id.birth_date.map(|d| Value::Ascii(digits2(d.month), 2)),
            Feature::BirthDay => id.birth_date.map(|d| Value::Ascii(digits2(d.day), 2)),
            Feature::Birthplace => id.birthplace.as_deref().and_then(text),
            Feature::CodiceFiscaleChars => id.codice_fiscale.as_deref().and_then(text),
        }
    }
}

/// `{:04}` without formatting machinery (years above 9999 keep their last four digits, as no
/// normalised date has one).
fn digits4(v: u16) -> [u8; 4] {
    let v = v % 10_000;
    [b'0' + (v / 1000) as u8, b'0' + (v / 100 % 10) as u8, b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]
}

/// `{:02}` for values below 100.
fn digits2(v: u8) -> [u8; 4] {
    let v = v % 100;
    [b'0' + v / 10, b'0' + v % 10, 0, 0]
}

/// A feature value borrowed from the identity.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    /// Parts read as their concatenation (all given names: `MARIA` + `GRAZIA` = `MARIAGRAZIA`).
    Joined(&'a [String]),
    /// ASCII bytes `[..len]` of a small fixed buffer.
    Ascii([u8; 4], usize),
}

impl Value<'_> {
    /// Feeds the value's bytes to `mac`.
    fn feed(&self, mac: &mut HmacSha256) {
        match self {
            Value::Text(s) => mac.update(s.as_bytes()),
            Value::Joined(parts) => parts.iter().for_each(|p| mac.update(p.as_bytes())),
            Value::Ascii(b, n) => mac.update(&b[..*n]),
        }
    }

    /// Calls `f` with the UTF-8 bytes of every padded bigram (`ROSSI` → `_R RO OS SS SI I_`).
    fn for_each_bigram(&self, mut f: impl FnMut(&[u8])) {
        let mut buf = [0u8; 8];
        let mut emit = |a: char, b: char| {
            let la = a.encode_utf8(&mut buf).len();
            let lb = b.encode_utf8(&mut buf[la..]).len();
            f(&buf[..la + lb]);
        };
        let mut prev = '_';
        let mut step = |c: char| {
            emit(prev, c);
            prev = c;
        };
        match self {
            Value::Text(s) => s.chars().for_each(&mut step),
            Value::Joined(parts) => parts.iter().flat_map(|p| p.chars()).for_each(&mut step),
            Value::Ascii(b, n) => b[..*n].iter().for_each(|&c| step(c as char)),
        }
        emit(prev, '_');
    }
}

/// A filter under construction: `words.len() * 64` bits, bit `i` is bit `i % 64` of word
/// `i / 64`, so that little-endian bytes of the words are the wire layout of `ponte_proto::bits`.
type Words = Vec<u64>;

/// Sets the `k` positions of one token (random hashing). `base` is the keyed state already fed
/// with the token's input; `mask` is the filter length − 1.
#[inline]
fn set_positions(base: &HmacSha256, k: u32, mask: usize, words: &mut [u64]) {
    let mut produced = 0u32;
    let mut counter = 0u8;
    while produced < k {
        let mut m = base.clone();
        if counter > 0 {
            m.update(&[0, counter]);
        }
        let digest = m.finalize().into_bytes();
        for chunk in digest.chunks_exact(2) {
            if produced == k {
                break;
            }
            let p = u16::from_le_bytes([chunk[0], chunk[1]]) as usize & mask;
            words[p / 64] |= 1 << (p % 64);
            produced += 1;
        }
        counter += 1;
    }
}

/// One filter's keys for one feature: plain and (when the feature is salted) salted.
struct TokenKeys {
    plain: HmacSha256,
    salted: Option<HmacSha256>,
}

impl TokenKeys {
    /// The keyed state for a token of a record born in `year` (`None`: unknown), before the
    /// token's bytes: the salted key fed with the year, or the plain key.
    #[inline]
    fn start(&self, year: Option<u16>) -> HmacSha256 {
        match (&self.salted, year) {
            (Some(salted), Some(y)) => {
                let mut m = salted.clone();
                m.update(&y.to_be_bytes());
                m
            }
            _ => self.plain.clone(),
        }
    }
}

struct FeatureEncoder {
    feature: Feature,
    tokenizer: Tokenizer,
    k: u32,
    clk: TokenKeys,
    /// Index into `Encoder::field_filters` when the feature has a field-level filter.
    field_filter: Option<usize>,
}

/// The hardening of one filter: its length before hardening, its BLIP label and its balancing
/// permutation of the 2n' positions (n' after folding).
struct FilterPlan {
    bits: u32,
    blip_label: Vec<u8>,
    permutation: Option<Vec<u16>>,
}

struct FieldFilterEncoder {
    name: String,
    keys: TokenKeys,
    plan: FilterPlan,
}

/// BLIP's keys and gap table (module documentation).
struct Blip {
    seed_key: HmacSha256,
    stream_key: HmacSha256,
    /// T_1, T_2, …: strictly positive, non-increasing; a draw u leaves as many bits untouched as
    /// there are entries above it.
    gaps: Vec<u64>,
}

/// An encoder bound to one secret and one schema. Cheap to share between threads (`Sync`).
pub struct Encoder {
    clk: FilterPlan,
    features: Vec<FeatureEncoder>,
    field_filters: Vec<FieldFilterEncoder>,
    token_kinds: Vec<(TokenKind, HmacSha256)>,
    xor_fold: bool,
    rule90_rounds: u32,
    blip: Option<Blip>,
    pub epoch: u32,
}

fn derive(secret: &LinkageSecret, info: &str) -> HmacSha256 {
    let hk = Hkdf::<Sha256>::new(Some(b"ponte-linkage/v1"), secret.bytes());
    let mut okm = [0u8; 32];
    hk.expand(info.as_bytes(), &mut okm).expect("32 bytes is a valid HKDF output length");
    <HmacSha256 as KeyInit>::new_from_slice(&okm).expect("HMAC takes any key length")
}

fn token_kind(name: &str) -> Option<TokenKind> {
    Some(match name {
        "codice_fiscale" => TokenKind::CodiceFiscale,
        "id_anpr" => TokenKind::IdAnpr,
        "stp" => TokenKind::Stp,
        "eni" => TokenKind::Eni,
        "cf_provvisorio" => TokenKind::CfProvvisorio,
        _ => return None,
    })
}

/// A keyed pseudo-random stream: HMAC-SHA256(key-with-prefix, counter as 8 big-endian bytes)
/// for counter = 0, 1, …, read as little-endian u32 values.
struct PrfStream {
    base: HmacSha256,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl PrfStream {
    fn new(base: HmacSha256) -> PrfStream {
        PrfStream { base, counter: 0, block: [0; 32], used: 32 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.used == 32 {
            let mut m = self.base.clone();
            m.update(&self.counter.to_be_bytes());
            self.block = m.finalize().into_bytes().into();
            self.counter += 1;
            self.used = 0;
        }
        let v = u32::from_le_bytes(self.block[self.used..self.used + 4].try_into().expect("4 bytes"));
        self.used += 4;
        v
    }

    /// Uniform in `0..bound` (bound ≥ 1), without modulo bias.
    fn below(&mut self, bound: u32) -> u32 {
        let limit = u32::MAX - u32::MAX % bound;
        loop {
            let r = self.next_u32();
            if r < limit {
                return r % bound;
            }
        }
    }
}

/// The balancing permutation of `len` positions: Fisher–Yates from the stream keyed by `key`.
fn balance_permutation(key: HmacSha256, len: usize) -> Vec<u16> {
    assert!(len <= 1 << 16, "a balanced filter has at most 65536 positions");
    let mut perm: Vec<u16> = (0..len).map(|i| i as u16).collect();
    let mut stream = PrfStream::new(key);
    for i in (1..len).rev() {
        let j = stream.below(i as u32 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// T_1, T_2, … of BLIP's geometric gaps for flip probability `p`, up to `max_len` entries.
fn blip_gap_table(p: f64, max_len: usize) -> Vec<u64> {
    const ONE: u64 = 1 << 32;
    // p·2³² is exact in binary floating point; rounding is deterministic.
    let flip = ((p * ONE as f64).round() as u64).min(ONE);
    let keep = ONE - flip;
    let mut table = Vec::with_capacity(max_len);
    let mut t = ONE;
    while table.len() < max_len {
        t = t * keep >> 32;
        if t == 0 {
            break;
        }
        table.push(t);
    }
    table
}

/// XOR-fold: bit `i` becomes `b[i] ^ b[i + n/2]`; halves the length.
fn xor_fold(words: &mut Words) {
    let half = words.len() / 2;
    debug_assert!(half > 0 && words.len() % 2 == 0);
    for i in 0..half {
        words[i] ^= words[i + half];
    }
    words.truncate(half);
}

/// One round of Rule 90 with a cyclic boundary: `b'[i] = b[i-1] ^ b[i+1]` (indices mod n).
fn rule90(words: &mut [u64]) {
    let n = words.len();
    let first = words[0];
    let mut prev = words[n - 1];
    for i in 0..n {
        let cur = words[i];
        let next = if i + 1 < n { words[i + 1] } else { first };
        // Bit j of `from_left` is b[j-1], of `from_right` is b[j+1].
        let from_left = (cur << 1) | (prev >> 63);
        let from_right = (cur >> 1) | (next << 63);
        words[i] = from_left ^ from_right;
        prev = cur;
    }
}

/// BLIP: flips bits at geometric gaps drawn from `stream`.
fn blip(words: &mut [u64], gaps: &[u64], stream: &mut PrfStream) {
    let n = words.len() * 64;
    let mut pos = 0usize;
    loop {
        let u = stream.next_u32() as u64;
        pos += gaps.partition_point(|&t| u < t);
        if pos >= n {
            return;
        }
        words[pos / 64] ^= 1 << (pos % 64);
        pos += 1;
    }
}

/// Balancing: `out[j] = (b ‖ ¬b)[perm[j]]`; exactly half the output bits are set.
fn balance(words: &[u64], perm: &[u16]) -> Words {
    let n = words.len();
    debug_assert_eq!(perm.len(), 2 * n * 64);
    let doubled: Words = words.iter().copied().chain(words.iter().map(|w| !w)).collect();
    let mut out = vec![0u64; 2 * n];
    for (j, &src) in perm.iter().enumerate() {
        let src = src as usize;
        let bit = (doubled[src / 64] >> (src % 64)) & 1;
        out[j / 64] |= bit << (j % 64);
    }
    out
}

fn to_bytes(words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

impl Encoder {
    /// Binds a secret to a checked schema (one from `LinkageSchema::parse` or `load`).
    ///
    /// # Panics
    /// If `schema.problems()` is not empty: encoding under an unchecked schema is a bug.
    pub fn new(secret: &LinkageSecret, schema: &LinkageSchema) -> Encoder {
        let problems = schema.problems();
        assert!(problems.is_empty(), "the encoder needs a checked linkage schema: {}", problems.join("; "));
        let h: &Hardening = &schema.hardening;
        let salted = |name: &str| h.salt_with_birth_year.iter().any(|s| s == name);
        let plan = |bits: u32, label: String, balance_info: String| FilterPlan {
            bits,
            permutation: h.balance.then(|| {
                let len = if h.xor_fold { bits / 2 } else { bits } as usize * 2;
                balance_permutation(derive(secret, &balance_info), len)
            }),
            blip_label: label.into_bytes(),
        };
        let mut features = Vec::with_capacity(schema.fields.len());
        let mut field_filters = Vec::new();
        for f in &schema.fields {
            let feature = Feature::from_name(&f.name).expect("checked schemas name known features");
            let keys = |kind: &str| TokenKeys {
                plain: derive(secret, &format!("ponte/v1/{kind}/{}", f.name)),
                salted: salted(&f.name).then(|| derive(secret, &format!("ponte/v1/{kind}-salted-yob/{}", f.name))),
            };
            let field_filter = f.field_filter_bits.map(|bits| {
                field_filters.push(FieldFilterEncoder {
                    name: f.name.clone(),
                    keys: keys("field"),
                    plan: plan(bits, format!("field/{}", f.name), format!("ponte/v1/balance/field/{}", f.name)),
                });
                field_filters.len() - 1
            });
            features.push(FeatureEncoder { feature, tokenizer: f.tokenizer, k: f.bits_per_token, clk: keys("clk"), field_filter });
        }
        let token_kinds = schema
            .exact_tokens
            .iter()
            .filter_map(|t| Some((token_kind(t)?, derive(secret, &format!("ponte/v1/token/{t}")))))
            .collect();
        let clk = plan(schema.clk_bits, "clk".into(), "ponte/v1/balance/clk".into());
        let blip = (h.blip_probability > 0.0).then(|| {
            let longest = std::iter::once(clk.bits).chain(field_filters.iter().map(|f| f.plan.bits)).max().unwrap_or(0);
            Blip {
                seed_key: derive(secret, "ponte/v1/blip/record-seed"),
                stream_key: derive(secret, "ponte/v1/blip/stream"),
                gaps: blip_gap_table(h.blip_probability, longest as usize),
            }
        });
        Encoder {
            clk,
            features,
            field_filters,
            token_kinds,
            xor_fold: h.xor_fold,
            rule90_rounds: h.rule90_rounds,
            blip,
            epoch: secret.epoch,
        }
    }

    /// Encodes one identity. Deterministic: the same identity always gives the same bytes.
    pub fn encode(&self, id: &NormalisedIdentity) -> Encoding {
        let mut clk: Words = vec![0; self.clk.bits as usize / 64];
        let clk_mask = self.clk.bits as usize - 1;
        let mut fields: Vec<Words> = self.field_filters.iter().map(|f| vec![0; f.plan.bits as usize / 64]).collect();
        let year = id.birth_date.map(|d| d.year);
        for f in &self.features {
            let Some(value) = f.feature.value(id) else { continue };
            let clk_start = f.clk.start(year);
            let field = f.field_filter.map(|i| {
                let ff = &self.field_filters[i];
                (ff.keys.start(year), ff.plan.bits as usize - 1, i)
            });
            let mut hash = |feed: &dyn Fn(&mut HmacSha256)| {
                let mut m = clk_start.clone();
                feed(&mut m);
                set_positions(&m, f.k, clk_mask, &mut clk);
                if let Some((start, mask, i)) = &field {
                    let mut m = start.clone();
                    feed(&mut m);
                    set_positions(&m, f.k, *mask, &mut fields[*i]);
                }
            };
            match f.tokenizer {
                Tokenizer::Bigrams => value.for_each_bigram(|g| hash(&|m| m.update(g))),
                Tokenizer::Whole => hash(&|m| value.feed(m)),
            }
        }

        let hardened = self.xor_fold || self.rule90_rounds > 0 || self.blip.is_some() || self.clk.permutation.is_some();
        let (clk, field_filters) = if hardened {
            let seed = self.blip.as_ref().map(|b| {
                let mut m = b.seed_key.clone();
                clk.iter().for_each(|w| m.update(&w.to_le_bytes()));
                <[u8; 32]>::from(m.finalize().into_bytes())
            });
            let fields = fields
                .into_iter()
                .zip(&self.field_filters)
                .map(|(w, f)| (f.name.clone(), self.harden(w, &f.plan, seed.as_ref())))
                .collect();
            (self.harden(clk, &self.clk, seed.as_ref()), fields)
        } else {
            let fields = fields.iter().zip(&self.field_filters).map(|(w, f)| (f.name.clone(), to_bytes(w))).collect();
            (to_bytes(&clk), fields)
        };

        let mut tokens = Vec::with_capacity(self.token_kinds.len());
        for (kind, mac) in &self.token_kinds {
            let value = match kind {
                TokenKind::CodiceFiscale => id.codice_fiscale.as_deref(),
                other => id.other_ids.iter().find(|(k, _)| kind_of(*k) == *other).map(|(_, v)| v.as_str()),
            };
            if let Some(v) = value {
                let mut m = mac.clone();
                m.update(kind.as_str_name().as_bytes());
                m.update(&[0]);
                m.update(v.as_bytes());
                tokens.push((*kind, m.finalize().into_bytes().into()));
            }
        }
        Encoding { clk, tokens, quality_flags: id.flags.0, field_filters }
    }

    /// Fold → Rule 90 → BLIP → balance (module documentation), then the wire bytes.
    fn harden(&self, mut words: Words, plan: &FilterPlan, blip_seed: Option<&[u8; 32]>) -> Vec<u8> {
        if self.xor_fold {
            xor_fold(&mut words);
        }
        for _ in 0..self.rule90_rounds {
            rule90(&mut words);
        }
        if let (Some(b), Some(seed)) = (&self.blip, blip_seed) {
            let mut base = b.stream_key.clone();
            base.update(&plan.blip_label);
            base.update(&[0]);
            base.update(seed);
            blip(&mut words, &b.gaps, &mut PrfStream::new(base));
        }
        match &plan.permutation {
            Some(perm) => to_bytes(&balance(&words, perm)),
            None => to_bytes(&words),
        }
    }
}

fn kind_of(k: OtherIdKind) -> TokenKind {
    match k {
        OtherIdKind::Stp => TokenKind::Stp,
        OtherIdKind::Eni => TokenKind::Eni,
        OtherIdKind::ProvisionalCf => TokenKind::CfProvvisorio,
        OtherIdKind::IdAnpr => TokenKind::IdAnpr,
    }
}

/// Padded bigrams: `ROSSI` → `_R RO OS SS SI I_`. The allocating reference form of what the
/// encoder hashes (it walks the same bigrams over borrowed bytes).
pub fn bigrams(s: &str) -> Vec<String> {
    let chars: Vec<char> = std::iter::once('_').chain(s.chars()).chain(std::iter::once('_')).collect();
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

/// The value(s) of a schema feature for an identity; empty when missing. The allocating
/// reference form of the values the encoder hashes.
pub fn feature_values(id: &NormalisedIdentity, feature: &str) -> Vec<String> {
    let nonempty = |s: &str| if s.is_empty() { vec![] } else { vec![s.to_string()] };
    match feature {
        "surname" => nonempty(&id.surname),
        "surname_first_token" => id.surname_tokens.first().map(|s| nonempty(s)).unwrap_or_default(),
        "surname_alias" => id.surname_alias.as_deref().map(nonempty).unwrap_or_default(),
        "given_names" => nonempty(&id.given_names.concat()),
        "given_name_first" => id.given_names.first().map(|s| nonempty(s)).unwrap_or_default(),
        "given_name_canonical" => id
            .given_name_canonical
            .as_deref()
            .or(id.given_names.first().map(String::as_str))
            .map(nonempty)
            .unwrap_or_default(),
        "sex" => match id.sex {
            Some(Sex::M) => vec!["M".into()],
            Some(Sex::F) => vec!["F".into()],
            None => vec![],
        },
        "birth_year" => id.birth_date.map(|d| vec![format!("{:04}", d.year)]).unwrap_or_default(),
        "birth_month" => id.birth_date.map(|d| vec![format!("{:02}", d.month)]).unwrap_or_default(),
        "birth_day" => id.birth_date.map(|d| vec![format!("{:02}", d.day)]).unwrap_or_default(),
        "birthplace" => id.birthplace.as_deref().map(nonempty).unwrap_or_default(),
        "codice_fiscale_chars" => id.codice_fiscale.as_deref().map(nonempty).unwrap_or_default(),
        _ => vec![],
    }
}

