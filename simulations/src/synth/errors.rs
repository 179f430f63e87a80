//! The per-entity error model: how a true identity becomes what an office actually typed.
//!
//! Every problem of DOMAIN.md §5 has a rate in [`ErrorRates`]. Rates are probabilities per record;
//! those that only make sense for some people (an apostrophe variant needs an apostrophe or a final
//! accent, a married surname needs a husband) are conditional on the person being eligible, as each
//! field's doc says. With every rate at 0 a record is written exactly as the person is (in the
//! entity's letter case and date format); with a rate at 1 the error appears in every eligible
//! record. Every altered date is still a real calendar date, so the file stays importable: the
//! errors are the kind that pass a form's validation and reach the database.

use std::collections::BTreeMap;

use ponte_node::normalise::codice_fiscale;
use ponte_node::normalise::{BirthDate, Sex};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SynthError;
use super::calendar::{add_days, format_date, is_valid};
use super::names;
use super::population::{Person, latest_place};
use super::scenario::{ExportFormat, Field, SexStyle, TextCase};

/// Error rates of one entity. Missing fields in a scenario file take the defaults, which model a
/// fairly clean registry: most records are exact, a few percent carry one problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRates {
    /// Per name field (surname, given names): one keyboard-plausible typo (neighbour-key
    /// substitution, deletion — mostly of a doubled letter —, transposition, doubling).
    pub name_typo: f64,
    /// Among names with an apostrophe or a final accent: `D'AMICO` → `DAMICO` / `D AMICO`,
    /// `NICOLÒ` → `NICOLO'` / `NICOLO` / `NICOLÓ`.
    pub apostrophe_accent: f64,
    /// Among surnames starting with a particle: `DE GIORGI` → `DEGIORGI` / `DE-GIORGI`.
    pub particle_spacing: f64,
    /// Among double surnames: only the first (or the second) is written.
    pub surname_partial: f64,
    /// Among married or widowed women: the husband's surname replaces or is appended to the
    /// birth surname (`BIANCHI`, `ROSSI IN BIANCHI`, `ROSSI VED. BIANCHI`).
    pub married_surname: f64,
    /// Among compound or double given names: `Maria Grazia` → `Mariagrazia` / `Maria-Grazia` /
    /// `Maria`, and `Annamaria` → `Anna Maria`.
    pub given_compound: f64,
    /// Among first names with a known nickname: the nickname instead (`Giuseppe` → `Peppino`).
    pub hypocoristic: f64,
    /// Among the foreign-born with foreign names: transliteration variant (`Mohamed` →
    /// `Muhammad`), dropped or cedilla diacritics (`Ștefan` → `Stefan` / `Ştefan`), or surname and
    /// given names swapped (Chinese names).
    pub foreign_name_variant: f64,
    /// Letter case different from the entity's usual (upper-case systems with a mixed-case
    /// record; mixed-case systems with an all-upper or all-lower one, CF included).
    pub case_variation: f64,
    /// A leading, trailing or doubled space in one text field.
    pub extra_spaces: f64,
    /// Sex left empty.
    pub sex_missing: f64,
    /// Among birth dates with day ≤ 12 and day ≠ month: day and month swapped.
    pub date_day_month_swap: f64,
    /// Wrong century from a two-digit year (1921 ↔ 2021) where plausible, else the year's last
    /// two digits transposed (1938 → 1983) where the result is not in the future.
    pub date_year_typo: f64,
    /// Two adjacent digits of the day, month or year transposed (`12` → `21`), keeping a valid date.
    pub date_digit_transposition: f64,
    /// Among the foreign-born with foreign names: placeholder `01/01/YYYY`.
    pub date_placeholder_foreign: f64,
    /// Among people born in a comune with a known frazione: the frazione is written (`Noha`).
    pub birthplace_frazione: f64,
    /// Among people born in a comune since merged or renamed: today's comune is written
    /// (`Presicce-Acquarica` for Presicce, `Santa Cesarea Terme` for Santa Cesarea).
    pub birthplace_current_name: f64,
    /// The Belfiore code is written instead of the name (not an error: some software does so).
    pub birthplace_code: f64,
    /// Birthplace left empty.
    pub birthplace_missing: f64,
    /// Among people with a CF: the CF field is empty.
    pub cf_missing: f64,
    /// Among people with a CF: a relative's CF (well-formed, valid, wrong person).
    pub cf_relative: f64,
    /// Among people with a CF: one character mistyped, so the check character fails.
    pub cf_typo: f64,
    /// Among people with an STP/ENI code and no CF: the code is typed into the CF field.
    pub stp_in_cf_field: f64,
}

