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
//! # Exact tokens
//!
//! One keyed token per identifier kind the schema lists (`exact_tokens`), when the record has
//! that identifier — except a codice fiscale the normaliser flagged `CF_OF_ANOTHER` (it disagrees
//! with two or more of the record's sex, birth day, month, year and birthplace): such a code is
//! a placeholder or another person's, and as an exact token it would make everyone who carries
//! it one person (1,000 people with the same placeholder became one cluster). Its CLK is encoded
//! as always and the flags travel with the encoding; only the token is left out. A code that
//! disagrees in one part only (`CF_MISMATCH` alone: most often a typo in the record's birth
//! date) is still sent: dropping those lost about one point of recall on the simulator's Lecce
//! population, and a placeholder shared by many is caught by the coordinator's token hubs.
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

use crate::normalise::{NormalisedIdentity, OtherIdKind, QualityFlags, Sex};
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

/// The hardening of one filter: its length before hardening, its BLIP label and, when balancing,
/// where each of the 2n' positions (n' after folding) of `b ‖ ¬b` goes: the inverse of the
/// balancing permutation.
struct FilterPlan {
    bits: u32,
    blip_label: Vec<u8>,
    balance_destinations: Option<Vec<u16>>,
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
        t = ((t as u128 * keep as u128) >> 32) as u64;
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
    debug_assert!(half > 0 && words.len().is_multiple_of(2));
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

/// Balancing: `out[j] = (b ‖ ¬b)[perm[j]]`; exactly half the output bits are set. `dest` is the
/// inverse of `perm` (`dest[perm[j]] = j`), so only the n set bits of `b ‖ ¬b` are visited.
fn balance(words: &[u64], dest: &[u16]) -> Words {
    let n = words.len();
    debug_assert_eq!(dest.len(), 2 * n * 64);
    let mut out = vec![0u64; 2 * n];
    for (i, w) in words.iter().copied().chain(words.iter().map(|w| !w)).enumerate() {
        let mut rest = w;
        while rest != 0 {
            let src = i * 64 + rest.trailing_zeros() as usize;
            let j = dest[src] as usize;
            out[j / 64] |= 1 << (j % 64);
            rest &= rest - 1;
        }
    }
    out
}

/// The inverse of a permutation.
fn inverse(perm: &[u16]) -> Vec<u16> {
    let mut inv = vec![0u16; perm.len()];
    for (j, &p) in perm.iter().enumerate() {
        inv[p as usize] = j as u16;
    }
    inv
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
            balance_destinations: h.balance.then(|| {
                let len = if h.xor_fold { bits / 2 } else { bits } as usize * 2;
                inverse(&balance_permutation(derive(secret, &balance_info), len))
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

        let hardened = self.xor_fold || self.rule90_rounds > 0 || self.blip.is_some() || self.clk.balance_destinations.is_some();
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
                TokenKind::CodiceFiscale if id.flags.has(QualityFlags::CF_OF_ANOTHER) => None,
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
        match &plan.balance_destinations {
            Some(dest) => to_bytes(&balance(&words, dest)),
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


#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::BirthDate;
    use ponte_proto::bits::{dice, popcount};
    use ponte_proto::schema::HARDENED_EXAMPLE_SCHEMA_TOML;
    use proptest::prelude::*;

    fn secret() -> LinkageSecret {
        LinkageSecret::from_bytes(1, [7u8; 32])
    }

    /// The shipped default without its salting: the encoder's plain path, whose golden vectors
    /// have held since the first release. [`shipped_default_is_the_plain_path_salted`] pins the
    /// shipped schema itself.
    fn default_schema() -> LinkageSchema {
        let mut s = LinkageSchema::default_schema();
        s.hardening.salt_with_birth_year.clear();
        s
    }

    fn hardened_schema() -> LinkageSchema {
        LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML).unwrap()
    }

    fn mario() -> NormalisedIdentity {
        NormalisedIdentity {
            surname: "ROSSI".into(),
            surname_tokens: vec!["ROSSI".into()],
            given_names: vec!["MARIO".into()],
            sex: Some(Sex::M),
            birth_date: Some(BirthDate { year: 1979, month: 2, day: 11 }),
            birthplace: Some("C566".into()),
            codice_fiscale: Some("RSSMRA79B11C566R".into()),
            flags: QualityFlags(0),
            ..Default::default()
        }
    }

    /// Double surname, married surname, two given names, an ANPR id.
    fn maria_grazia() -> NormalisedIdentity {
        NormalisedIdentity {
            surname: "DEGIORGIROSSI".into(),
            surname_tokens: vec!["DEGIORGI".into(), "ROSSI".into()],
            surname_alias: Some("BIANCHI".into()),
            given_names: vec!["MARIA".into(), "GRAZIA".into()],
            given_name_canonical: None,
            sex: Some(Sex::F),
            birth_date: Some(BirthDate { year: 1950, month: 7, day: 3 }),
            birthplace: Some("E506".into()),
            codice_fiscale: Some("DGRMGR50L43E506U".into()),
            other_ids: vec![(OtherIdKind::IdAnpr, "AB12345CD".into())],
            flags: QualityFlags(QualityFlags::SURNAME_ALIAS_PRESENT),
        }
    }

    /// Foreign-born with an STP code and no birth date: salted fields stay unsalted.
    fn arben() -> NormalisedIdentity {
        NormalisedIdentity {
            surname: "HOXHA".into(),
            surname_tokens: vec!["HOXHA".into()],
            given_names: vec!["ARBEN".into()],
            sex: Some(Sex::M),
            birthplace: Some("Z100".into()),
            other_ids: vec![(OtherIdKind::Stp, "STP1234567890123".into())],
            flags: QualityFlags(QualityFlags::CF_MISSING | QualityFlags::DATE_MISSING | QualityFlags::FOREIGN_BORN),
            ..Default::default()
        }
    }

    /// SHA-256 over the CLK, then each token (kind byte ‖ 32 bytes), then each field filter
    /// (name ‖ 0x00 ‖ bits). Without field filters it is the digest the first release committed.
    fn digest(enc: &Encoding) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(&enc.clk);
        for (k, t) in &enc.tokens {
            h.update([*k as u8]);
            h.update(t);
        }
        for (name, bits) in &enc.field_filters {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(bits);
        }
        hex::encode(h.finalize())
    }

    #[test]
    fn golden_vector() {
        // Fixed secret + default schema + record → exact bytes. A change that alters any
        // encoding must fail here: encodings of different versions must never mix silently.
        let enc = Encoder::new(&secret(), &default_schema()).encode(&mario());
        assert_eq!(enc.clk.len(), 128);
        assert!(enc.field_filters.is_empty());
        assert_eq!(digest(&enc), GOLDEN_MARIO, "the encoding of the golden record changed");
    }

    const GOLDEN_MARIO: &str = "a16de4b32d0a84f3754be4dbe31c99361c6142050a2cbb71943447fd84bddb39";

    /// Golden digests of mario, maria_grazia and arben under the default schema.
    const GOLDEN_DEFAULT: [&str; 3] = [
        GOLDEN_MARIO,
        "19b6ff6fb341064cbd4a7e02f7c56d1ae85c6df3d8ccbda7607f1ef18c56a471",
        "643bfcf5cb0ab5b1a3fbf8991db1673de018ac0e1c68a3c4592f44bbb5c44b0b",
    ];
    /// The same records under `proto/schemas/hardened.toml`.
    const GOLDEN_HARDENED: [&str; 3] = [
        "a274a66655c180598e92fbe77e7bb87f69a84bac38349c3b567dfe1284e92578",
        "c66465781bbd7b85c96f30f3fe9e726ed3acd290bd289f5099671cc803243311",
        "eb0969fd8b1e7b7a4b058fe7b510bdff082d5ddfd80504d7d9f782d36e4f76cf",
    ];

    #[test]
    fn golden_vectors_of_the_default_and_hardened_profiles() {
        let records = [mario(), maria_grazia(), arben()];
        let default = Encoder::new(&secret(), &default_schema());
        let hardened_schema = hardened_schema();
        let hardened = Encoder::new(&secret(), &hardened_schema);
        let got_default: Vec<String> = records.iter().map(|r| digest(&default.encode(r))).collect();
        let got_hardened: Vec<String> = records.iter().map(|r| digest(&hardened.encode(r))).collect();
        assert_eq!(got_default, GOLDEN_DEFAULT, "default-schema encodings changed");
        assert_eq!(got_hardened, GOLDEN_HARDENED, "hardened-profile encodings changed");
        for r in &records {
            let e = hardened.encode(r);
            assert_eq!(e.clk.len(), hardened_schema.clk_bytes());
            assert_eq!(e.field_filters.iter().map(|(n, b)| (n.as_str(), b.len())).collect::<Vec<_>>(), hardened_schema.field_filter_bytes());
        }
    }

    /// The shipped default schema's encodings of the golden records.
    const GOLDEN_SHIPPED: [&str; 3] = [
        "c4f0f7d6d7c2b886a55df7a2546366f037e5995fef559043ab3220ca428ae400",
        "2fa24e7ff32ea825e205634037bc58087568bae7fa6db498eba7648350044e41",
        // No birth year: nothing to salt with, the plain encoding.
        "643bfcf5cb0ab5b1a3fbf8991db1673de018ac0e1c68a3c4592f44bbb5c44b0b",
    ];

    #[test]
    fn shipped_default_is_the_plain_path_salted() {
        let shipped = LinkageSchema::default_schema();
        let mut plain = shipped.clone();
        plain.hardening.salt_with_birth_year.clear();
        assert_eq!(plain.fingerprint(), default_schema().fingerprint());
        let records = [mario(), maria_grazia(), arben()];
        let enc = Encoder::new(&secret(), &shipped);
        let got: Vec<String> = records.iter().map(|r| digest(&enc.encode(r))).collect();
        assert_eq!(got, GOLDEN_SHIPPED, "shipped-default encodings changed");
        // Salting changes the name bits only: the same record's salted and plain CLKs still share
        // the date, sex and birthplace bits.
        let (a, b) = (enc.encode(&mario()), Encoder::new(&secret(), &plain).encode(&mario()));
        assert!(dice(&a.clk, &b.clk) > 0.3 && dice(&a.clk, &b.clk) < 0.95, "{}", dice(&a.clk, &b.clk));
        assert_eq!(a.tokens, b.tokens, "exact tokens are not salted");
    }

    #[test]
    fn about_half_the_bits_are_set_for_a_typical_record() {
        let enc = Encoder::new(&secret(), &default_schema()).encode(&mario());
        let ones = popcount(&enc.clk);
        assert!((300..=700).contains(&ones), "{ones} of 1024 bits set");
    }

    #[test]
    fn other_secret_other_encoding_and_similar_names_stay_similar() {
        let schema = default_schema();
        let a = Encoder::new(&secret(), &schema).encode(&mario());
        let b = Encoder::new(&LinkageSecret::from_bytes(1, [8u8; 32]), &schema).encode(&mario());
        assert!(dice(&a.clk, &b.clk) < 0.7);
        assert_ne!(a.tokens, b.tokens);
        let mut typo = mario();
        typo.surname = "ROSI".into();
        let c = Encoder::new(&secret(), &schema).encode(&typo);
        let d = dice(&a.clk, &c.clk);
        assert!(d > 0.85 && d < 1.0, "{d}");
    }

    #[test]
    fn a_codice_fiscale_flagged_as_disagreeing_gives_no_token_and_changes_nothing_else() {
        let schema = LinkageSchema::default_schema();
        let encoder = Encoder::new(&secret(), &schema);
        let agreeing = mario();
        let mut disagreeing = mario();
        disagreeing.flags.set(QualityFlags::CF_MISMATCH | QualityFlags::CF_OF_ANOTHER);
        let a = encoder.encode(&agreeing);
        let b = encoder.encode(&disagreeing);
        assert!(a.tokens.iter().any(|(k, _)| *k == TokenKind::CodiceFiscale), "the agreeing code is a token");
        assert!(b.tokens.iter().all(|(k, _)| *k != TokenKind::CodiceFiscale), "the disagreeing code is not");
        assert_eq!((a.clk, a.field_filters), (b.clk, b.field_filters), "the filters do not change");
        assert_eq!(b.quality_flags, QualityFlags::CF_MISMATCH | QualityFlags::CF_OF_ANOTHER, "the flags travel");
        // One disagreement alone (a typo in the record) keeps the token.
        let mut typo = mario();
        typo.flags.set(QualityFlags::CF_MISMATCH);
        assert_eq!(encoder.encode(&typo).tokens, a.tokens, "a code that disagrees in one part is still evidence");
        // Two different people whose export carries the same placeholder code share no token.
        let mut other = arben();
        other.codice_fiscale = disagreeing.codice_fiscale.clone();
        other.flags.set(QualityFlags::CF_MISMATCH | QualityFlags::CF_OF_ANOTHER);
        let c = encoder.encode(&other);
        assert!(b.tokens.iter().all(|t| !c.tokens.contains(t)), "{:?} / {:?}", b.tokens, c.tokens);
        // Other identifiers of a record with a disagreeing code still give their tokens.
        let mut with_stp = disagreeing.clone();
        with_stp.other_ids.push((OtherIdKind::Stp, "STP1234567890123".into()));
        assert_eq!(encoder.encode(&with_stp).tokens.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [TokenKind::Stp]);
    }

    #[test]
    fn missing_values_add_nothing() {
        let mut schema = default_schema();
        schema.fields[0].field_filter_bits = Some(512);
        let e = Encoder::new(&secret(), &schema).encode(&NormalisedIdentity::default());
        assert_eq!(popcount(&e.clk), 0);
        assert!(e.tokens.is_empty());
        assert_eq!(e.field_filters, vec![("surname".to_string(), vec![0u8; 64])]);
    }

    #[test]
    fn bigrams_are_padded() {
        assert_eq!(bigrams("ABC"), vec!["_A", "AB", "BC", "C_"]);
        let mut seen = Vec::new();
        Value::Text("ABC").for_each_bigram(|g| seen.push(String::from_utf8(g.to_vec()).unwrap()));
        assert_eq!(seen, bigrams("ABC"));
        let parts = ["MARIA".to_string(), "GRAZIA".to_string()];
        let mut seen = Vec::new();
        Value::Joined(&parts).for_each_bigram(|g| seen.push(String::from_utf8(g.to_vec()).unwrap()));
        assert_eq!(seen, bigrams("MARIAGRAZIA"));
    }

    #[test]
    fn field_filters_use_keys_of_their_own() {
        // Same length as the CLK, no hardening: if the keys were shared the bits would coincide.
        let mut schema = default_schema();
        schema.fields.retain(|f| f.name == "surname");
        schema.fields[0].field_filter_bits = Some(1024);
        let e = Encoder::new(&secret(), &schema).encode(&mario());
        // The same tokens, so about as many bits set; different keys, so different positions.
        let (a, b) = (popcount(&e.clk) as f64, popcount(&e.field_filters[0].1) as f64);
        assert!(a > 0.0 && (a - b).abs() <= 0.2 * a.max(b), "{a} vs {b} bits set");
        assert!(dice(&e.clk, &e.field_filters[0].1) < 0.3, "{}", dice(&e.clk, &e.field_filters[0].1));
    }

    #[test]
    fn salting_separates_birth_years_and_leaves_records_without_one_unsalted() {
        let mut schema = default_schema();
        schema.fields[0].field_filter_bits = Some(1024);
        schema.hardening.salt_with_birth_year = vec!["surname".into()];
        let enc = Encoder::new(&secret(), &schema);
        let a = enc.encode(&mario());
        let mut same_year = mario();
        same_year.given_names = vec!["LUIGI".into()];
        let mut other_year = mario();
        other_year.birth_date = Some(BirthDate { year: 1980, month: 2, day: 11 });
        assert_eq!(a.field_filters, enc.encode(&same_year).field_filters);
        let d = dice(&a.field_filters[0].1, &enc.encode(&other_year).field_filters[0].1);
        assert!(d < 0.3, "same surname, other year: {d}");
        // Without a birth year: exactly the unsalted encoding.
        let mut plain = schema.clone();
        plain.hardening.salt_with_birth_year.clear();
        let plain = Encoder::new(&secret(), &plain);
        assert_eq!(enc.encode(&arben()), plain.encode(&arben()));
        assert_ne!(enc.encode(&mario()), plain.encode(&mario()));
        // The hardened profile likewise (BLIP and balancing included).
        let mut h = hardened_schema();
        let salted = Encoder::new(&secret(), &h);
        h.hardening.salt_with_birth_year.clear();
        assert_eq!(salted.encode(&arben()), Encoder::new(&secret(), &h).encode(&arben()));
    }

    #[test]
    fn blip_noise_follows_the_record_not_the_value() {
        let mut schema = default_schema();
        schema.fields[0].field_filter_bits = Some(1024);
        schema.hardening.blip_probability = 0.05;
        let enc = Encoder::new(&secret(), &schema);
        let mut other = mario();
        other.birthplace = Some("F205".into());
        let (a, b) = (enc.encode(&mario()), enc.encode(&other));
        assert_ne!(a.field_filters, b.field_filters, "equal surnames in different records must get different flips");
        assert_eq!(a, enc.encode(&mario()));
        assert_eq!(a, Encoder::new(&secret(), &schema).encode(&mario()));
    }

    #[test]
    fn blip_flips_each_bit_with_the_configured_probability() {
        for p in [0.02, 0.2] {
            let gaps = blip_gap_table(p, 1 << 20);
            let mut words = vec![0u64; (1 << 20) / 64];
            blip(&mut words, &gaps, &mut PrfStream::new(derive(&secret(), "test/blip")));
            let flips = words.iter().map(|w| w.count_ones()).sum::<u32>() as f64;
            let n = (1u32 << 20) as f64;
            let sd = (n * p * (1.0 - p)).sqrt();
            assert!((flips - n * p).abs() < 5.0 * sd, "p = {p}: {flips} flips of {n}");
        }
        assert_eq!(blip_gap_table(0.5, 10)[0], 1 << 31);
        assert_eq!(blip_gap_table(1e-12, 10), vec![1u64 << 32; 10], "p below 2^-33 flips nothing");
    }

    fn bools(words: &[u64]) -> Vec<bool> {
        (0..words.len() * 64).map(|i| words[i / 64] >> (i % 64) & 1 == 1).collect()
    }

    proptest! {
        #[test]
        fn word_level_hardening_matches_its_bitwise_definition(
            words in prop::collection::vec(any::<u64>(), 1..=8usize).prop_map(|w| { let n = w.len().next_power_of_two(); let mut w = w; w.resize(n, 0x5a5a); w }),
            seed in any::<u8>(),
        ) {
            let b = bools(&words);
            let n = b.len();
            let mut r = words.clone();
            rule90(&mut r);
            let want: Vec<bool> = (0..n).map(|i| b[(i + n - 1) % n] ^ b[(i + 1) % n]).collect();
            prop_assert_eq!(bools(&r), want);
            if words.len() >= 2 {
                let mut f = words.clone();
                xor_fold(&mut f);
                let want: Vec<bool> = (0..n / 2).map(|i| b[i] ^ b[i + n / 2]).collect();
                prop_assert_eq!(bools(&f), want);
            }
            let perm = balance_permutation(derive(&LinkageSecret::from_bytes(1, [seed; 32]), "test/balance"), 2 * n);
            let mut sorted = perm.clone();
            sorted.sort();
            prop_assert_eq!(sorted, (0..2 * n as u16).collect::<Vec<_>>());
            let doubled: Vec<bool> = b.iter().copied().chain(b.iter().map(|x| !x)).collect();
            let want: Vec<bool> = perm.iter().map(|&p| doubled[p as usize]).collect();
            prop_assert_eq!(bools(&balance(&words, &inverse(&perm))), want);
        }
    }

    // ---- properties of whole encodings ----

    /// The first release's encoder, kept as the reference the fast path must equal (CLK and
    /// tokens of unhardened schemas), extended with the salted input form.
    fn reference(secret: &LinkageSecret, schema: &LinkageSchema, id: &NormalisedIdentity) -> (Vec<u8>, Vec<(TokenKind, [u8; 32])>) {
        fn positions(mac: &HmacSha256, input: &[u8], k: u32, out: &mut [u8]) {
            let mask = out.len() * 8 - 1;
            let (mut produced, mut counter) = (0u32, 0u8);
            while produced < k {
                let mut m = mac.clone();
                m.update(input);
                if counter > 0 {
                    m.update(&[0, counter]);
                }
                for chunk in m.finalize().into_bytes().chunks_exact(2) {
                    if produced < k {
                        ponte_proto::bits::set_bit(out, u16::from_le_bytes([chunk[0], chunk[1]]) as usize & mask);
                        produced += 1;
                    }
                }
                counter += 1;
            }
        }
        let mut clk = vec![0u8; schema.clk_bits as usize / 8];
        for f in &schema.fields {
            let salt = id.birth_date.filter(|_| schema.hardening.salt_with_birth_year.contains(&f.name));
            let mac = match salt {
                Some(_) => derive(secret, &format!("ponte/v1/clk-salted-yob/{}", f.name)),
                None => derive(secret, &format!("ponte/v1/clk/{}", f.name)),
            };
            for value in feature_values(id, &f.name) {
                let tokens = match f.tokenizer {
                    Tokenizer::Bigrams => bigrams(&value),
                    Tokenizer::Whole => vec![value],
                };
                for t in tokens {
                    let mut input = salt.map(|d| d.year.to_be_bytes().to_vec()).unwrap_or_default();
                    input.extend_from_slice(t.as_bytes());
                    positions(&mac, &input, f.bits_per_token, &mut clk);
                }
            }
        }
        let mut tokens = Vec::new();
        for t in &schema.exact_tokens {
            let kind = token_kind(t).unwrap();
            let value = match kind {
                TokenKind::CodiceFiscale if id.flags.has(QualityFlags::CF_OF_ANOTHER) => None,
                TokenKind::CodiceFiscale => id.codice_fiscale.clone(),
                other => id.other_ids.iter().find(|(k, _)| kind_of(*k) == other).map(|(_, v)| v.clone()),
            };
            if let Some(v) = value {
                let mut m = derive(secret, &format!("ponte/v1/token/{t}"));
                m.update(format!("{}\0{v}", kind.as_str_name()).as_bytes());
                tokens.push((kind, m.finalize().into_bytes().into()));
            }
        }
        (clk, tokens)
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Z]{2,14}"
    }

    /// Any identity, fields present or not, names possibly outside ASCII.
    fn any_identity() -> impl Strategy<Value = NormalisedIdentity> {
        (
            "[A-ZÀÈÌÒÙ']{0,14}",
            prop::collection::vec("[A-ZÀÈ]{0,10}", 0..3),
            prop::option::of(name()),
            prop::option::of(name()),
            prop::option::of(any::<bool>()),
            prop::option::of((1900u16..2026, 1u8..=12, 1u8..=31)),
            prop::option::of("[A-Z][0-9]{3}"),
            prop::option::of("[A-Z0-9]{16}"),
            prop::option::of("STP[0-9]{13}"),
            any::<bool>(),
        )
            .prop_map(|(surname, given_names, alias, canonical, sex, date, place, cf, stp, cf_mismatch)| NormalisedIdentity {
                surname_tokens: if surname.is_empty() { vec![] } else { vec![surname.clone()] },
                surname,
                surname_alias: alias,
                given_names,
                given_name_canonical: canonical,
                sex: sex.map(|m| if m { Sex::M } else { Sex::F }),
                birth_date: date.map(|(year, month, day)| BirthDate { year, month, day }),
                birthplace: place,
                codice_fiscale: cf,
                other_ids: stp.map(|s| vec![(OtherIdKind::Stp, s)]).unwrap_or_default(),
                flags: QualityFlags(if cf_mismatch { QualityFlags::CF_MISMATCH | QualityFlags::CF_OF_ANOTHER } else { 0 }),
            })
    }

    /// A realistic identity: every core field present.
    fn full_identity() -> impl Strategy<Value = NormalisedIdentity> {
        (name(), prop::collection::vec(name(), 1..3), any::<bool>(), (1900u16..2026, 1u8..=12, 1u8..=28), "[A-Z][0-9]{3}", "[A-Z0-9]{16}")
            .prop_map(|(surname, given_names, m, (year, month, day), place, cf)| NormalisedIdentity {
                surname_tokens: vec![surname.clone()],
                surname,
                given_names,
                sex: Some(if m { Sex::M } else { Sex::F }),
                birth_date: Some(BirthDate { year, month, day }),
                birthplace: Some(place),
                codice_fiscale: Some(cf),
                ..Default::default()
            })
    }

    /// The default features with any hardening, any field filters on the name fields and any
    /// CLK length.
    fn any_schema() -> impl Strategy<Value = LinkageSchema> {
        let filter_bits = prop::option::of(prop::sample::select(vec![128u32, 512, 1024, 4096]));
        (
            prop::sample::select(vec![256u32, 1024, 4096]),
            prop::sample::subsequence(vec!["surname", "given_names", "given_name_first"], 0..=3),
            any::<bool>(),
            any::<bool>(),
            0u32..=8,
            prop::sample::select(vec![0.0, 0.01, 0.02, 0.1, 0.3]),
            filter_bits.clone(),
            filter_bits,
        )
            .prop_map(|(clk_bits, salted, balance, xor_fold, rule90_rounds, blip_probability, f0, f1)| {
                let mut s = LinkageSchema::default_schema();
                s.clk_bits = clk_bits;
                s.fields[0].field_filter_bits = f0;
                s.fields[1].field_filter_bits = f1;
                s.hardening = Hardening {
                    salt_with_birth_year: salted.into_iter().map(String::from).collect(),
                    balance,
                    xor_fold,
                    rule90_rounds,
                    blip_probability,
                };
                assert!(s.problems().is_empty(), "{:?}", s.problems());
                s
            })
    }

    fn unhardened(s: &LinkageSchema) -> LinkageSchema {
        let mut u = s.clone();
        u.hardening = Hardening::default();
        u
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_fast_path_equals_the_reference_encoder(id in any_identity(), salted in any::<bool>()) {
            let mut schema = default_schema();
            if salted {
                schema.hardening.salt_with_birth_year = vec!["surname".into(), "given_names".into()];
            }
            let got = Encoder::new(&secret(), &schema).encode(&id);
            let (clk, tokens) = reference(&secret(), &schema, &id);
            prop_assert_eq!(got.clk, clk);
            prop_assert_eq!(got.tokens, tokens);
        }

        #[test]
        fn encodings_are_deterministic(schema in any_schema(), id in any_identity()) {
            let a = Encoder::new(&secret(), &schema).encode(&id);
            let again = Encoder::new(&secret(), &schema);
            prop_assert_eq!(&a, &again.encode(&id));
            prop_assert_eq!(&a, &again.encode(&id.clone()));
        }

        #[test]
        fn lengths_are_the_published_lengths(schema in any_schema(), id in any_identity()) {
            let e = Encoder::new(&secret(), &schema).encode(&id);
            prop_assert_eq!(e.clk.len() * 8, schema.published_clk_bits() as usize);
            prop_assert_eq!(e.clk.len(), schema.clk_bytes());
            let want: Vec<(String, usize)> = schema.field_filter_bytes().into_iter().map(|(n, b)| (n.to_string(), b)).collect();
            let got: Vec<(String, usize)> = e.field_filters.iter().map(|(n, b)| (n.clone(), b.len())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn balanced_filters_have_exactly_half_their_bits_set(schema in any_schema(), id in any_identity()) {
            let mut schema = schema;
            schema.hardening.balance = true;
            let e = Encoder::new(&secret(), &schema).encode(&id);
            prop_assert_eq!(popcount(&e.clk) as usize * 2, e.clk.len() * 8);
            for (_, f) in &e.field_filters {
                prop_assert_eq!(popcount(f) as usize * 2, f.len() * 8);
            }
        }

        #[test]
        fn folding_halves_the_length(schema in any_schema(), id in any_identity()) {
            let (mut folded, mut flat) = (schema.clone(), schema);
            folded.hardening.xor_fold = true;
            flat.hardening.xor_fold = false;
            let (a, b) = (Encoder::new(&secret(), &folded).encode(&id), Encoder::new(&secret(), &flat).encode(&id));
            prop_assert_eq!(a.clk.len() * 2, b.clk.len());
            for ((_, x), (_, y)) in a.field_filters.iter().zip(&b.field_filters) {
                prop_assert_eq!(x.len() * 2, y.len());
            }
            // Unhardened otherwise, the folded filter is exactly the XOR of the halves.
            let (mut folded, mut flat) = (unhardened(&folded), unhardened(&flat));
            folded.hardening.xor_fold = true;
            flat.fields.iter_mut().for_each(|f| f.field_filter_bits = None);
            folded.fields.iter_mut().for_each(|f| f.field_filter_bits = None);
            let (a, b) = (Encoder::new(&secret(), &folded).encode(&id), Encoder::new(&secret(), &flat).encode(&id));
            let half = b.clk.len() / 2;
            let xor: Vec<u8> = (0..half).map(|i| b.clk[i] ^ b.clk[i + half]).collect();
            prop_assert_eq!(a.clk, xor);
        }

        #[test]
        fn missing_fields_add_no_bits(id in full_identity(), drop in 0usize..6, filters in any::<bool>()) {
            let mut schema = default_schema();
            if filters {
                schema.fields[0].field_filter_bits = Some(512);
                schema.fields[1].field_filter_bits = Some(512);
            }
            let enc = Encoder::new(&secret(), &schema);
            let mut less = id.clone();
            match drop {
                0 => { less.surname.clear(); less.surname_tokens.clear(); }
                1 => less.given_names.clear(),
                2 => less.sex = None,
                3 => less.birth_date = None,
                4 => less.birthplace = None,
                _ => less.codice_fiscale = None,
            }
            let (full, part) = (enc.encode(&id), enc.encode(&less));
            let subset = |a: &[u8], b: &[u8]| a.iter().zip(b).all(|(x, y)| x & !y == 0);
            prop_assert!(subset(&part.clk, &full.clk));
            for ((_, p), (_, f)) in part.field_filters.iter().zip(&full.field_filters) {
                prop_assert!(subset(p, f));
            }
            if drop == 0 && filters {
                prop_assert!(part.field_filters[0].1.iter().all(|&b| b == 0));
            }
        }

        #[test]
        fn one_changed_surname_character_keeps_dice_high(id in full_identity(), at in any::<prop::sample::Index>(), with in b'A'..=b'Z') {
            let mut typo = id.clone();
            let mut bytes = typo.surname.clone().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = if bytes[i] == with { if with == b'Z' { b'A' } else { with + 1 } } else { with };
            typo.surname = String::from_utf8(bytes).unwrap();
            typo.surname_tokens = vec![typo.surname.clone()];
            let enc = Encoder::new(&secret(), &default_schema());
            let d = dice(&enc.encode(&id).clk, &enc.encode(&typo).clk);
            prop_assert!(d > 0.75 && d < 1.0, "{} vs {}: {}", id.surname, typo.surname, d);
        }

        #[test]
        fn different_secrets_give_unrelated_filters(id in full_identity(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), hardened in any::<bool>()) {
            prop_assume!(a != b);
            let schema = if hardened { hardened_schema() } else { default_schema() };
            let x = Encoder::new(&LinkageSecret::from_bytes(1, a), &schema).encode(&id);
            let y = Encoder::new(&LinkageSecret::from_bytes(1, b), &schema).encode(&id);
            prop_assert!(dice(&x.clk, &y.clk) < 0.7, "{}", dice(&x.clk, &y.clk));
            for ((_, f), (_, g)) in x.field_filters.iter().zip(&y.field_filters) {
                prop_assert!(dice(f, g) < 0.7, "{}", dice(f, g));
            }
            for (s, t) in x.tokens.iter().zip(&y.tokens) {
                prop_assert_ne!(s.1, t.1);
            }
        }

        #[test]
        fn tokens_differ_across_kinds_for_the_same_value(value in "[A-Z0-9]{9,16}") {
            let id = NormalisedIdentity {
                codice_fiscale: Some(value.clone()),
                other_ids: [OtherIdKind::Stp, OtherIdKind::Eni, OtherIdKind::ProvisionalCf, OtherIdKind::IdAnpr]
                    .into_iter()
                    .map(|k| (k, value.clone()))
                    .collect(),
                ..Default::default()
            };
            let e = Encoder::new(&secret(), &default_schema()).encode(&id);
            prop_assert_eq!(e.tokens.len(), 5);
            let mut values: Vec<[u8; 32]> = e.tokens.iter().map(|t| t.1).collect();
            values.sort();
            values.dedup();
            prop_assert_eq!(values.len(), 5);
        }
    }
}
