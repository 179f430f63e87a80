//! Birthplaces: a name or a code → the Belfiore code valid at the birth date, or a foreign `Z`
//! code (DOMAIN.md §4–6).
//!
//! The tables are compiled in (`data/comuni_belfiore_storico.csv`, `data/stati_esteri_z.csv`, see
//! `data/NOTICE.md`) and parsed once. Names are compared after the text pipeline with all blanks
//! removed, so `Galatina`, `GALATINA`, `Paternò`/`PATERNO'`, `Sant'Elena`, `Presicce-Acquarica`
//! all find their rows; a trailing province (`Castro (LE)`, `Castro LE`) narrows homonyms, and a
//! leading `S.` is tried as San/Santo/Santa/Sant'.
//!
//! Guarantees: a resolution never invents a code. `ITALIA`, placeholders, unknown names and
//! homonyms that cannot be told apart resolve to [`PlaceResolution::Unresolved`]. Ceded territories
//! (Pola G778, Fiume D620, Zara M149) are comuni in the table and keep their Italian code.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use super::{BirthDate, dates, text};

const COMUNI_CSV: &str = include_str!("../../data/comuni_belfiore_storico.csv");
const FOREIGN_CSV: &str = include_str!("../../data/stati_esteri_z.csv");
/// Longest birthplace text examined.
const MAX_TEXT_CHARS: usize = 200;
/// Province written for foreign countries.
pub const FOREIGN_PROVINCE: &str = "EE";

/// One validity period of a comune or foreign country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Belfiore code (`D862`) or foreign code (`Z100`).
    pub code: String,
    /// Name as in the table (mixed case, accents kept).
    pub name: String,
    /// Province code; [`FOREIGN_PROVINCE`] for foreign countries.
    pub province: String,
    /// First day of validity; `None` = since before any birth of interest (for foreign
    /// countries, the table's 1900-01-01 filler is read as `None`).
    pub valid_from: Option<BirthDate>,
    /// Last day of validity; `None` = still valid.
    pub valid_to: Option<BirthDate>,
    pub foreign: bool,
}

impl Place {
    /// Whether this period covers the date.
    pub fn covers(&self, on: BirthDate) -> bool {
        self.valid_from.is_none_or(|f| f <= on) && self.valid_to.is_none_or(|t| on <= t)
    }
}

/// Outcome of [`Places::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceResolution {
    /// `valid_at_birth` is false when the only plausible code did not exist at the birth date
    /// (e.g. a code typed directly, or Pola for someone born after 1947); it is true when no
    /// birth date was given.
    Resolved {
        code: String,
        foreign: bool,
        valid_at_birth: bool,
    },
    /// Something was written but it cannot be turned into one code.
    Unresolved,
    /// Nothing usable was written (blank, or a placeholder such as `N.D.`, `SCONOSCIUTO`).
    Missing,
}

/// The bundled table of comuni (all validity periods) and foreign countries.
#[derive(Debug)]
pub struct Places {
    places: Vec<Place>,
    /// Compact name key → indices in `places`.
    by_key: HashMap<String, Vec<usize>>,
    /// Code → indices in `places`.
    by_code: HashMap<String, Vec<usize>>,
    provinces: HashSet<String>,
}

