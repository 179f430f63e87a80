//! Name tables of the synthetic population.
//!
//! The weights are a documented model, not measured frequencies: surnames follow a
//! Zipf–Mandelbrot law over a list of surnames typical of Salento (rank r gets weight 1/(r + 4)),
//! so that a handful of them (Greco ≈ 7%, Rizzo ≈ 6%, De Giorgi ≈ 5%...) are shared by many
//! people — the hard case for record linkage — while the tail stays populated.
//! Given names carry hand-set relative weights per birth cohort, reflecting the names common among
//! people born in southern Italy in those years. Every list is plain data in a fixed order, so the
//! generator's output depends only on its seed.

/// Surnames typical of Salento, most frequent first. Weight of rank r (1-based) = 1/(r + 4).
/// Includes particles (De Giorgi, Dell'Anna), apostrophes (D'Amico) and final accents (Calò), the
/// spellings that break naive comparison.
pub const SURNAMES: &[&str] = &[
    "Greco",
    "Rizzo",
    "De Giorgi",
    "Longo",
    "Quarta",
    "Perrone",
    "Carluccio",
    "Marra",
    "Leo",
    "Mele",
    "Martina",
    "Paladini",
    "Pellegrino",
    "Stefanelli",
    "Rollo",
    "Manni",
    "Errico",
    "Schito",
    "Giannuzzi",
    "Vergine",
    "Rizzello",
    "Calò",
    "Miglietta",
    "De Santis",
    "Dell'Anna",
    "De Pascalis",
    "Mazzotta",
    "Nuzzo",
    "Gabellone",
    "Conte",
    "Colella",
    "Caputo",
    "Colaci",
    "Renna",
    "Sergi",
    "Scardino",
    "Santoro",
    "D'Amico",
    "Russo",
    "Romano",
    "Martella",
    "Pati",
    "Rizzi",
    "Pasca",
    "Nicolì",
    "Pepe",
    "Mangia",
    "Tarantino",
    "Toma",
    "Zecca",
    "Maggio",
    "Bianco",
    "Coluccia",
    "Cazzato",
    "Vetrugno",
    "Ingrosso",
    "Fiore",
    "Lezzi",
    "Spedicato",
    "Tondo",
    "Tundo",
    "Ciardo",
    "Marti",
    "De Carlo",
    "Di Mauro",
    "Della Rocca",
    "Lo Russo",
    "Palumbo",
    "Negro",
    "Luceri",
    "Aprile",
    "Protopapa",
    "Petrachi",
    "Carrozzo",
    "Cortese",
    "Epifani",
    "Mariano",
    "Castrignanò",
    "Melcarne",
    "D'Elia",
    "D'Andrea",
    "De Matteis",
    "Del Coco",
    "Esposito",
    "Ferrari",
];

/// Zipf–Mandelbrot weight of the surname at `rank` (0-based): 1/(rank + 1 + 4).
pub fn surname_weight(rank: usize) -> f64 {
    1.0 / (rank as f64 + 5.0)
}

/// Surname particles (DOMAIN.md §5), upper-case, as separate words.
pub const PARTICLES: &[&str] = &[
    "DE", "DI", "DA", "DEL", "DELLA", "DELLE", "DEI", "DEGLI", "DAL", "DALLA", "LO", "LA", "LI",
];

/// Birth cohorts with their own given-name tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cohort {
    /// Born before 1960: the main users of care services.
    Elder,
    /// Born 1960–2006.
    Adult,
    /// Born 2007 or later.
    Young,
}

impl Cohort {
    pub fn of_year(year: u16) -> Cohort {
        match year {
            ..=1959 => Cohort::Elder,
            1960..=2006 => Cohort::Adult,
            _ => Cohort::Young,
        }
    }
}