impl Default for ErrorRates {
    fn default() -> Self {
        ErrorRates {
            name_typo: 0.04,
            apostrophe_accent: 0.3,
            particle_spacing: 0.25,
            surname_partial: 0.3,
            married_surname: 0.2,
            given_compound: 0.3,
            hypocoristic: 0.02,
            foreign_name_variant: 0.3,
            case_variation: 0.03,
            extra_spaces: 0.02,
            sex_missing: 0.005,
            date_day_month_swap: 0.02,
            date_year_typo: 0.005,
            date_digit_transposition: 0.01,
            date_placeholder_foreign: 0.2,
            birthplace_frazione: 0.03,
            birthplace_current_name: 0.4,
            birthplace_code: 0.0,
            birthplace_missing: 0.01,
            cf_missing: 0.15,
            cf_relative: 0.005,
            cf_typo: 0.01,
            stp_in_cf_field: 0.7,
        }
    }
}

impl ErrorRates {
    /// Every rate at `rate`.
    pub fn uniform(rate: f64) -> Self {
        ErrorRates {
            name_typo: rate,
            apostrophe_accent: rate,
            particle_spacing: rate,
            surname_partial: rate,
            married_surname: rate,
            given_compound: rate,
            hypocoristic: rate,
            foreign_name_variant: rate,
            case_variation: rate,
            extra_spaces: rate,
            sex_missing: rate,
            date_day_month_swap: rate,
            date_year_typo: rate,
            date_digit_transposition: rate,
            date_placeholder_foreign: rate,
            birthplace_frazione: rate,
            birthplace_current_name: rate,
            birthplace_code: rate,
            birthplace_missing: rate,
            cf_missing: rate,
            cf_relative: rate,
            cf_typo: rate,
            stp_in_cf_field: rate,
        }
    }

    /// No errors at all: every record is written as the person is.
    pub fn none() -> Self {
        Self::uniform(0.0)
    }