/// Texts that mean "not known" (compact keys).
const PLACEHOLDERS: &[&str] = &[
    "ND",
    "NA",
    "NONDISPONIBILE",
    "NONNOTO",
    "NONNOTA",
    "NONDICHIARATO",
    "SCONOSCIUTO",
    "SCONOSCIUTA",
    "IGNOTO",
    "IGNOTA",
    "X",
    "XX",
    "XXX",
    "XXXX",
    "NULL",
    "NESSUNO",
];
/// Texts that name a country but not a birthplace code.
const NOT_A_PLACE: &[&str] = &["ITALIA", "ITALY", "ESTERO", "EE", "STATOESTERO"];
/// Common names of foreign countries not spelled as in the table (compact key → Z code).
const FOREIGN_ALIASES: &[(&str, &str)] = &[
    ("CINA", "Z210"),
    ("RUSSIA", "Z154"),
    ("USA", "Z404"),
    ("STATIUNITI", "Z404"),
    ("COREADELSUD", "Z213"),
    ("COREADELNORD", "Z214"),
    ("MOLDAVIA", "Z140"),
    ("MACEDONIA", "Z148"),
    ("BOSNIA", "Z153"),
    ("BOSNIAEDERZEGOVINA", "Z153"),
    ("INGHILTERRA", "Z114"),
    ("GRANBRETAGNA", "Z114"),
    ("SCOZIA", "Z114"),
    ("GALLES", "Z114"),
    ("OLANDA", "Z126"),
    ("CECHIA", "Z156"),
    ("PALESTINA", "Z161"),
    ("VATICANO", "Z106"),
    ("CITTADELVATICANO", "Z106"),
    ("SUDAFRICA", "Z347"),
    ("BIRMANIA", "Z206"),
    ("CEYLON", "Z209"),
    ("SWAZILAND", "Z349"),
    ("DOMINICANA", "Z505"),
    ("SANTODOMINGO", "Z505"),
    ("EXJUGOSLAVIA", "Z118"),
    ("URSS", "Z135"),
    ("UNIONESOVIETICA", "Z135"),
    ("KAZAKISTAN", "Z255"),
    ("AZERBAIJAN", "Z253"),
];