/// (name, relative weight) for men born before 1960 in Salento.
pub const ELDER_MALE: &[(&str, u32)] = &[
    ("Giuseppe", 60),
    ("Antonio", 55),
    ("Giovanni", 40),
    ("Francesco", 35),
    ("Salvatore", 28),
    ("Luigi", 25),
    ("Cosimo", 22),
    ("Vincenzo", 20),
    ("Pasquale", 18),
    ("Rocco", 16),
    ("Domenico", 15),
    ("Vito", 14),
    ("Donato", 14),
    ("Mario", 14),
    ("Oronzo", 12),
    ("Angelo", 12),
    ("Michele", 12),
    ("Pietro", 12),
    ("Carmelo", 10),
    ("Raffaele", 10),
    ("Nicola", 10),
    ("Carlo", 8),
    ("Paolo", 8),
    ("Gaetano", 8),
    ("Fernando", 8),
    ("Giorgio", 6),
    ("Luciano", 6),
    ("Leonardo", 6),
    ("Rosario", 6),
    ("Armando", 5),
    ("Umberto", 5),
    ("Biagio", 5),
    ("Santo", 5),
    ("Vittorio", 5),
    ("Nicolò", 4),
    ("Ippazio", 4),
    ("Agostino", 4),
    ("Alfredo", 4),
    ("Emanuele", 4),
    ("Lorenzo", 4),
    ("Cosimo Damiano", 4),
    ("Giovanni Battista", 4),
    ("Giuseppe Antonio", 3),
    ("Sebastiano", 3),
    ("Ottavio", 3),
];

/// (name, relative weight) for women born before 1960 in Salento.
pub const ELDER_FEMALE: &[(&str, u32)] = &[
    ("Maria", 60),
    ("Anna", 45),
    ("Rosa", 30),
    ("Giuseppina", 25),
    ("Concetta", 25),
    ("Addolorata", 20),
    ("Antonia", 18),
    ("Carmela", 18),
    ("Lucia", 18),
    ("Immacolata", 16),
    ("Vincenza", 15),
    ("Teresa", 15),
    ("Anna Maria", 14),
    ("Angela", 14),
    ("Giovanna", 14),
    ("Maria Grazia", 12),
    ("Francesca", 12),
    ("Maria Rosaria", 10),
    ("Assunta", 10),
    ("Cosima", 10),
    ("Antonietta", 10),
    ("Caterina", 10),
    ("Filomena", 8),
    ("Rosaria", 8),
    ("Luigia", 8),
    ("Rita", 8),
    ("Margherita", 8),
    ("Oronza", 6),
    ("Elena", 6),
    ("Pasqualina", 6),
    ("Annunziata", 6),
    ("Luisa", 6),
    ("Donata", 5),
    ("Vita", 5),
    ("Raffaela", 5),
    ("Michela", 5),
    ("Agostina", 4),
    ("Carmelina", 4),
    ("Nicoletta", 4),
    ("Ada", 4),
    ("Annamaria", 4),
    ("Lucrezia", 3),
    ("Palma", 3),
    ("Italia", 3),
    ("Ippazia", 2),
];

/// (name, relative weight) for men born 1960–2006.
pub const ADULT_MALE: &[(&str, u32)] = &[
    ("Antonio", 30),
    ("Giuseppe", 25),
    ("Marco", 22),
    ("Andrea", 20),
    ("Luca", 20),
    ("Francesco", 20),
    ("Alessandro", 16),
    ("Roberto", 14),
    ("Stefano", 14),
    ("Massimo", 12),
    ("Davide", 12),
    ("Simone", 10),
    ("Daniele", 10),
    ("Fabio", 10),
    ("Matteo", 10),
    ("Paolo", 8),
    ("Salvatore", 8),
    ("Cosimo", 6),
    ("Gianluca", 6),
    ("Gian Luca", 3),
    ("Pier Paolo", 3),
    ("Vincenzo", 6),
    ("Domenico", 5),
    ("Giovanni", 8),
];

/// (name, relative weight) for women born 1960–2006.
pub const ADULT_FEMALE: &[(&str, u32)] = &[
    ("Francesca", 20),
    ("Anna", 16),
    ("Maria", 16),
    ("Valentina", 15),
    ("Chiara", 14),
    ("Sara", 12),
    ("Federica", 12),
    ("Alessandra", 12),
    ("Elisa", 10),
    ("Laura", 10),
    ("Giulia", 10),
    ("Paola", 9),
    ("Antonella", 9),
    ("Roberta", 8),
    ("Simona", 8),
    ("Daniela", 8),
    ("Mariagrazia", 4),
    ("Maria Grazia", 4),
    ("Anna Rita", 3),
    ("Tiziana", 6),
    ("Lucia", 6),
    ("Concetta", 3),
];

