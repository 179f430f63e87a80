//! The encoder: a normalised identity → a record-level Bloom filter (CLK) and keyed exact tokens.
//!
//! - Each schema feature has its own key, derived from the linkage secret with HKDF-SHA256
//!   (info `ponte/v1/clk/<feature>`); exact tokens likewise (`ponte/v1/token/<kind>`).
//! - A token's bit positions are read from HMAC-SHA256(feature key, token) as successive 16-bit
//!   chunks, extended with a counter when more than 16 positions are needed ("random hashing";
//!   never double hashing). Filter lengths are powers of two, so positions are unbiased.
//! - Missing values contribute no tokens: absence never looks like agreement.
//!
//! Pure: same secret + schema + identity → same bytes, on every platform.

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use ponte_proto::bits::set_bit;
use ponte_proto::schema::{LinkageSchema, Tokenizer};
use ponte_proto::v1::TokenKind;
use sha2::Sha256;

use crate::normalise::{NormalisedIdentity, OtherIdKind, Sex};
use crate::secret::LinkageSecret;

type HmacSha256 = Hmac<Sha256>;

/// The encoding of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub clk: Vec<u8>,
    pub tokens: Vec<(TokenKind, [u8; 32])>,
    pub quality_flags: u32,
}

struct FeatureKey {
    name: String,
    tokenizer: Tokenizer,
    k: u32,
    mac: HmacSha256,
}

/// An encoder bound to one secret and one schema.
pub struct Encoder {
    clk_bits: u32,
    features: Vec<FeatureKey>,
    token_kinds: Vec<(TokenKind, HmacSha256)>,
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

/// Padded bigrams: `ROSSI` → `_R RO OS SS SI I_`.
pub fn bigrams(s: &str) -> Vec<String> {
    let chars: Vec<char> = std::iter::once('_').chain(s.chars()).chain(std::iter::once('_')).collect();
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

/// The value(s) of a schema feature for an identity; empty when missing.
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

impl Encoder {
    /// Binds a secret to a (checked) schema.
    pub fn new(secret: &LinkageSecret, schema: &LinkageSchema) -> Encoder {
        let features = schema
            .fields
            .iter()
            .map(|f| FeatureKey {
                name: f.name.clone(),
                tokenizer: f.tokenizer,
                k: f.bits_per_token,
                mac: derive(secret, &format!("ponte/v1/clk/{}", f.name)),
            })
            .collect();
        let token_kinds = schema
            .exact_tokens
            .iter()
            .filter_map(|t| Some((token_kind(t)?, derive(secret, &format!("ponte/v1/token/{t}")))))
            .collect();
        Encoder { clk_bits: schema.clk_bits, features, token_kinds, epoch: secret.epoch }
    }

    fn positions(&self, mac: &HmacSha256, token: &str, k: u32, out: &mut [u8]) {
        let mask = self.clk_bits as usize - 1;
        let mut produced = 0u32;
        let mut counter = 0u8;
        while produced < k {
            let mut m = mac.clone();
            m.update(token.as_bytes());
            if counter > 0 {
                m.update(&[0, counter]);
            }
            let digest = m.finalize().into_bytes();
            for chunk in digest.chunks_exact(2) {
                if produced == k {
                    break;
                }
                let p = u16::from_le_bytes([chunk[0], chunk[1]]) as usize & mask;
                set_bit(out, p);
                produced += 1;
            }
            counter += 1;
        }
    }

    /// Encodes one identity.
    pub fn encode(&self, id: &NormalisedIdentity) -> Encoding {
        let mut clk = vec![0u8; self.clk_bits as usize / 8];
        for f in &self.features {
            for value in feature_values(id, &f.name) {
                match f.tokenizer {
                    Tokenizer::Bigrams => {
                        for g in bigrams(&value) {
                            self.positions(&f.mac, &g, f.k, &mut clk);
                        }
                    }
                    Tokenizer::Whole => self.positions(&f.mac, &value, f.k, &mut clk),
                }
            }
        }
        let mut tokens = Vec::new();
        for (kind, mac) in &self.token_kinds {
            let value = match kind {
                TokenKind::CodiceFiscale => id.codice_fiscale.clone(),
                other => id.other_ids.iter().find(|(k, _)| kind_of(*k) == *other).map(|(_, v)| v.clone()),
            };
            if let Some(v) = value {
                let mut m = mac.clone();
                m.update(kind.as_str_name().as_bytes());
                m.update(&[0]);
                m.update(v.as_bytes());
                tokens.push((*kind, m.finalize().into_bytes().into()));
            }
        }
        Encoding { clk, tokens, quality_flags: id.flags.0 }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::{BirthDate, QualityFlags};

    fn secret() -> LinkageSecret {
        LinkageSecret::from_bytes(1, [7u8; 32])
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

    #[test]
    fn golden_vector() {
        // Fixed secret + default schema + record → exact bytes. A change that alters any
        // encoding must fail here: encodings of different versions must never mix silently.
        let enc = Encoder::new(&secret(), &LinkageSchema::default_schema()).encode(&mario());
        let digest = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(&enc.clk);
            for (k, t) in &enc.tokens {
                h.update([*k as u8]);
                h.update(t);
            }
            hex::encode(h.finalize())
        };
        assert_eq!(enc.clk.len(), 128);
        assert_eq!(digest, GOLDEN_MARIO, "the encoding of the golden record changed");
    }

    const GOLDEN_MARIO: &str = "b26b20216aef926a9af79aed2490e0b8a19dbc660af2bcbaa2be191c82fa4404";

    #[test]
    fn about_half_the_bits_are_set_for_a_typical_record() {
        let enc = Encoder::new(&secret(), &LinkageSchema::default_schema()).encode(&mario());
        let ones = ponte_proto::bits::popcount(&enc.clk);
        assert!((300..=700).contains(&ones), "{ones} of 1024 bits set");
    }

    #[test]
    fn other_secret_other_encoding_and_similar_names_stay_similar() {
        let schema = LinkageSchema::default_schema();
        let a = Encoder::new(&secret(), &schema).encode(&mario());
        let b = Encoder::new(&LinkageSecret::from_bytes(1, [8u8; 32]), &schema).encode(&mario());
        assert!(ponte_proto::bits::dice(&a.clk, &b.clk) < 0.7);
        assert_ne!(a.tokens, b.tokens);
        let mut typo = mario();
        typo.surname = "ROSI".into();
        let c = Encoder::new(&secret(), &schema).encode(&typo);
        let d = ponte_proto::bits::dice(&a.clk, &c.clk);
        assert!(d > 0.85 && d < 1.0, "{d}");
    }

    #[test]
    fn missing_values_add_nothing() {
        let schema = LinkageSchema::default_schema();
        let e = Encoder::new(&secret(), &schema).encode(&NormalisedIdentity::default());
        assert_eq!(ponte_proto::bits::popcount(&e.clk), 0);
        assert!(e.tokens.is_empty());
    }

    #[test]
    fn bigrams_are_padded() {
        assert_eq!(bigrams("ABC"), vec!["_A", "AB", "BC", "C_"]);
    }
}