impl Places {
    /// The bundled tables, parsed on first use.
    pub fn bundled() -> &'static Places {
        static BUNDLED: OnceLock<Places> = OnceLock::new();
        BUNDLED.get_or_init(|| Places::from_csv(COMUNI_CSV, FOREIGN_CSV))
    }

    /// Every validity period: comuni first, then foreign countries.
    pub fn all(&self) -> &[Place] {
        &self.places
    }

    /// Comuni of a province whose validity covers `on`.
    pub fn comuni_in_province(&self, province: &str, on: BirthDate) -> Vec<&Place> {
        self.places
            .iter()
            .filter(|p| !p.foreign && p.province == province && p.covers(on))
            .collect()
    }

    /// Foreign countries whose code is valid on `on`.
    pub fn foreign_countries(&self, on: BirthDate) -> Vec<&Place> {
        self.places
            .iter()
            .filter(|p| p.foreign && p.covers(on))
            .collect()
    }

    /// Name or code (Belfiore / `Z`) → the code valid at the birth date.
    ///
    /// A code is returned as given, with `valid_at_birth` telling whether it existed then. A name
    /// is looked up among all periods; when it maps to several codes the one valid at birth wins
    /// (without a birth date: the one valid today, else the last to exist). A comune merged into
    /// a new one before the birth resolves to its successor when the successor's name contains
    /// it (Presicce after 2019 → Presicce-Acquarica M428). Italian comuni win over foreign
    /// countries of the same name (Palau, Sant'Elena).
    pub fn resolve(&self, text: &str, birth: Option<BirthDate>) -> PlaceResolution {
        self.resolve_with_hint(text, birth, None)
    }

    /// As [`Places::resolve`], but when the name fits several codes equally well and `hint`
    /// (e.g. the place code read from a valid codice fiscale) is one of them, that one is chosen.
    /// The hint never produces a code the text does not name.
    pub fn resolve_with_hint(
        &self,
        text: &str,
        birth: Option<BirthDate>,
        hint: Option<&str>,
    ) -> PlaceResolution {
        if text.chars().take(MAX_TEXT_CHARS + 1).count() > MAX_TEXT_CHARS {
            return PlaceResolution::Unresolved;
        }
        let code: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if is_code(&code) {
            return match self.by_code.get(&code) {
                Some(rows) => PlaceResolution::Resolved {
                    foreign: self.places[rows[0]].foreign,
                    valid_at_birth: birth.is_none_or(|b| self.code_valid_on(&code, b)),
                    code,
                },
                None => PlaceResolution::Unresolved,
            };
        }
        let cleaned = text::clean(text);
        let key = cleaned.replace(' ', "");
        if key.is_empty() || PLACEHOLDERS.contains(&key.as_str()) {
            return PlaceResolution::Missing;
        }
        if NOT_A_PLACE.contains(&key.as_str()) {
            return PlaceResolution::Unresolved;
        }
        let tokens: Vec<&str> = cleaned.split(' ').collect();
        // A trailing province is tried first: "Cameri (NO)" is Cameri, not Camerino.
        let mut attempts: Vec<(String, Option<&str>)> = Vec::new();
        if let [rest @ .., last] = tokens.as_slice()
            && !rest.is_empty()
            && last.len() == 2
            && (self.provinces.contains(*last) || *last == FOREIGN_PROVINCE)
        {
            attempts.push((rest.concat(), Some(*last)));
        }
        attempts.push((key, None));
        for (key, province) in attempts.clone() {
            if let Some(rest) = key
                .strip_prefix('S')
                .filter(|_| tokens.first() == Some(&"S"))
            {
                for saint in ["SAN", "SANTO", "SANTA", "SANT"] {
                    attempts.push((format!("{saint}{rest}"), province));
                }
            }
        }
        for (key, province) in &attempts {
            let rows = self.rows_for_key(key, *province);
            if !rows.is_empty() {
                return self.choose(&rows, birth, hint);
            }
        }
        PlaceResolution::Unresolved
    }

    fn from_csv(comuni: &str, foreign: &str) -> Places {
        let mut places = Vec::new();
        // (row index, alternative name): bilingual names of comuni, English names of countries.
        let mut alt_names: Vec<(usize, String)> = Vec::new();
        for rec in csv::Reader::from_reader(comuni.as_bytes())
            .records()
            .flatten()
        {
            let field = |i: usize| rec.get(i).unwrap_or("").trim();
            let Some(valid_from) = dates::parse_iso(field(4)) else {
                continue;
            };
            if !is_code(field(0)) || field(1).is_empty() {
                continue;
            }
            if !field(2).is_empty() {
                alt_names.push((places.len(), field(2).to_string()));
            }
            places.push(Place {
                code: field(0).to_string(),
                name: field(1).to_string(),
                province: field(3).to_string(),
                valid_from: Some(valid_from),
                valid_to: dates::parse_iso(field(5)),
                foreign: false,
            });
        }
        let sentinel = BirthDate {
            year: 1900,
            month: 1,
            day: 1,
        };
        for rec in csv::Reader::from_reader(foreign.as_bytes())
            .records()
            .flatten()
        {
            let field = |i: usize| rec.get(i).unwrap_or("").trim();
            if !is_code(field(0)) || field(1).is_empty() {
                continue;
            }
            let valid_from = dates::parse_iso(field(3)).filter(|d| *d != sentinel);
            let idx = places.len();
            places.push(Place {
                code: field(0).to_string(),
                name: field(1).to_string(),
                province: FOREIGN_PROVINCE.to_string(),
                valid_from,
                valid_to: dates::parse_iso(field(4)),
                foreign: true,
            });
            if !field(2).is_empty() {
                alt_names.push((idx, field(2).to_string()));
            }
        }
        let mut by_key: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_code: HashMap<String, Vec<usize>> = HashMap::new();
        let mut provinces = HashSet::new();
        for (i, p) in places.iter().enumerate() {
            by_key.entry(name_key(&p.name)).or_default().push(i);
            by_code.entry(p.code.clone()).or_default().push(i);
            if !p.foreign {
                provinces.insert(p.province.clone());
            }
        }
        for (i, alt) in alt_names {
            let rows = by_key.entry(name_key(&alt)).or_default();
            if !rows.contains(&i) {
                rows.push(i);
            }
        }
        for (alias, code) in FOREIGN_ALIASES {
            if let Some(rows) = by_code.get(*code) {
                let rows = rows.clone();
                let entry = by_key.entry((*alias).to_string()).or_default();
                for i in rows {
                    if !entry.contains(&i) {
                        entry.push(i);
                    }
                }
            }
        }
        Places {
            places,
            by_key,
            by_code,
            provinces,
        }
    }

    /// Rows whose name matches the key, restricted to a province when given.
    fn rows_for_key(&self, key: &str, province: Option<&str>) -> Vec<usize> {
        self.by_key
            .get(key)
            .map(|rows| {
                rows.iter()
                    .copied()
                    .filter(|&i| province.is_none_or(|p| self.places[i].province == p))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn code_valid_on(&self, code: &str, on: BirthDate) -> bool {
        self.by_code
            .get(code)
            .is_some_and(|rows| rows.iter().any(|&i| self.places[i].covers(on)))
    }

    fn code_active(&self, code: &str) -> bool {
        self.by_code
            .get(code)
            .is_some_and(|rows| rows.iter().any(|&i| self.places[i].valid_to.is_none()))
    }

    /// Picks one code among the rows a name matched, in this order of preference:
    /// with a birth date, (1) a code whose matched period covers it, (2) a code valid then under
    /// another name (renamed comune), (3) a successor ([`Places::successors`]), (4) the code
    /// whose validity comes closest (then `valid_at_birth` is false); without a birth date,
    /// (1) a code whose matched period is current, (2) the one whose matched period ended last.
    fn choose(
        &self,
        rows: &[usize],
        birth: Option<BirthDate>,
        hint: Option<&str>,
    ) -> PlaceResolution {
        let codes_where = |keep: &dyn Fn(&Place) -> bool| {
            let mut codes: Vec<&str> = rows
                .iter()
                .map(|&i| &self.places[i])
                .filter(|p| keep(p))
                .map(|p| p.code.as_str())
                .collect();
            codes.sort_unstable();
            codes.dedup();
            codes
        };
        let all = codes_where(&|_| true);
        let chosen = match birth {
            Some(b) => {
                let named_then = codes_where(&|p| p.covers(b));
                let valid_then: Vec<&str> = all
                    .iter()
                    .copied()
                    .filter(|c| self.code_valid_on(c, b))
                    .collect();
                let successors = self.successors(rows, b);
                [named_then, valid_then, successors]
                    .iter()
                    .find(|tier| !tier.is_empty())
                    .map(|tier| self.pick(tier, hint).map(|c| (c, true)))
                    .unwrap_or_else(|| self.nearest(&all, b, hint).map(|c| (c, false)))
            }
            None => {
                let current = codes_where(&|p| p.valid_to.is_none());
                if current.is_empty() {
                    self.latest(rows, hint).map(|c| (c, true))
                } else {
                    self.pick(&current, hint).map(|c| (c, true))
                }
            }
        };
        match chosen {
            Some((code, valid_at_birth)) => PlaceResolution::Resolved {
                code: code.to_string(),
                foreign: code.starts_with('Z'),
                valid_at_birth,
            },
            None => PlaceResolution::Unresolved,
        }
    }

    /// One code out of equally good ones: the hint if it is among them; Italian over foreign;
    /// among foreign codes only, the one still valid today; otherwise ambiguous (`None`).
    fn pick<'a>(&self, codes: &[&'a str], hint: Option<&str>) -> Option<&'a str> {
        if let Some(h) = hint
            && let Some(c) = codes.iter().find(|c| **c == h)
        {
            return Some(c);
        }
        if let [only] = codes {
            return Some(only);
        }
        let italian: Vec<&str> = codes
            .iter()
            .copied()
            .filter(|c| !c.starts_with('Z'))
            .collect();
        match italian.as_slice() {
            [only] => Some(only),
            [] => {
                let active: Vec<&str> = codes
                    .iter()
                    .copied()
                    .filter(|c| self.code_active(c))
                    .collect();
                if let [only] = active.as_slice() {
                    Some(only)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// Comuni valid at `on` that took over a matched comune ended before `on`: same province,
    /// created the day after it ended, sharing a distinctive word of its name (Presicce and
    /// Acquarica del Capo → Presicce-Acquarica).
    fn successors(&self, rows: &[usize], on: BirthDate) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for &i in rows {
            let old = &self.places[i];
            let Some(ended) = old.valid_to.filter(|t| *t < on) else {
                continue;
            };
            if old.foreign {
                continue;
            }
            let created = dates::next_day(ended);
            let old_name = text::clean(&old.name);
            for p in &self.places {
                if !p.foreign
                    && p.valid_from == Some(created)
                    && p.province == old.province
                    && p.code != old.code
                    && p.covers(on)
                    && shares_distinctive_word(&text::clean(&p.name), &old_name)
                    && !out.contains(&p.code.as_str())
                {
                    out.push(&p.code);
                }
            }
        }
        out
    }

    /// The code whose validity comes closest to `on` (none of them covers it).
    fn nearest<'a>(&self, codes: &[&'a str], on: BirthDate, hint: Option<&str>) -> Option<&'a str> {
        let day =
            |d: BirthDate| i64::from(d.year) * 372 + i64::from(d.month) * 31 + i64::from(d.day);
        let distance = |code: &str| {
            self.by_code[code]
                .iter()
                .map(|&i| {
                    let p = &self.places[i];
                    match (p.valid_from, p.valid_to) {
                        (Some(f), _) if on < f => day(f) - day(on),
                        (_, Some(t)) if t < on => day(on) - day(t),
                        _ => 0,
                    }
                })
                .min()
                .unwrap_or(i64::MAX)
        };
        let best = codes.iter().map(|c| distance(c)).min()?;
        let closest: Vec<&str> = codes
            .iter()
            .copied()
            .filter(|c| distance(c) == best)
            .collect();
        self.pick(&closest, hint)
    }

    /// Without a birth date and no matched period current: the code whose period ended last.
    fn latest<'a>(&'a self, rows: &[usize], hint: Option<&str>) -> Option<&'a str> {
        let best = rows.iter().filter_map(|&i| self.places[i].valid_to).max()?;
        let mut last: Vec<&str> = rows
            .iter()
            .map(|&i| &self.places[i])
            .filter(|p| p.valid_to == Some(best))
            .map(|p| p.code.as_str())
            .collect();
        last.sort_unstable();
        last.dedup();
        self.pick(&last, hint)
    }
}