/// (name, relative weight) for boys born 2007 or later.
pub const YOUNG_MALE: &[(&str, u32)] = &[
    ("Leonardo", 20),
    ("Francesco", 18),
    ("Alessandro", 16),
    ("Lorenzo", 15),
    ("Mattia", 14),
    ("Gabriele", 12),
    ("Tommaso", 10),
    ("Riccardo", 10),
    ("Antonio", 10),
    ("Giuseppe", 8),
    ("Christian", 6),
    ("Samuele", 6),
];

/// (name, relative weight) for girls born 2007 or later.
pub const YOUNG_FEMALE: &[(&str, u32)] = &[
    ("Sofia", 20),
    ("Aurora", 16),
    ("Giulia", 15),
    ("Ginevra", 12),
    ("Alice", 12),
    ("Beatrice", 10),
    ("Emma", 10),
    ("Martina", 9),
    ("Chiara", 8),
    ("Greta", 6),
    ("Anna", 6),
    ("Maria Sole", 3),
];

/// Common nicknames, written in place of the registered name (DOMAIN.md §5): (formal, nicknames).
pub const HYPOCORISTICS: &[(&str, &[&str])] = &[
    ("Giuseppe", &["Peppino", "Pino", "Peppe"]),
    ("Giuseppina", &["Pina", "Peppina"]),
    ("Domenico", &["Mimmo"]),
    ("Giovanni", &["Gianni", "Nino"]),
    ("Salvatore", &["Totò"]),
    ("Antonio", &["Totò", "Tonino", "Uccio"]),
    ("Concetta", &["Tina", "Cettina"]),
    ("Agostina", &["Tina"]),
    ("Francesco", &["Franco", "Ciccio"]),
    ("Vincenzo", &["Enzo"]),
    ("Vincenza", &["Enza"]),
    ("Luigi", &["Gino"]),
    ("Immacolata", &["Imma", "Titti"]),
    ("Addolorata", &["Dora"]),
    ("Cosimo", &["Mino"]),
    ("Raffaele", &["Lello"]),
    ("Gaetano", &["Tano"]),
    ("Carmela", &["Melina"]),
    ("Pasquale", &["Lino"]),
    ("Donato", &["Dino"]),
    ("Annunziata", &["Nunzia"]),
    ("Giovanna", &["Gianna", "Vanna"]),
    ("Filomena", &["Mena"]),
    ("Carmelo", &["Melo"]),
    ("Rosa", &["Rosina"]),
];

/// Nicknames of a registered first name, if any.
pub fn nicknames(formal: &str) -> &'static [&'static str] {
    HYPOCORISTICS
        .iter()
        .find(|(f, _)| *f == formal)
        .map(|(_, n)| *n)
        .unwrap_or(&[])
}

/// Compound names that are also registered as one word: (spaced, joined).
pub const JOINABLE: &[(&str, &str)] = &[
    ("Maria Grazia", "Mariagrazia"),
    ("Anna Maria", "Annamaria"),
    ("Gian Luca", "Gianluca"),
    ("Pier Paolo", "Pierpaolo"),
    ("Maria Rosaria", "Mariarosaria"),
    ("Anna Rita", "Annarita"),
    ("Giovanni Battista", "Giambattista"),
    ("Maria Sole", "Mariasole"),
];

/// A country of birth with the names of people born there (as registered in Italy).
pub struct ForeignOrigin {
    /// Belfiore `Z` code of the country.
    pub code: &'static str,
    /// Share among the foreign-born (relative weight).
    pub weight: u32,
    pub surnames: &'static [&'static str],
    pub male: &'static [&'static str],
    pub female: &'static [&'static str],
    /// Irregular migrants without a CF get an STP code (non-EU) or ENI code (EU): (kind, share).
    pub no_cf: Option<(&'static str, f64)>,
    /// Surname written first in the country's own order (records often swap the fields).
    pub surname_first: bool,
    /// Emigrants' children who came back: the names are Italian (from the Salento tables).
    pub italian_names: bool,
    /// Earliest plausible birth year for people from this country in the population.
    pub born_from: u16,
}