    fn all(&self) -> [(&'static str, f64); 23] {
        [
            ("name_typo", self.name_typo),
            ("apostrophe_accent", self.apostrophe_accent),
            ("particle_spacing", self.particle_spacing),
            ("surname_partial", self.surname_partial),
            ("married_surname", self.married_surname),
            ("given_compound", self.given_compound),
            ("hypocoristic", self.hypocoristic),
            ("foreign_name_variant", self.foreign_name_variant),
            ("case_variation", self.case_variation),
            ("extra_spaces", self.extra_spaces),
            ("sex_missing", self.sex_missing),
            ("date_day_month_swap", self.date_day_month_swap),
            ("date_year_typo", self.date_year_typo),
            ("date_digit_transposition", self.date_digit_transposition),
            ("date_placeholder_foreign", self.date_placeholder_foreign),
            ("birthplace_frazione", self.birthplace_frazione),
            ("birthplace_current_name", self.birthplace_current_name),
            ("birthplace_code", self.birthplace_code),
            ("birthplace_missing", self.birthplace_missing),
            ("cf_missing", self.cf_missing),
            ("cf_relative", self.cf_relative),
            ("cf_typo", self.cf_typo),
            ("stp_in_cf_field", self.stp_in_cf_field),
        ]
    }

    pub fn check(&self) -> Result<(), SynthError> {
        for (name, v) in self.all() {
            if !(0.0..=1.0).contains(&v) {
                return Err(SynthError(format!(
                    "{name} = {v}: a rate must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// Which error was injected into a record (for tests and research diagnostics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    SurnameTypo,
    GivenNamesTypo,
    SurnameApostropheAccent,
    GivenNamesApostropheAccent,
    ParticleSpacing,
    SurnamePartial,
    MarriedSurname,
    GivenCompound,
    Hypocoristic,
    ForeignNameVariant,
    CaseVariation,
    ExtraSpaces,
    SexMissing,
    DateDayMonthSwap,
    DateYearTypo,
    DateDigitTransposition,
    DatePlaceholder,
    BirthplaceFrazione,
    BirthplaceCurrentName,
    BirthplaceCode,
    BirthplaceMissing,
    CfMissing,
    CfRelative,
    CfTypo,
    StpInCfField,
}

/// The identity fields of one record as written in the export (empty = absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordText {
    pub surname: String,
    pub given_names: String,
    pub surname_alias: String,
    pub sex: String,
    pub birth_date: String,
    pub birthplace: String,
    pub codice_fiscale: String,
}

/// What the error model needs besides the person.
pub struct RenderContext<'a> {
    pub format: &'a ExportFormat,
    pub as_of: BirthDate,
    pub persons: &'a [Person],
    /// Persons by surname, to find a relative whose CF can be typed by mistake.
    pub by_surname: &'a BTreeMap<&'a str, Vec<usize>>,
}

fn hit(rng: &mut ChaCha8Rng, rate: f64) -> bool {
    rate > 0.0 && rng.random::<f64>() < rate
}

/// Writes `person`'s identity as the entity would, injecting errors at `rates`. Returns the
/// record and the errors injected, in the order applied.
pub fn render_record(
    person: &Person,
    ctx: &RenderContext<'_>,
    rates: &ErrorRates,
    rng: &mut ChaCha8Rng,
) -> (RecordText, Vec<ErrorKind>) {
    let mut kinds = Vec::new();
    let foreign_names = person.origin().is_some_and(|o| !o.italian_names);

    // Names, as written (letter case is applied at the end).
    let mut surname = person.surname.clone();
    let mut given = person.given_names.clone();
    if foreign_names
        && hit(rng, rates.foreign_name_variant)
        && let Some((s, g)) = foreign_variant(person, rng)
    {
        surname = s;
        given = g;
        kinds.push(ErrorKind::ForeignNameVariant);
    }
    if let Some((first, second)) = split_double(&surname)
        && hit(rng, rates.surname_partial)
    {
        surname = if rng.random::<f64>() < 0.8 {
            first
        } else {
            second
        };
        kinds.push(ErrorKind::SurnamePartial);
    }
    if has_particle(&surname)
        && hit(rng, rates.particle_spacing)
        && let Some(v) = particle_variant(&surname, rng)
    {
        surname = v;
        kinds.push(ErrorKind::ParticleSpacing);
    }
    if has_apostrophe_or_final_accent(&surname)
        && hit(rng, rates.apostrophe_accent)
        && let Some(v) = apostrophe_accent_variant(&surname, rng)
    {
        surname = v;
        kinds.push(ErrorKind::SurnameApostropheAccent);
    }
    if let Some(husband) = &person.married_surname
        && hit(rng, rates.married_surname)
    {
        let roll: f64 = rng.random();
        surname = if roll < 0.4 {
            husband.clone()
        } else if person.widowed && roll < 0.75 {
            format!("{surname} ved. {husband}")
        } else {
            format!("{surname} in {husband}")
        };
        kinds.push(ErrorKind::MarriedSurname);
    }
    if hit(rng, rates.name_typo)
        && let Some(v) = keyboard_typo(&surname, rng)
    {
        surname = v;
        kinds.push(ErrorKind::SurnameTypo);
    }

    let first_given = given.split(' ').next().unwrap_or("").to_string();
    if !names::nicknames(&first_given).is_empty() && !foreign_names && hit(rng, rates.hypocoristic)
    {
        given = names::nicknames(&first_given)
            .choose(rng)
            .expect("not empty")
            .to_string();
        kinds.push(ErrorKind::Hypocoristic);
    }
    if !foreign_names
        && is_compound_given(&given)
        && hit(rng, rates.given_compound)
        && let Some(v) = compound_variant(&given, rng)
    {
        given = v;
        kinds.push(ErrorKind::GivenCompound);
    }
    if has_apostrophe_or_final_accent(&given)
        && hit(rng, rates.apostrophe_accent)
        && let Some(v) = apostrophe_accent_variant(&given, rng)
    {
        given = v;
        kinds.push(ErrorKind::GivenNamesApostropheAccent);
    }
    if hit(rng, rates.name_typo)
        && let Some(v) = keyboard_typo(&given, rng)
    {
        given = v;
        kinds.push(ErrorKind::GivenNamesTypo);
    }

    // Sex.
    let mut sex = sex_text(person.sex, ctx.format.sex_style).to_string();
    if hit(rng, rates.sex_missing) {
        sex.clear();
        kinds.push(ErrorKind::SexMissing);
    }

    // Birth date.
    let birth_date = render_birth_date(person, foreign_names, ctx, rates, rng, &mut kinds);

    // Birthplace.
    let mut birthplace = person.birthplace_name.clone();
    if hit(rng, rates.birthplace_missing) {
        birthplace.clear();
        kinds.push(ErrorKind::BirthplaceMissing);
    } else if hit(rng, rates.birthplace_code) {
        birthplace = person.birthplace_code.clone();
        kinds.push(ErrorKind::BirthplaceCode);
    } else {
        let frazioni: Vec<&str> = names::FRAZIONI
            .iter()
            .filter(|(_, c)| *c == person.birthplace_code)
            .map(|(f, _)| *f)
            .collect();
        let current = current_name(person);
        if !frazioni.is_empty() && hit(rng, rates.birthplace_frazione) {
            birthplace = frazioni.choose(rng).expect("not empty").to_string();
            kinds.push(ErrorKind::BirthplaceFrazione);
        } else if let Some(current) = current
            && hit(rng, rates.birthplace_current_name)
        {
            birthplace = current;
            kinds.push(ErrorKind::BirthplaceCurrentName);
        }
    }

    // Codice fiscale (or an STP/ENI code typed into its field).
    let mut cf = String::new();
    match (&person.codice_fiscale, &person.other_id) {
        (Some(true_cf), _) => {
            if hit(rng, rates.cf_missing) {
                kinds.push(ErrorKind::CfMissing);
            } else if hit(rng, rates.cf_relative) {
                cf = relative_cf(person, ctx, rng);
                kinds.push(ErrorKind::CfRelative);
            } else if hit(rng, rates.cf_typo) {
                cf = cf_typo(true_cf, rng);
                kinds.push(ErrorKind::CfTypo);
            } else {
                cf = true_cf.clone();
            }
        }
        (None, Some((_, code))) => {
            if hit(rng, rates.stp_in_cf_field) {
                cf = code.clone();
                kinds.push(ErrorKind::StpInCfField);
            }
        }
        (None, None) => {}
    }

    let surname_alias = match (
        &person.married_surname,
        ctx.format.header(Field::SurnameAlias),
    ) {
        (Some(h), Some(_)) => h.clone(),
        _ => String::new(),
    };

    // Letter case: the entity's usual, or (case_variation) another one for the whole record.
    let mut record = RecordText {
        surname,
        given_names: given,
        surname_alias,
        sex,
        birth_date,
        birthplace,
        codice_fiscale: cf,
    };
    let varied = hit(rng, rates.case_variation);
    let case = match (ctx.format.text_case, varied) {
        (TextCase::Upper, false) => Case::Upper,
        (TextCase::AsWritten, false) => Case::AsWritten,
        (TextCase::Upper, true) => Case::AsWritten,
        (TextCase::AsWritten, true) => {
            if rng.random::<f64>() < 0.6 {
                Case::Upper
            } else {
                Case::Lower
            }
        }
    };
    if varied {
        kinds.push(ErrorKind::CaseVariation);
    }
    for field in [
        &mut record.surname,
        &mut record.given_names,
        &mut record.surname_alias,
        &mut record.birthplace,
    ] {
        *field = apply_case(field, case);
    }
    if case == Case::Lower {
        record.codice_fiscale = record.codice_fiscale.to_lowercase();
    }

    if hit(rng, rates.extra_spaces) {
        let mut fields: Vec<&mut String> = vec![&mut record.surname, &mut record.given_names];
        if !record.birthplace.is_empty() {
            fields.push(&mut record.birthplace);
        }
        if !record.codice_fiscale.is_empty() {
            fields.push(&mut record.codice_fiscale);
        }
        let i = rng.random_range(0..fields.len());
        let field = &mut fields[i];
        match rng.random_range(0..3) {
            0 => field.insert(0, ' '),
            1 => field.push(' '),
            _ => match field.find(' ') {
                Some(at) => field.insert(at, ' '),
                None => field.push_str("  "),
            },
        }
        kinds.push(ErrorKind::ExtraSpaces);
    }
    (record, kinds)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Lower,
    AsWritten,
}

fn apply_case(s: &str, case: Case) -> String {
    match case {
        Case::Upper => s.to_uppercase(),
        Case::Lower => s.to_lowercase(),
        Case::AsWritten => s.to_string(),
    }
}

pub fn sex_text(sex: Sex, style: SexStyle) -> &'static str {
    match (sex, style) {
        (Sex::M, SexStyle::Letter) => "M",
        (Sex::F, SexStyle::Letter) => "F",
        (Sex::M, SexStyle::Word) => "MASCHIO",
        (Sex::F, SexStyle::Word) => "FEMMINA",
    }
}

fn render_birth_date(
    person: &Person,
    foreign_names: bool,
    ctx: &RenderContext<'_>,
    rates: &ErrorRates,
    rng: &mut ChaCha8Rng,
    kinds: &mut Vec<ErrorKind>,
) -> String {
    let mut d = person.birth_date;
    let fmt = ctx.format.date_format.as_str();
    if foreign_names && (d.month, d.day) != (1, 1) && hit(rng, rates.date_placeholder_foreign) {
        kinds.push(ErrorKind::DatePlaceholder);
        return format_date(
            BirthDate {
                year: d.year,
                month: 1,
                day: 1,
            },
            fmt,
        );
    }
    if d.day <= 12 && d.day != d.month && hit(rng, rates.date_day_month_swap) {
        d = BirthDate {
            year: d.year,
            month: d.day,
            day: d.month,
        };
        kinds.push(ErrorKind::DateDayMonthSwap);
    }
    if hit(rng, rates.date_year_typo)
        && let Some(y) = year_typo(d, ctx.as_of)
    {
        d = y;
        kinds.push(ErrorKind::DateYearTypo);
    }
    if hit(rng, rates.date_digit_transposition) {
        let candidates = digit_transpositions(d, ctx.as_of);
        if let Some(t) = candidates.choose(rng) {
            d = *t;
            kinds.push(ErrorKind::DateDigitTransposition);
        }
    }
    format_date(d, fmt)
}

/// 19yy ↔ 20yy when the result is not in the future, else the year's last two digits swapped.
pub fn year_typo(d: BirthDate, as_of: BirthDate) -> Option<BirthDate> {
    let yy = d.year % 100;
    let other_century = if d.year >= 2000 {
        1900 + yy
    } else if d.year >= 1900 {
        2000 + yy
    } else {
        d.year
    };
    let valid = |y: u16| y != d.year && y <= as_of.year && y >= 1880 && is_valid(y, d.month, d.day);
    if valid(other_century)
        && (other_century < as_of.year || (d.month, d.day) <= (as_of.month, as_of.day))
    {
        return Some(BirthDate {
            year: other_century,
            ..d
        });
    }
    let swapped = d.year - yy + (yy % 10) * 10 + yy / 10;
    if valid(swapped) {
        return Some(BirthDate { year: swapped, ..d });
    }
    None
}

/// Dates obtained by swapping two adjacent digits of the day, the month or the year's last two,
/// that are still real dates between 1880 and `as_of`.
pub fn digit_transpositions(d: BirthDate, as_of: BirthDate) -> Vec<BirthDate> {
    let swap2 = |n: u16| (n % 10) * 10 + n / 10;
    let mut out = Vec::new();
    let day = swap2(d.day as u16) as u8;
    let month = swap2(d.month as u16) as u8;
    let year = d.year - d.year % 100 + swap2(d.year % 100);
    for (y, m, dd) in [
        (d.year, d.month, day),
        (d.year, month, d.day),
        (year, d.month, d.day),
    ] {
        let c = BirthDate {
            year: y,
            month: m,
            day: dd,
        };
        if c != d && is_valid(y, m, dd) && y >= 1880 && c <= as_of && !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Today's name of the person's birth comune when it was merged or renamed since the birth.
fn current_name(person: &Person) -> Option<String> {
    if person.foreign_born() {
        return None;
    }
    if let Some((_, new)) = names::MERGED_INTO
        .iter()
        .find(|(old, _)| *old == person.birthplace_code)
    {
        return latest_place(new).map(|p| super::population::display_name(&p.name));
    }
    let latest = latest_place(&person.birthplace_code)?;
    if latest.valid_to.is_some() {
        return None; // suppressed without a known successor: people keep the old name
    }
    let name = super::population::display_name(&latest.name);
    (name != person.birthplace_name).then_some(name)
}

/// Splits a double surname made of two listed surnames ("Rizzo Quarta" → "Rizzo", "Quarta").
pub fn split_double(surname: &str) -> Option<(String, String)> {
    for (i, _) in surname.match_indices(' ') {
        let (a, b) = (&surname[..i], &surname[i + 1..]);
        if names::SURNAMES.contains(&a) && names::SURNAMES.contains(&b) {
            return Some((a.to_string(), b.to_string()));
        }
    }
    None
}

fn has_particle(surname: &str) -> bool {
    surname
        .split_once(' ')
        .is_some_and(|(first, _)| names::PARTICLES.contains(&first.to_uppercase().as_str()))
}

/// `De Giorgi` → `DeGiorgi` / `Degiorgi` / `De-Giorgi` (the particle is the first word).
pub fn particle_variant(surname: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let (particle, rest) = surname.split_once(' ')?;
    if !names::PARTICLES.contains(&particle.to_uppercase().as_str()) {
        return None;
    }
    Some(match rng.random_range(0..3) {
        0 => format!("{particle}{rest}"),
        1 => {
            let mut chars = rest.chars();
            let head: String = chars
                .next()
                .map(|c| c.to_lowercase().collect())
                .unwrap_or_default();
            format!("{particle}{head}{}", chars.as_str())
        }
        _ => format!("{particle}-{rest}"),
    })
}

const ACCENTED: &[(char, char, char)] = &[
    // (accented, plain, the other accent)
    ('à', 'a', 'á'),
    ('è', 'e', 'é'),
    ('é', 'e', 'è'),
    ('ì', 'i', 'í'),
    ('ò', 'o', 'ó'),
    ('ù', 'u', 'ú'),
    ('À', 'A', 'Á'),
    ('È', 'E', 'É'),
    ('É', 'E', 'È'),
    ('Ì', 'I', 'Í'),
    ('Ò', 'O', 'Ó'),
    ('Ù', 'U', 'Ú'),
];

fn has_apostrophe_or_final_accent(s: &str) -> bool {
    s.contains('\'')
        || s.split(' ').any(|w| {
            w.chars()
                .last()
                .is_some_and(|c| ACCENTED.iter().any(|a| a.0 == c))
        })
}

/// `D'Amico` → `DAmico` / `D Amico` / `D’Amico` / ``D`Amico``; `Calò` → `Calo'` / `Calo` / `Caló`.
pub fn apostrophe_accent_variant(s: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    if s.contains('\'') {
        let with = ["", " ", "’", "`"].choose(rng).expect("not empty");
        return Some(s.replacen('\'', with, 1));
    }
    let words: Vec<&str> = s.split(' ').collect();
    let at = words.iter().position(|w| {
        w.chars()
            .last()
            .is_some_and(|c| ACCENTED.iter().any(|a| a.0 == c))
    })?;
    let word = words[at];
    let last = word.chars().last()?;
    let (_, plain, other) = *ACCENTED.iter().find(|a| a.0 == last)?;
    let stem = &word[..word.len() - last.len_utf8()];
    let new_word = match rng.random_range(0..3) {
        0 => format!("{stem}{plain}'"),
        1 => format!("{stem}{plain}"),
        _ => format!("{stem}{other}"),
    };
    let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    out[at] = new_word;
    Some(out.join(" "))
}

fn is_compound_given(given: &str) -> bool {
    given.contains(' ') || names::JOINABLE.iter().any(|(_, joined)| *joined == given)
}

/// `Maria Grazia` → `Mariagrazia` / `Maria-Grazia` / `Maria`; `Giuseppe Antonio` → `Giuseppe`;
/// `Annamaria` → `Anna Maria`.
pub fn compound_variant(given: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    if let Some((spaced, _)) = names::JOINABLE.iter().find(|(_, joined)| *joined == given) {
        return Some(spaced.to_string());
    }
    let (first, rest) = given.split_once(' ')?;
    if let Some((_, joined)) = names::JOINABLE.iter().find(|(spaced, _)| *spaced == given) {
        return Some(match rng.random_range(0..3) {
            0 => joined.to_string(),
            1 => format!("{first}-{rest}"),
            _ => first.to_string(),
        });
    }
    Some(first.to_string())
}

fn foreign_variant(person: &Person, rng: &mut ChaCha8Rng) -> Option<(String, String)> {
    let origin = person.origin()?;
    let (s, g) = (&person.surname, &person.given_names);
    let mut options: Vec<(String, String)> = Vec::new();
    for (a, b) in names::TRANSLITERATIONS {
        for (from, to) in [(a, b), (b, a)] {
            if s == from {
                options.push((to.to_string(), g.clone()));
            }
            if g == from {
                options.push((s.clone(), to.to_string()));
            }
        }
    }
    let drop = |t: &str| -> String {
        t.chars()
            .map(|c| {
                names::DIACRITIC_DROPS
                    .iter()
                    .find(|d| d.0 == c)
                    .map(|d| d.1.to_string())
                    .unwrap_or(c.to_string())
            })
            .collect()
    };
    let (ds, dg) = (drop(s), drop(g));
    if ds != *s || dg != *g {
        options.push((ds, dg));
    }
    let cedilla = |t: &str| -> String {
        t.chars()
            .map(|c| {
                names::CEDILLA_FORMS
                    .iter()
                    .find(|d| d.0 == c)
                    .map(|d| d.1)
                    .unwrap_or(c)
            })
            .collect()
    };
    let (cs, cg) = (cedilla(s), cedilla(g));
    if cs != *s || cg != *g {
        options.push((cs, cg));
    }
    if origin.surname_first {
        options.push((g.clone(), s.clone()));
    }
    options.choose(rng).cloned()
}

/// Keys that sit next to each other on an Italian (QWERTY) keyboard.
fn neighbours(c: char) -> Vec<char> {
    const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
    const OFFSET: [f32; 3] = [0.0, 0.25, 0.75];
    let lower = c.to_ascii_lowercase();
    let Some((row, col)) = ROWS
        .iter()
        .enumerate()
        .find_map(|(r, keys)| keys.find(lower).map(|k| (r, k)))
    else {
        return Vec::new();
    };
    let x = col as f32 + OFFSET[row];
    let mut out = Vec::new();
    for (r, keys) in ROWS.iter().enumerate() {
        if (r as i32 - row as i32).abs() > 1 {
            continue;
        }
        for (k, key) in keys.chars().enumerate() {
            let kx = k as f32 + OFFSET[r];
            if key != lower && (kx - x).abs() <= 1.0 {
                out.push(if c.is_ascii_uppercase() {
                    key.to_ascii_uppercase()
                } else {
                    key
                });
            }
        }
    }
    out
}

/// One keyboard-plausible typo that changes `s`, never on the first letter (people get that
/// right far more often). `None` when the string has no room for one.
pub fn keyboard_typo(s: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    let letters: Vec<usize> = (1..chars.len())
        .filter(|&i| chars[i].is_ascii_alphabetic())
        .collect();
    if letters.is_empty() {
        return None;
    }
    for _ in 0..8 {
        let mut out = chars.clone();
        match rng.random_range(0..10) {
            // Substitution with a neighbouring key.
            0..=3 => {
                let i = *letters.choose(rng).expect("not empty");
                let n = neighbours(chars[i]);
                let Some(&r) = n.choose(rng) else { continue };
                out[i] = r;
            }
            // Deletion, preferably of one letter of a double (Carluccio → Carlucio).
            4..=6 => {
                let doubles: Vec<usize> = letters
                    .iter()
                    .copied()
                    .filter(|&i| chars[i].eq_ignore_ascii_case(&chars[i - 1]))
                    .collect();
                let i = *doubles
                    .choose(rng)
                    .or_else(|| letters.choose(rng))
                    .expect("not empty");
                out.remove(i);
            }
            // Transposition of two adjacent letters.
            7..=8 => {
                let pairs: Vec<usize> = letters
                    .iter()
                    .copied()
                    .filter(|&i| {
                        i + 1 < chars.len()
                            && chars[i + 1].is_ascii_alphabetic()
                            && chars[i] != chars[i + 1]
                    })
                    .collect();
                let Some(&i) = pairs.choose(rng) else {
                    continue;
                };
                out.swap(i, i + 1);
            }
            // Doubling a consonant (Mele → Melle).
            _ => {
                let i = *letters.choose(rng).expect("not empty");
                if "aeiouAEIOU".contains(chars[i]) {
                    continue;
                }
                out.insert(i, chars[i]);
            }
        }
        if out != chars {
            return Some(out.into_iter().collect());
        }
    }
    None
}

/// Odd-position values of the CF check-character table (DOMAIN.md §4), for 0–9 then A–Z.
const CF_ODD: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// The check character of a 16-character CF's first 15 characters, if they are all `[0-9A-Z]`.
pub fn cf_check_char(cf: &str) -> Option<char> {
    let bytes = cf.as_bytes();
    if bytes.len() < 15 {
        return None;
    }
    let mut sum = 0;
    for (i, &b) in bytes[..15].iter().enumerate() {
        let v = match b {
            b'0'..=b'9' => (b - b'0') as usize,
            b'A'..=b'Z' => (b - b'A') as usize,
            _ => return None,
        };
        // 1-based odd positions are 0-based even indices.
        sum += if i % 2 == 0 { CF_ODD[v] } else { v as u32 };
    }
    Some((b'A' + (sum % 26) as u8) as char)
}

/// Whether `cf` is 16 characters whose last is the right check character.
pub fn cf_check_consistent(cf: &str) -> bool {
    cf.len() == 16 && cf_check_char(cf) == cf[15..].chars().next()
}

/// One keyboard-plausible mistake (neighbouring key or adjacent transposition) that the check
/// character detects.
pub fn cf_typo(cf: &str, rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = cf.chars().collect();
    for _ in 0..16 {
        let mut out = chars.clone();
        let i = rng.random_range(0..chars.len());
        if rng.random::<f64>() < 0.7 {
            let c = chars[i];
            let n: Vec<char> = if c.is_ascii_digit() {
                let d = c as u8 - b'0';
                [d.wrapping_sub(1), d + 1]
                    .iter()
                    .filter(|&&x| x <= 9)
                    .map(|&x| (b'0' + x) as char)
                    .collect()
            } else {
                neighbours(c)
                    .into_iter()
                    .map(|x| x.to_ascii_uppercase())
                    .collect()
            };
            let Some(&r) = n.choose(rng) else { continue };
            out[i] = r;
        } else if i + 1 < chars.len() && chars[i] != chars[i + 1] {
            out.swap(i, i + 1);
        } else {
            continue;
        }
        let s: String = out.into_iter().collect();
        if !cf_check_consistent(&s) {
            return s;
        }
    }
    // Fall back on a wrong check character: always detected.
    let check = chars[15];
    let wrong = if check == 'Z' {
        'A'
    } else {
        (check as u8 + 1) as char
    };
    chars[..15].iter().collect::<String>() + &wrong.to_string()
}

/// A relative's CF: another person of the population with the same birth or married surname, or
/// (when there is none) a plausible parent, child or sibling computed on the spot.
fn relative_cf(person: &Person, ctx: &RenderContext<'_>, rng: &mut ChaCha8Rng) -> String {
    let own = person.codice_fiscale.clone().unwrap_or_default();
    let mut candidates: Vec<&str> = Vec::new();
    for key in [
        Some(person.surname.as_str()),
        person.married_surname.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        // A bounded sample of the namesakes: common surnames are shared by thousands.
        let namesakes = ctx.by_surname.get(key).map(Vec::as_slice).unwrap_or(&[]);
        for _ in 0..namesakes.len().min(16) {
            let other = &ctx.persons[*namesakes.choose(rng).expect("not empty")];
            if other.person_id != person.person_id
                && let Some(cf) = other.codice_fiscale.as_deref()
                && cf != own
            {
                candidates.push(cf);
            }
        }
    }
    // Prefer the relatives' own CFs most of the time, but not always (not everyone's relatives
    // are in care).
    if !candidates.is_empty() && rng.random::<f64>() < 0.7 {
        return candidates.choose(rng).expect("not empty").to_string();
    }
    for _ in 0..8 {
        let sex = if rng.random::<bool>() { Sex::M } else { Sex::F };
        let table = if sex == Sex::M {
            names::ELDER_MALE
        } else {
            names::ELDER_FEMALE
        };
        let given = table.choose(rng).expect("not empty").0;
        let years: i64 = *[-30i64, -27, -5, -3, 2, 4, 26, 29, 33]
            .choose(rng)
            .expect("not empty");
        let shift = years * 365 + rng.random_range(-150..150);
        let mut birth = add_days(person.birth_date, shift);
        if birth > ctx.as_of {
            birth = add_days(person.birth_date, -shift);
        }
        let cf =
            codice_fiscale::compute(&person.surname, given, sex, birth, &person.birthplace_code);
        if cf != own {
            return cf;
        }
    }
    own
}

/// The record exactly as the person is, for comparison with a noisy one.
pub fn clean_record(person: &Person, format: &ExportFormat) -> RecordText {
    let case = |s: &str| match format.text_case {
        TextCase::Upper => s.to_uppercase(),
        TextCase::AsWritten => s.to_string(),
    };
    RecordText {
        surname: case(&person.surname),
        given_names: case(&person.given_names),
        surname_alias: match (&person.married_surname, format.header(Field::SurnameAlias)) {
            (Some(h), Some(_)) => case(h),
            _ => String::new(),
        },
        sex: sex_text(person.sex, format.sex_style).to_string(),
        birth_date: format_date(person.birth_date, &format.date_format),
        birthplace: case(&person.birthplace_name),
        codice_fiscale: person.codice_fiscale.clone().unwrap_or_default(),
    }
}