/// `A123`-shaped: one letter and three digits.
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_digit)
}

/// Compact comparison key of a place name.
fn name_key(name: &str) -> String {
    text::clean(name).replace(' ', "")
}

/// Words too common in comune names to show that one comune continues another.
const COMMON_NAME_WORDS: &[&str] = &[
    "SANTA",
    "SANTO",
    "SANTI",
    "SANTE",
    "TERME",
    "LIGURE",
    "CALABRO",
    "VENETO",
    "LOMBARDO",
    "MONFERRATO",
    "MARINA",
    "SUPERIORE",
    "INFERIORE",
    "SOPRA",
    "SOTTO",
    "VALLE",
    "MONTE",
    "CASTEL",
    "CASTELLO",
    "VILLA",
    "BORGO",
    "PIEVE",
    "PONTE",
    "ROCCA",
    "TORRE",
    "NUOVO",
    "NUOVA",
    "VECCHIO",
    "VECCHIA",
    "MAGGIORE",
    "MINORE",
    "PIANO",
    "ALTO",
    "ALTA",
    "BASSO",
    "BASSA",
    "SICULO",
    "SARDO",
    "DELLA",
    "DELLE",
    "DEGLI",
    "DELLO",
    "CON",
    "VALLI",
];

/// Whether two cleaned names share a word of four letters or more that is not a common one.
fn shares_distinctive_word(a: &str, b: &str) -> bool {
    let distinctive = |w: &&str| w.len() >= 4 && !COMMON_NAME_WORDS.contains(w);
    a.split(' ')
        .filter(distinctive)
        .any(|w| b.split(' ').any(|v| v == w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(year: u16, month: u8, day: u8) -> Option<BirthDate> {
        Some(BirthDate { year, month, day })
    }

    fn resolved(code: &str, foreign: bool, valid_at_birth: bool) -> PlaceResolution {
        PlaceResolution::Resolved {
            code: code.into(),
            foreign,
            valid_at_birth,
        }
    }

    #[test]
    fn bundled_tables_load_completely() {
        let p = Places::bundled();
        // 28 of the 19,373 rows have no code ("ND") and are left out: never a fake code.
        assert_eq!(p.all().iter().filter(|p| !p.foreign).count(), 19_345);
        assert_eq!(p.all().iter().filter(|p| p.foreign).count(), 222);
    }

    #[test]
    fn names_compare_after_the_text_pipeline() {
        let p = Places::bundled();
        for text in [
            "Galatina",
            "GALATINA",
            " galatina ",
            "Galatina (LE)",
            "GALATINA LE",
        ] {
            assert_eq!(
                p.resolve(text, date(1950, 3, 1)),
                resolved("D862", false, true),
                "{text}"
            );
        }
        // Homonyms: Paternò (CT) and Paterno (PZ, since 1973); Castro (BG) and Castro (LE, 1975).
        assert_eq!(
            p.resolve("Paternò", date(1950, 3, 1)),
            resolved("G371", false, true)
        );
        assert_eq!(
            p.resolve("Paternò", date(1990, 3, 1)),
            PlaceResolution::Unresolved
        );
        assert_eq!(
            p.resolve("Paterno' (CT)", date(1990, 3, 1)),
            resolved("G371", false, true)
        );
        assert_eq!(
            p.resolve("Castro", date(1950, 3, 1)),
            resolved("C337", false, true)
        );
        assert_eq!(
            p.resolve("Castro", date(1990, 3, 1)),
            PlaceResolution::Unresolved
        );
        assert_eq!(
            p.resolve("Castro (LE)", date(1990, 3, 1)),
            resolved("M261", false, true)
        );
        assert_eq!(
            p.resolve("S. Giovanni Rotondo", date(1950, 3, 1)),
            resolved("H926", false, true)
        );
        assert_eq!(
            p.resolve("Bozen", date(1980, 3, 1)),
            resolved("A952", false, true)
        );
    }

    #[test]
    fn hint_breaks_ties_but_never_invents() {
        let p = Places::bundled();
        assert_eq!(
            p.resolve_with_hint("Castro", date(1990, 3, 1), Some("M261")),
            resolved("M261", false, true)
        );
        assert_eq!(
            p.resolve_with_hint("Castro", date(1990, 3, 1), Some("D862")),
            PlaceResolution::Unresolved
        );
    }

    #[test]
    fn merged_comune_follows_the_birth_date() {
        let p = Places::bundled();
        assert_eq!(
            p.resolve("Presicce", date(1950, 6, 1)),
            resolved("H047", false, true)
        );
        assert_eq!(
            p.resolve("Presicce", date(2019, 5, 14)),
            resolved("H047", false, true)
        );
        assert_eq!(
            p.resolve("Presicce", date(2020, 6, 1)),
            resolved("M428", false, true)
        );
        assert_eq!(
            p.resolve("Presicce-Acquarica", date(2020, 6, 1)),
            resolved("M428", false, true)
        );
        assert_eq!(
            p.resolve("Acquarica del Capo", date(2021, 1, 1)),
            resolved("M428", false, true)
        );
        assert_eq!(
            p.resolve("H047", date(2020, 6, 1)),
            resolved("H047", false, false)
        );
        assert_eq!(
            p.resolve("m428", date(1950, 6, 1)),
            resolved("M428", false, false)
        );
        assert_eq!(
            p.resolve("M428", date(2020, 6, 1)),
            resolved("M428", false, true)
        );
        assert_eq!(p.resolve("Presicce", None), resolved("H047", false, true));
        assert_eq!(
            p.resolve("Abano", date(1990, 1, 1)),
            resolved("A001", false, true),
            "renamed Abano Terme"
        );
    }

    #[test]
    fn ceded_territories_keep_their_italian_code() {
        let p = Places::bundled();
        assert_eq!(
            p.resolve("Pola", date(1930, 1, 1)),
            resolved("G778", false, true)
        );
        assert_eq!(
            p.resolve("Fiume", date(1930, 1, 1)),
            resolved("D620", false, true)
        );
        assert_eq!(
            p.resolve("Zara", date(1930, 1, 1)),
            resolved("M149", false, true)
        );
        assert_eq!(
            p.resolve("Pola", date(1960, 1, 1)),
            resolved("G778", false, false)
        );
        // Fiume (UD, D621) became Fiume Veneto in 1911: the name picks the right code by date.
        assert_eq!(
            p.resolve("Fiume", date(1905, 1, 1)),
            resolved("D621", false, true)
        );
        assert_eq!(p.resolve("Fiume", None), resolved("D620", false, true));
    }

    #[test]
    fn foreign_countries_get_z_codes() {
        let p = Places::bundled();
        assert_eq!(
            p.resolve("Albania", date(1970, 1, 1)),
            resolved("Z100", true, true)
        );
        assert_eq!(
            p.resolve("ROMANIA", date(1970, 1, 1)),
            resolved("Z129", true, true)
        );
        assert_eq!(p.resolve("Marocco", None), resolved("Z330", true, true));
        assert_eq!(p.resolve("Morocco", None), resolved("Z330", true, true));
        assert_eq!(
            p.resolve("Cina", date(1990, 1, 1)),
            resolved("Z210", true, true)
        );
        assert_eq!(
            p.resolve("Perù", date(1990, 1, 1)),
            resolved("Z611", true, true)
        );
        assert_eq!(
            p.resolve("Cecoslovacchia", date(2000, 1, 1)),
            resolved("Z105", true, false)
        );
        assert_eq!(p.resolve("Z999", None), PlaceResolution::Unresolved);
        assert_eq!(
            p.resolve("Georgia", date(2000, 1, 1)),
            resolved("Z254", true, true)
        );
        // Both Georgia codes cover 1980: among foreign codes the one still in use wins.
        assert_eq!(
            p.resolve("Georgia", date(1980, 1, 1)),
            resolved("Z254", true, true)
        );
        // An Italian comune wins over a foreign country of the same name.
        assert_eq!(
            p.resolve("Palau", date(1990, 1, 1)),
            resolved("G258", false, true)
        );
        for (alias, code) in FOREIGN_ALIASES {
            assert!(p.by_code.contains_key(*code), "{alias} → {code}");
        }
    }

    #[test]
    fn never_a_fake_code() {
        let p = Places::bundled();
        assert_eq!(
            p.resolve("Italia", date(1970, 1, 1)),
            PlaceResolution::Unresolved
        );
        assert_eq!(
            p.resolve("Atlantide", date(1970, 1, 1)),
            PlaceResolution::Unresolved
        );
        assert_eq!(p.resolve("", None), PlaceResolution::Missing);
        assert_eq!(p.resolve(" - ", None), PlaceResolution::Missing);
        assert_eq!(p.resolve("N.D.", None), PlaceResolution::Missing);
        assert_eq!(
            p.resolve(&"Galatina".repeat(100), None),
            PlaceResolution::Unresolved
        );
    }

    #[test]
    fn listings_respect_validity() {
        let p = Places::bundled();
        let le_2020: Vec<&str> = p
            .comuni_in_province(
                "LE",
                BirthDate {
                    year: 2020,
                    month: 1,
                    day: 1,
                },
            )
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        assert!(le_2020.contains(&"M428") && !le_2020.contains(&"H047"));
        let le_1950: Vec<&str> = p
            .comuni_in_province(
                "LE",
                BirthDate {
                    year: 1950,
                    month: 1,
                    day: 1,
                },
            )
            .iter()
            .map(|p| p.code.as_str())
            .collect();
        assert!(le_1950.contains(&"H047") && !le_1950.contains(&"M428"));
        let countries = p.foreign_countries(BirthDate {
            year: 2020,
            month: 1,
            day: 1,
        });
        assert!(countries.iter().any(|c| c.code == "Z100"));
        assert!(
            !countries.iter().any(|c| c.code == "Z105"),
            "Czechoslovakia ended in 1993"
        );
        assert!(countries.iter().all(|c| c.province == FOREIGN_PROVINCE));
    }

    #[test]
    fn every_period_resolves_to_its_own_code() {
        // Name + province at the first day of each period. The only exceptions allowed are
        // homonyms in the same province at the same time (Unresolved, never a wrong code) and
        // Georgia, whose two codes both cover 1900–1994 in the table.
        let p = Places::bundled();
        let mut unresolved = 0;
        for place in p.all().iter().filter(|p| p.code != "Z136") {
            let text = format!("{} ({})", place.name, place.province);
            let expected = resolved(&place.code, place.foreign, true);
            let mut dates = vec![place.valid_from.or(place.valid_to)];
            if place.valid_to.is_none() {
                dates.push(None);
            }
            for on in dates {
                match p.resolve(&text, on) {
                    r if r == expected => {}
                    PlaceResolution::Unresolved => unresolved += 1,
                    r => panic!("{text} on {on:?}: {r:?}, expected {expected:?}"),
                }
            }
        }
        assert!(unresolved <= 15, "{unresolved} same-province homonyms");
    }

    proptest! {
        #[test]
        fn resolve_never_panics(s in "\\PC{0,60}", y in 1850u16..2030) {
            let _ = Places::bundled().resolve(&s, Some(BirthDate { year: y, month: 1, day: 1 }));
        }
    }
}