pub const FOREIGN_ORIGINS: &[ForeignOrigin] = &[
    ForeignOrigin {
        code: "Z100",
        weight: 20,
        surnames: &[
            "Hoxha", "Shehu", "Dervishi", "Kola", "Leka", "Gjoka", "Marku", "Prifti", "Çela",
        ],
        male: &[
            "Arben", "Ilir", "Besnik", "Gëzim", "Fatmir", "Agron", "Artan", "Ermal",
        ],
        female: &[
            "Drita", "Mimoza", "Lindita", "Elona", "Ermira", "Valbona", "Blerina", "Lumturi",
        ],
        no_cf: Some(("STP", 0.15)),
        surname_first: false,
        italian_names: false,
        born_from: 1940,
    },
    ForeignOrigin {
        code: "Z129",
        weight: 20,
        surnames: &[
            "Popescu",
            "Ionescu",
            "Popa",
            "Rădulescu",
            "Stan",
            "Dumitru",
            "Munteanu",
            "Ștefănescu",
        ],
        male: &[
            "Ion",
            "Gheorghe",
            "Vasile",
            "Mihai",
            "Constantin",
            "Ștefan",
            "Cătălin",
        ],
        female: &[
            "Elena",
            "Ioana",
            "Mihaela",
            "Florentina",
            "Ana",
            "Mădălina",
            "Doina",
        ],
        no_cf: Some(("ENI", 0.15)),
        surname_first: false,
        italian_names: false,
        born_from: 1945,
    },
    ForeignOrigin {
        code: "Z330",
        weight: 15,
        surnames: &[
            "El Amrani",
            "Benali",
            "Bennani",
            "Alaoui",
            "El Idrissi",
            "Tazi",
            "Ouali",
        ],
        male: &[
            "Mohamed",
            "Ahmed",
            "Youssef",
            "Rachid",
            "Abdelkader",
            "Hassan",
        ],
        female: &["Fatima", "Khadija", "Aicha", "Naima", "Samira", "Latifa"],
        no_cf: Some(("STP", 0.3)),
        surname_first: false,
        italian_names: false,
        born_from: 1950,
    },
    ForeignOrigin {
        code: "Z343",
        weight: 8,
        surnames: &[
            "Diop", "Ndiaye", "Fall", "Sow", "Diallo", "Gueye", "Sarr", "Faye",
        ],
        male: &[
            "Mamadou",
            "Moussa",
            "Ousmane",
            "Cheikh",
            "Abdoulaye",
            "Ibrahima",
        ],
        female: &["Fatou", "Aminata", "Awa", "Mariama", "Khady"],
        no_cf: Some(("STP", 0.35)),
        surname_first: false,
        italian_names: false,
        born_from: 1955,
    },
    ForeignOrigin {
        code: "Z210",
        weight: 7,
        surnames: &["Chen", "Wang", "Zhang", "Li", "Liu", "Hu", "Zhou", "Lin"],
        male: &["Wei", "Jie", "Lei", "Ming", "Xiaoming", "Jianguo"],
        female: &["Hui", "Fang", "Li Na", "Xiu Ying", "Mei", "Xiaoli"],
        no_cf: Some(("STP", 0.1)),
        surname_first: true,
        italian_names: false,
        born_from: 1950,
    },
    ForeignOrigin {
        code: "Z138",
        weight: 12,
        surnames: &[
            "Kovalenko",
            "Shevchenko",
            "Bondarenko",
            "Tkachenko",
            "Kravchenko",
            "Melnyk",
            "Boyko",
        ],
        male: &["Mykola", "Oleksandr", "Volodymyr", "Serhiy", "Andriy"],
        female: &[
            "Olena", "Oksana", "Natalia", "Svitlana", "Halyna", "Iryna", "Tetiana",
        ],
        no_cf: Some(("STP", 0.1)),
        surname_first: false,
        italian_names: false,
        born_from: 1950,
    },
    ForeignOrigin {
        code: "Z249",
        weight: 3,
        surnames: &["Hossain", "Rahman", "Islam", "Ahmed", "Uddin"],
        male: &["Mohammed", "Abdul", "Rafiq", "Kamal"],
        female: &["Nasrin", "Fatema", "Rina"],
        no_cf: Some(("STP", 0.4)),
        surname_first: false,
        italian_names: false,
        born_from: 1960,
    },
    ForeignOrigin {
        code: "Z133",
        weight: 9,
        surnames: &[],
        male: &[],
        female: &[],
        no_cf: None,
        surname_first: false,
        italian_names: true,
        born_from: 1950,
    },
    ForeignOrigin {
        code: "Z112",
        weight: 6,
        surnames: &[],
        male: &[],
        female: &[],
        no_cf: None,
        surname_first: false,
        italian_names: true,
        born_from: 1950,
    },
];

/// Transliteration variants seen in Italian records (both directions are used).
pub const TRANSLITERATIONS: &[(&str, &str)] = &[
    ("Mohamed", "Mohammed"),
    ("Mohamed", "Muhammad"),
    ("Mohammed", "Muhammad"),
    ("Ahmed", "Ahmad"),
    ("Youssef", "Yusuf"),
    ("Aicha", "Aisha"),
    ("Hossain", "Hussain"),
    ("Natalia", "Nataliya"),
    ("Serhiy", "Sergiy"),
    ("Olena", "Elena"),
    ("Halyna", "Galina"),
    ("Oleksandr", "Aleksandr"),
    ("Mykola", "Nikolai"),
    ("Iryna", "Irina"),
    ("Tetiana", "Tatiana"),
    ("Mamadou", "Mamadu"),
    ("Cheikh", "Sheikh"),
    ("Xiaoming", "Xiao Ming"),
    ("Xiaoli", "Xiao Li"),
    ("Shevchenko", "Sevcenko"),
    ("Kovalenko", "Kowalenko"),
    ("Hoxha", "Hoxa"),
];

/// Letters that Italian offices often write without their diacritic (DOMAIN.md §5–6), including
/// the cedilla forms of Romanian ș ț typed by keyboards that lack the comma below.
pub const DIACRITIC_DROPS: &[(char, &str)] = &[
    ('ș', "s"),
    ('Ș', "S"),
    ('ț', "t"),
    ('Ț', "T"),
    ('ă', "a"),
    ('â', "a"),
    ('î', "i"),
    ('ë', "e"),
    ('ç', "c"),
    ('Ç', "C"),
];
pub const CEDILLA_FORMS: &[(char, char)] = &[('ș', 'ş'), ('Ș', 'Ş'), ('ț', 'ţ'), ('Ț', 'Ţ')];

/// Frazioni (villages without their own comune) people give as their birthplace:
/// (frazione, Belfiore code of its comune).
pub const FRAZIONI: &[(&str, &str)] = &[
    ("Frigole", "E506"),
    ("San Cataldo", "E506"),
    ("Villa Convento", "E506"),
    ("Noha", "D862"),
    ("Collemeto", "D862"),
    ("Santa Barbara", "D862"),
    ("San Foca", "F101"),
    ("Borgagne", "F101"),
    ("Acaia", "L776"),
    ("Vanze", "L776"),
    ("Strudà", "L776"),
    ("Leuca", "C336"),
    ("Giuliano di Lecce", "C336"),
    ("Salignano", "C336"),
    ("Lucugnano", "L419"),
    ("Depressa", "L419"),
    ("Tutino", "L419"),
    ("Vaste", "G751"),
    ("Marittima", "D305"),
    ("Cocumola", "F221"),
    ("Merine", "E629"),
    ("Castromediano", "C377"),
    ("Giorgilorio", "L011"),
    ("Vitigliano", "I172"),
    ("Cerfignano", "I172"),
    ("Ruggiano", "H729"),
    ("Montesardo", "A184"),
    ("Torrepaduli", "H632"),
    ("Magliano", "B792"),
    ("Dragoni", "E538"),
    ("Casamassella", "L485"),
    ("Gemini", "L484"),
    ("Castiglione d'Otranto", "A281"),
    ("Santa Maria al Bagno", "F842"),
];

/// Comuni merged into a new one after people were born there: (old code, code of the merged comune).
/// Old people write the comune that exists today.
pub const MERGED_INTO: &[(&str, &str)] = &[("H047", "M428"), ("A042", "M428")];

/// Comuni of the territories ceded in 1947 whose Italian code must be kept (L. 54/1989).
pub const CEDED: &[&str] = &["G778", "D620", "M149"];

/// Countries whose everyday name differs from the table's: (Z code, name people write).
pub const COUNTRY_COMMON_NAMES: &[(&str, &str)] = &[("Z210", "Cina"), ("Z154", "Russia")];
