//! The research report: an [`Evaluation`] rendered for people, as Markdown (`report.md`), as one
//! self-contained HTML page (`report.html`) and as SVG plots beside them.
//!
//! The report is built once as a small document (headings, paragraphs, tables, figures) by pure
//! functions over the evaluation, and that document is rendered twice: to Markdown, which embeds the
//! plots as `![…](file.svg)`, and to HTML, which inlines the same SVG so that the page works alone,
//! offline. Only [`write`] touches the file system.
//!
//! What callers may rely on:
//! - **Deterministic**: the same evaluation gives byte-identical files. Nothing depends on the clock,
//!   the machine or hash order; rows keep the evaluation's order, and plot series follow one
//!   profile order (the qualities' first, then any profile seen only in the attacks or scaling), which
//!   also gives each profile the same colour in every plot.
//! - **Self-contained HTML**: no script, no external resource (no `src`, no `href`, no URL at all);
//!   every text taken from the evaluation is escaped, in the HTML and in the SVG alike.
//! - **No system fonts**: plotters is built without a font feature; the SVG backend writes text as
//!   `<text>` elements with a generic `sans-serif` family, which the viewer renders.
//! - **Numbers**: ratios (precision, recall, F1, completeness, reduction, overlap) with 3 decimals,
//!   shares re-identified as percentages with 1 decimal, seconds with 3 decimals, memory in MB
//!   (10^6 bytes) with 1 decimal; a value that is not a finite number reads `n/a`.
//! - **Bounded**: an evaluation larger than the `MAX_*` limits below is refused by [`write`] with an
//!   error that names the limit, rather than producing an unreadable report.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::evaluation::{AttackOutcome, Evaluation, ProfileQuality, ThresholdPoint};

/// Most profiles a report takes: beyond this the tables and plots stop being readable.
pub const MAX_PROFILES: usize = 32;
/// Most points of one profile's precision/recall curve.
pub const MAX_CURVE_POINTS: usize = 2_000;
/// Most attack outcomes.
pub const MAX_ATTACKS: usize = 2_000;
/// Most scaling points.
pub const MAX_SCALING_POINTS: usize = 2_000;
/// Longest text taken from the evaluation (a profile, attack, field or scenario name, the command).
pub const MAX_TEXT_CHARS: usize = 4_096;

/// File name of the Markdown report inside the report directory.
pub const MARKDOWN_FILE: &str = "report.md";
/// File name of the HTML report inside the report directory.
pub const HTML_FILE: &str = "report.html";
/// Plot of precision and recall across the match-probability threshold.
pub const PRECISION_RECALL_FILE: &str = "precision_recall.svg";
/// Plot of linkage quality against re-identification.
pub const QUALITY_PRIVACY_FILE: &str = "quality_privacy.svg";
/// Plot of linking time against records.
pub const SCALING_FILE: &str = "scaling.svg";

/// The files [`write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub markdown: PathBuf,
    pub html: PathBuf,
    /// The SVG plots, in the order the report shows them.
    pub plots: Vec<PathBuf>,
}

/// One rendered plot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plot {
    /// File name (no directory), one of the `*_FILE` constants.
    pub file_name: String,
    /// One line saying what the plot shows.
    pub caption: String,
    /// The standalone SVG document.
    pub svg: String,
}

/// Writes `report.md`, `report.html` and the SVG plots into `dir`, creating it if needed.
///
/// A plot with nothing to show (no curve, no attacked profile with a quality, fewer than 2 scaling
/// points) is left out; a file of that name left there by an earlier report is removed, so that the
/// directory holds exactly one consistent report. Other files in `dir` are left alone.
pub fn write(ev: &Evaluation, dir: &Path) -> anyhow::Result<Written> {
    check_bounds(ev)?;
    let plots = plots(ev)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating report directory {}", dir.display()))?;
    let mut plot_paths = Vec::with_capacity(plots.len());
    for plot in &plots {
        let path = dir.join(&plot.file_name);
        std::fs::write(&path, &plot.svg).with_context(|| format!("writing {}", path.display()))?;
        plot_paths.push(path);
    }
    for stale in [PRECISION_RECALL_FILE, QUALITY_PRIVACY_FILE, SCALING_FILE] {
        if plots.iter().all(|p| p.file_name != stale) {
            let path = dir.join(stale);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing stale plot {}", path.display())),
            }
        }
    }
    let figures: Vec<(String, String)> = plots.iter().map(|p| (p.file_name.clone(), p.caption.clone())).collect();
    let markdown_path = dir.join(MARKDOWN_FILE);
    std::fs::write(&markdown_path, markdown(ev, &figures))
        .with_context(|| format!("writing {}", markdown_path.display()))?;
    let html_path = dir.join(HTML_FILE);
    std::fs::write(&html_path, html(ev, &plots)).with_context(|| format!("writing {}", html_path.display()))?;
    Ok(Written { markdown: markdown_path, html: html_path, plots: plot_paths })
}

/// Refuses an evaluation past the `MAX_*` limits, naming the limit crossed.
pub fn check_bounds(ev: &Evaluation) -> anyhow::Result<()> {
    let profiles = profile_order(ev).len();
    anyhow::ensure!(
        profiles <= MAX_PROFILES,
        "the report takes at most {MAX_PROFILES} profiles, the evaluation has {profiles}"
    );
    for q in &ev.qualities {
        anyhow::ensure!(
            q.curve.len() <= MAX_CURVE_POINTS,
            "the report takes at most {MAX_CURVE_POINTS} curve points per profile, profile {:?} has {}",
            truncate(&q.profile, 64),
            q.curve.len()
        );
    }
    anyhow::ensure!(
        ev.attacks.len() <= MAX_ATTACKS,
        "the report takes at most {MAX_ATTACKS} attack outcomes, the evaluation has {}",
        ev.attacks.len()
    );
    anyhow::ensure!(
        ev.scaling.len() <= MAX_SCALING_POINTS,
        "the report takes at most {MAX_SCALING_POINTS} scaling points, the evaluation has {}",
        ev.scaling.len()
    );
    let texts = [&ev.scenario, &ev.command]
        .into_iter()
        .chain(ev.qualities.iter().flat_map(|q| [&q.profile, &q.schema_fingerprint]))
        .chain(ev.attacks.iter().flat_map(|a| [&a.profile, &a.attack, &a.encoding, &a.field]))
        .chain(ev.scaling.iter().map(|s| &s.profile));
    for text in texts {
        let chars = text.chars().count();
        anyhow::ensure!(
            chars <= MAX_TEXT_CHARS,
            "the report takes texts of at most {MAX_TEXT_CHARS} characters, one has {chars}: {:?}…",
            truncate(text, 64)
        );
    }
    Ok(())
}

/// The Markdown report. `plot_files` are `(file name, one-line caption)` pairs, embedded in that order
/// as images relative to the report (so the SVG files belong beside it).
pub fn markdown(ev: &Evaluation, plot_files: &[(String, String)]) -> String {
    render_markdown(&document(ev, plot_files))
}

/// The HTML report: the same content as [`markdown`], with each plot's SVG inlined and a small
/// embedded stylesheet; no script and no external resource.
pub fn html(ev: &Evaluation, plots: &[Plot]) -> String {
    let figures: Vec<(String, String)> = plots.iter().map(|p| (p.file_name.clone(), p.caption.clone())).collect();
    render_html(&title(ev), &document(ev, &figures), plots)
}

/// The plots that have something to show, in report order: precision/recall across the threshold,
/// quality against privacy, runtime scaling.
pub fn plots(ev: &Evaluation) -> anyhow::Result<Vec<Plot>> {
    let order = profile_order(ev);
    let mut plots = Vec::new();
    if let Some(svg) = precision_recall_svg(ev, &order)? {
        plots.push(Plot {
            file_name: PRECISION_RECALL_FILE.into(),
            caption: "Precision (solid) and recall (dashed) as the match-probability threshold rises, one colour \
                      per profile."
                .into(),
            svg,
        });
    }
    if let Some(svg) = quality_privacy_svg(ev, &order)? {
        plots.push(Plot {
            file_name: QUALITY_PRIVACY_FILE.into(),
            caption: "Linkage quality (F1 of all pairs) against the share of records the strongest attack \
                      re-identified, one point per attacked profile: up and to the left is better."
                .into(),
            svg,
        });
    }
    if let Some((svg, log_x, log_y)) = scaling_svg(ev, &order)? {
        let scale = match (log_x, log_y) {
            (true, true) => " (both axes logarithmic)",
            (true, false) => " (records on a logarithmic axis)",
            (false, true) => " (seconds on a logarithmic axis)",
            (false, false) => "",
        };
        plots.push(Plot {
            file_name: SCALING_FILE.into(),
            caption: format!(
                "Seconds to block, score and cluster against the number of records linked, one line per profile{scale}."
            ),
            svg,
        });
    }
    Ok(plots)
}

// ---------------------------------------------------------------------------------------------
// The document: what the report says, independent of the format.

enum Block {
    Heading(u8, String),
    Paragraph(Vec<Span>),
    List(Vec<Vec<Span>>),
    Code(String),
    Table(Table),
    Figure { file: String, caption: String },
}

enum Span {
    Text(String),
    Code(String),
    Strong(String),
}

struct Table {
    head: Vec<&'static str>,
    /// Right-aligned (numeric) columns.
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

fn text(s: impl Into<String>) -> Span {
    Span::Text(s.into())
}

fn title(ev: &Evaluation) -> String {
    if ev.scenario.is_empty() {
        "Ponte research report".into()
    } else {
        format!("Ponte research report: {}", ev.scenario)
    }
}

fn document(ev: &Evaluation, figures: &[(String, String)]) -> Vec<Block> {
    let mut doc = vec![Block::Heading(1, title(ev))];

    doc.push(Block::Heading(2, "How to reproduce".into()));
    if ev.command.trim().is_empty() {
        doc.push(Block::Paragraph(vec![text("The command line was not recorded.")]));
    } else {
        doc.push(Block::Paragraph(vec![text("Run, from the workspace root:")]));
        doc.push(Block::Code(ev.command.clone()));
    }
    let mut facts = vec![
        vec![Span::Strong("Scenario:".into()), text(" "), Span::Code(ev.scenario.clone())],
        vec![Span::Strong("Seed:".into()), text(format!(" {}", ev.seed))],
        vec![Span::Strong("Persons:".into()), text(format!(" {}", ev.persons))],
    ];
    let schemas: Vec<&ProfileQuality> = ev.qualities.iter().filter(|q| !q.schema_fingerprint.is_empty()).collect();
    if !schemas.is_empty() {
        let mut spans = vec![Span::Strong("Linkage schemas:".into())];
        for (i, q) in schemas.iter().enumerate() {
            spans.push(text(if i == 0 { " " } else { "; " }));
            spans.push(text(format!("{} ", q.profile)));
            spans.push(Span::Code(q.schema_fingerprint.clone()));
        }
        facts.push(spans);
    }
    doc.push(Block::List(facts));

    doc.push(Block::Heading(2, "How to read this".into()));
    doc.push(Block::Paragraph(vec![text(
        "A pair of records is linked when its match probability is at or above the threshold. Precision is the \
         share of linked pairs that are truly the same person, recall the share of true pairs that were linked, \
         and F1 their harmonic mean. Cross-entity pairs join records held by different entities; within-entity \
         pairs are duplicates inside one entity. Pair completeness is the share of true pairs that blocking kept \
         as candidates (a ceiling on recall), and the reduction ratio the share of all pairs that blocking \
         removed. An attack re-identifies a value when it assigns the right plaintext to an encoding; a record \
         counts as re-identified when the attack assigned its value (for a record-level encoding, at least one \
         identifying value) correctly. Overlap is the share of the encoded population that is also in the \
         attacker's reference population. A good profile keeps F1 high while few records are re-identified. \
         Ratios are given with 3 decimals, shares re-identified as percentages with 1 decimal, times in \
         seconds and memory in MB (resident, after the run).",
    )]));

    doc.push(Block::Heading(2, "Linkage quality".into()));
    if ev.qualities.is_empty() {
        doc.push(Block::Paragraph(vec![text("Not measured in this run.")]));
    } else {
        doc.push(Block::Table(quality_table(&ev.qualities)));
    }

    doc.push(Block::Heading(2, "Re-identification attacks".into()));
    if ev.attacks.is_empty() {
        doc.push(Block::Paragraph(vec![text("Not measured in this run.")]));
    } else {
        doc.push(Block::Table(attack_table(&ev.attacks)));
        doc.push(Block::Heading(3, "Strongest attack per profile".into()));
        doc.push(Block::Paragraph(vec![text(
            "For each profile, the attack and encoding that re-identified the largest share of records, \
             beside that profile's F1 of all pairs.",
        )]));
        doc.push(Block::Table(strongest_table(ev)));
    }

    doc.push(Block::Heading(2, "Runtime scaling".into()));
    if ev.scaling.is_empty() {
        doc.push(Block::Paragraph(vec![text("Not measured in this run.")]));
    } else {
        doc.push(Block::Table(scaling_table(ev)));
        if ev.scaling.len() < 2 {
            doc.push(Block::Paragraph(vec![text("One point only: no scaling plot.")]));
        }
    }

    doc.push(Block::Heading(2, "Plots".into()));
    if figures.is_empty() {
        doc.push(Block::Paragraph(vec![text("No plots: nothing in this run to plot.")]));
    }
    for (file, caption) in figures {
        doc.push(Block::Figure { file: file.clone(), caption: caption.clone() });
    }
    doc
}

fn quality_table(qualities: &[ProfileQuality]) -> Table {
    let head = vec![
        "Profile",
        "Records",
        "Cross P",
        "Cross R",
        "Cross F1",
        "Within P",
        "Within R",
        "Within F1",
        "All F1",
        "Pair completeness",
        "Reduction ratio",
        "Encode s",
        "Link s",
        "Memory MB",
    ];
    let mut numeric = vec![true; head.len()];
    numeric[0] = false;
    let rows = qualities
        .iter()
        .map(|q| {
            vec![
                q.profile.clone(),
                q.records.to_string(),
                ratio(q.cross.precision),
                ratio(q.cross.recall),
                ratio(q.cross.f1),
                ratio(q.within.precision),
                ratio(q.within.recall),
                ratio(q.within.f1),
                ratio(q.all.f1),
                ratio(q.pair_completeness),
                ratio(q.reduction_ratio),
                secs(q.encode_secs),
                secs(q.link_secs),
                megabytes(q.rss_bytes),
            ]
        })
        .collect();
    Table { head, numeric, rows }
}

fn attack_table(attacks: &[AttackOutcome]) -> Table {
    let head =
        vec!["Profile", "Attack", "Encoding", "Field", "Overlap", "Values re-identified", "Records re-identified"];
    let numeric = vec![false, false, false, false, true, true, true];
    let rows = attacks
        .iter()
        .map(|a| {
            vec![
                a.profile.clone(),
                a.attack.clone(),
                a.encoding.clone(),
                field_name(a),
                ratio(a.overlap),
                share_of(a.share_values, a.values_reidentified, a.values_targeted),
                share_of(a.share_records, a.records_reidentified, a.records),
            ]
        })
        .collect();
    Table { head, numeric, rows }
}

fn strongest_table(ev: &Evaluation) -> Table {
    let head = vec!["Profile", "Strongest attack", "Records re-identified", "All F1"];
    let numeric = vec![false, false, true, true];
    let rows = strongest_attacks(ev)
        .into_iter()
        .map(|(profile, a)| {
            let attack = match a {
                Some(a) => {
                    let field = if a.field.is_empty() { String::new() } else { format!(", {}", a.field) };
                    format!("{} ({}{field})", a.attack, a.encoding)
                }
                None => "n/a".into(),
            };
            let f1 =
                ev.qualities.iter().find(|q| q.profile == profile).map_or_else(|| "n/a".into(), |q| ratio(q.all.f1));
            let share = a.map_or_else(|| "n/a".into(), |a| percent(a.share_records));
            vec![profile.to_string(), attack, share, f1]
        })
        .collect();
    Table { head, numeric, rows }
}

fn scaling_table(ev: &Evaluation) -> Table {
    let head = vec!["Profile", "Records", "Encode s", "Link s"];
    let numeric = vec![false, true, true, true];
    let rows = scaling_series(ev)
        .into_iter()
        .flat_map(|(_, points)| points)
        .map(|s| vec![s.profile.clone(), s.records.to_string(), secs(s.encode_secs), secs(s.link_secs)])
        .collect();
    Table { head, numeric, rows }
}

fn field_name(a: &AttackOutcome) -> String {
    if a.field.is_empty() { "(whole record)".into() } else { a.field.clone() }
}

/// Every profile named anywhere in the evaluation, once, in a stable order: the qualities' order,
/// then profiles seen only in the attacks, then only in the scaling.
fn profile_order(ev: &Evaluation) -> Vec<&str> {
    let mut order: Vec<&str> = Vec::new();
    let names = ev
        .qualities
        .iter()
        .map(|q| q.profile.as_str())
        .chain(ev.attacks.iter().map(|a| a.profile.as_str()))
        .chain(ev.scaling.iter().map(|s| s.profile.as_str()));
    for name in names {
        if !order.contains(&name) {
            order.push(name);
        }
    }
    order
}

/// For each attacked profile (in profile order), the outcome that re-identified the largest share of
/// records (the first one on a tie); `None` when no outcome of that profile has a finite share.
fn strongest_attacks(ev: &Evaluation) -> Vec<(&str, Option<&AttackOutcome>)> {
    profile_order(ev)
        .into_iter()
        .filter(|p| ev.attacks.iter().any(|a| a.profile == *p))
        .map(|p| {
            let strongest = ev.attacks.iter().filter(|a| a.profile == p && a.share_records.is_finite()).fold(
                None::<&AttackOutcome>,
                |best, a| match best {
                    Some(b) if b.share_records >= a.share_records => Some(b),
                    _ => Some(a),
                },
            );
            (p, strongest)
        })
        .collect()
}

/// Scaling points grouped by profile (in profile order), each group sorted by records.
fn scaling_series(ev: &Evaluation) -> Vec<(&str, Vec<&crate::evaluation::ScalingPoint>)> {
    profile_order(ev)
        .into_iter()
        .filter_map(|p| {
            let mut points: Vec<_> = ev.scaling.iter().filter(|s| s.profile == p).collect();
            points.sort_by_key(|s| s.records);
            (!points.is_empty()).then_some((p, points))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Numbers.

fn finite(x: f64) -> Option<f64> {
    // Normalise -0.0 so that it never prints as "-0.000".
    x.is_finite().then_some(if x == 0.0 { 0.0 } else { x })
}

/// A ratio, 3 decimals.
fn ratio(x: f64) -> String {
    finite(x).map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
}

/// A share as a percentage, 1 decimal.
fn percent(share: f64) -> String {
    finite(share * 100.0).map_or_else(|| "n/a".into(), |p| format!("{p:.1}%"))
}

/// A share as a percentage with the counts it comes from.
fn share_of(share: f64, part: u64, whole: u64) -> String {
    format!("{} ({part} of {whole})", percent(share))
}

/// Seconds, 3 decimals.
fn secs(x: f64) -> String {
    finite(x).map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
}

/// Bytes as MB (10^6 bytes), 1 decimal; 0 means unknown.
fn megabytes(bytes: u64) -> String {
    if bytes == 0 { "n/a".into() } else { format!("{:.1}", bytes as f64 / 1e6) }
}

// ---------------------------------------------------------------------------------------------
// Markdown.

fn render_markdown(doc: &[Block]) -> String {
    let mut out = String::new();
    for block in doc {
        match block {
            Block::Heading(level, s) => {
                let _ = writeln!(out, "{} {}\n", "#".repeat(usize::from(*level)), md_escape(s));
            }
            Block::Paragraph(spans) => {
                let _ = writeln!(out, "{}\n", md_spans(spans));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {}", md_spans(item));
                }
                out.push('\n');
            }
            Block::Code(code) => {
                let fence = "`".repeat(longest_run(code, '`').max(2) + 1);
                let _ = writeln!(out, "{fence}sh\n{}\n{fence}\n", code.trim_end_matches('\n'));
            }
            Block::Table(table) => {
                let _ =
                    writeln!(out, "| {} |", table.head.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | "));
                let rule: Vec<&str> = table.numeric.iter().map(|&n| if n { "---:" } else { "---" }).collect();
                let _ = writeln!(out, "| {} |", rule.join(" | "));
                for row in &table.rows {
                    let _ = writeln!(out, "| {} |", row.iter().map(|c| md_escape(c)).collect::<Vec<_>>().join(" | "));
                }
                out.push('\n');
            }
            Block::Figure { file, caption } => {
                let _ = writeln!(out, "![{}]({})\n", md_escape(caption), md_link(file));
                let _ = writeln!(out, "*{}*\n", md_escape(caption));
            }
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn md_spans(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|span| match span {
            Span::Text(s) => md_escape(s),
            Span::Strong(s) => format!("**{}**", md_escape(s)),
            Span::Code(s) => md_code(s),
        })
        .collect()
}

/// Escapes the characters that Markdown (CommonMark with GFM tables) would read as markup, so that
/// a name always renders as itself and never breaks a table or turns into HTML.
fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An inline code span that holds any text: the fence is longer than any backtick run inside.
fn md_code(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.is_empty() {
        return "(none)".into();
    }
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A link destination: in angle brackets when it has characters a bare destination may not.
fn md_link(file: &str) -> String {
    if file.chars().any(|c| c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>')) {
        format!("<{}>", file.replace('<', "%3C").replace('>', "%3E"))
    } else {
        file.to_string()
    }
}

fn longest_run(s: &str, c: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for ch in s.chars() {
        run = if ch == c { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

// ---------------------------------------------------------------------------------------------
// HTML.

const STYLESHEET: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.5}
h1{font-size:1.7rem;border-bottom:2px solid #0072b2;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2rem}
h3{font-size:1.1rem}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#f3f4f6;border-radius:4px}
code{padding:.1em .3em}
pre{padding:.7rem 1rem;overflow-x:auto}
pre code{padding:0;background:none}
.table{overflow-x:auto}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #d0d4da;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:1.5rem 0}
figure svg{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-style:italic;color:#444;margin-top:.3rem}
";

fn render_html(title: &str, doc: &[Block], plots: &[Plot]) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", html_escape(title));
    let _ = write!(out, "<style>\n{STYLESHEET}</style>\n</head>\n<body>\n");
    for block in doc {
        match block {
            Block::Heading(level, s) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", html_escape(s));
            }
            Block::Paragraph(spans) => {
                let _ = writeln!(out, "<p>{}</p>", html_spans(spans));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", html_spans(item));
                }
                out.push_str("</ul>\n");
            }
            Block::Code(code) => {
                let _ = writeln!(out, "<pre><code>{}</code></pre>", html_escape(code.trim_end_matches('\n')));
            }
            Block::Table(table) => {
                let class = |numeric: bool| if numeric { " class=\"num\"" } else { "" };
                out.push_str("<div class=\"table\"><table>\n<thead><tr>");
                for (h, &n) in table.head.iter().zip(&table.numeric) {
                    let _ = write!(out, "<th{}>{}</th>", class(n), html_escape(h));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for row in &table.rows {
                    out.push_str("<tr>");
                    for (cell, &n) in row.iter().zip(&table.numeric) {
                        let _ = write!(out, "<td{}>{}</td>", class(n), html_escape(cell));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table></div>\n");
            }
            Block::Figure { file, caption } => {
                out.push_str("<figure>\n");
                match plots.iter().find(|p| &p.file_name == file) {
                    Some(plot) => out.push_str(&inline_svg(&plot.svg, caption)),
                    None => {
                        let _ = writeln!(out, "<p>(plot {} not available)</p>", html_escape(file));
                    }
                }
                let _ = writeln!(out, "<figcaption>{}</figcaption>\n</figure>", html_escape(caption));
            }
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// The SVG as an element of the HTML page: without the XML namespace declaration (HTML puts `<svg>`
/// in the SVG namespace itself, and so the page holds no URL at all), labelled for screen readers.
fn inline_svg(svg: &str, caption: &str) -> String {
    let body = svg.trim_start_matches(|c: char| c.is_whitespace());
    let body = body.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    let body = body.replacen("<svg ", &format!("<svg role=\"img\" aria-label=\"{}\" ", html_escape(caption)), 1);
    let mut out = body;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn html_spans(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|span| match span {
            Span::Text(s) => html_escape(s),
            Span::Strong(s) => format!("<strong>{}</strong>", html_escape(s)),
            Span::Code(s) if s.is_empty() => "(none)".into(),
            Span::Code(s) => format!("<code>{}</code>", html_escape(s)),
        })
        .collect()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Plots.

const WIDTH: u32 = 900;
const HEIGHT: u32 = 520;
/// Width of the legend panel on the right of each plot (the legend never covers data).
const LEGEND_WIDTH: u32 = 230;
const FONT: &str = "sans-serif";
/// Longest profile name shown in a plot (tables show it whole).
const PLOT_LABEL_CHARS: usize = 26;

/// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), yellow left out
/// for contrast on white. Profiles past the seventh reuse them in order.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
];

fn colour(order: &[&str], profile: &str) -> RGBColor {
    let index = order.iter().position(|p| *p == profile).unwrap_or(0);
    PALETTE[index % PALETTE.len()]
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// The points of one line, in data coordinates.
type Line = Vec<(f64, f64)>;

/// Renders one SVG document with plotters into a string.
fn render_svg(draw: impl FnOnce(&Area<'_>) -> anyhow::Result<()>) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

enum Stroke {
    Solid,
    Dashed,
    Marker,
}

struct LegendEntry {
    label: String,
    colour: RGBColor,
    stroke: Stroke,
}

/// Draws the legend panel: sections of entries under a bold heading each.
fn draw_legend(area: &Area<'_>, sections: &[(&str, Vec<LegendEntry>)]) -> anyhow::Result<()> {
    let left = 10;
    let mut y = 36;
    let label_style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let heading_style =
        TextStyle::from((FONT, 14).into_font().style(FontStyle::Bold)).pos(Pos::new(HPos::Left, VPos::Center));
    for (heading, entries) in sections {
        y += 24;
        area.draw(&Text::new(heading.to_string(), (left, y), heading_style.clone())).map_err(plot_error)?;
        for entry in entries {
            y += 24;
            let style = entry.colour.stroke_width(2);
            match entry.stroke {
                Stroke::Solid => area.draw(&PathElement::new(vec![(left, y), (left + 28, y)], style)),
                Stroke::Dashed => area.draw(&DashedPathElement::new(vec![(left, y), (left + 28, y)], 6, 4, style)),
                Stroke::Marker => area.draw(&Circle::new((left + 14, y), 5, entry.colour.filled())),
            }
            .map_err(plot_error)?;
            area.draw(&Text::new(entry.label.clone(), (left + 36, y), label_style.clone())).map_err(plot_error)?;
        }
        y += 12;
    }
    Ok(())
}

/// A range over `values` with a little room either side, inside `[floor, ceil]`; `fallback` when
/// there are no values.
fn fitted_range(values: impl Iterator<Item = f64>, floor: f64, ceil: f64, fallback: Range<f64>) -> Range<f64> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return fallback;
    }
    let pad = (hi - lo).max(0.1) * 0.08;
    let (lo, hi) = ((lo - pad).max(floor), (hi + pad).min(ceil));
    if lo < hi { lo..hi } else { fallback }
}

fn curve_points(curve: &[ThresholdPoint], value: impl Fn(&ThresholdPoint) -> f64) -> Line {
    let mut points: Line =
        curve.iter().map(|p| (p.threshold, value(p))).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Plot 1: precision and recall across the threshold, one solid/dashed line pair per profile.
fn precision_recall_svg(ev: &Evaluation, order: &[&str]) -> anyhow::Result<Option<String>> {
    let series: Vec<(&ProfileQuality, Line, Line)> = ev
        .qualities
        .iter()
        .map(|q| (q, curve_points(&q.curve, |p| p.precision), curve_points(&q.curve, |p| p.recall)))
        .filter(|(_, p, r)| !p.is_empty() || !r.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let xs = series.iter().flat_map(|(_, p, r)| p.iter().chain(r).map(|(x, _)| *x));
    let x_range = fitted_range(xs, f64::NEG_INFINITY, f64::INFINITY, 0.0..1.0);
    let ys = series.iter().flat_map(|(_, p, r)| p.iter().chain(r).map(|(_, y)| *y));
    let y_range = {
        let fit = fitted_range(ys, f64::NEG_INFINITY, f64::INFINITY, 0.0..1.0);
        fit.start.min(0.0)..fit.end.max(1.0)
    };
    let svg = render_svg(|root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption("Precision and recall across the match-probability threshold", (FONT, 20))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("match-probability threshold")
            .y_desc("precision, recall")
            .x_label_formatter(&|v| format!("{v:.2}"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(plot_error)?;
        for (q, precision, recall) in &series {
            let c = colour(order, &q.profile);
            chart.draw_series(LineSeries::new(precision.iter().copied(), c.stroke_width(2))).map_err(plot_error)?;
            chart
                .draw_series(DashedLineSeries::new(recall.iter().copied(), 6, 4, c.stroke_width(2)))
                .map_err(plot_error)?;
        }
        let profiles = series
            .iter()
            .map(|(q, _, _)| LegendEntry {
                label: truncate(&q.profile, PLOT_LABEL_CHARS),
                colour: colour(order, &q.profile),
                stroke: Stroke::Solid,
            })
            .collect();
        let lines = vec![
            LegendEntry { label: "precision".into(), colour: BLACK, stroke: Stroke::Solid },
            LegendEntry { label: "recall".into(), colour: BLACK, stroke: Stroke::Dashed },
        ];
        draw_legend(&legend_area, &[("Profiles", profiles), ("Lines", lines)])
    })?;
    Ok(Some(svg))
}

/// Plot 2: one labelled point per profile that has both a quality and an attack outcome.
fn quality_privacy_svg(ev: &Evaluation, order: &[&str]) -> anyhow::Result<Option<String>> {
    let points: Vec<(&str, f64, f64)> = strongest_attacks(ev)
        .into_iter()
        .filter_map(|(profile, attack)| {
            let attack = attack?;
            let quality = ev.qualities.iter().find(|q| q.profile == profile)?;
            quality.all.f1.is_finite().then_some((profile, attack.share_records, quality.all.f1))
        })
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let x_range = 0.0..fitted_range(points.iter().map(|p| p.1), 0.0, 1.0, 0.0..1.0).end;
    let y_range = fitted_range(points.iter().map(|p| p.2), 0.0, 1.0, 0.0..1.0);
    let svg = render_svg(|root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption("Linkage quality against re-identification", (FONT, 20))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(64)
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("records re-identified by the strongest attack (share)")
            .y_desc("F1 (all pairs)")
            .x_label_formatter(&|v| format!("{v:.2}"))
            .y_label_formatter(&|v| format!("{v:.3}"))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(plot_error)?;
        let label_style = TextStyle::from((FONT, 13).into_font());
        chart
            .draw_series(points.iter().map(|&(profile, x, y)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 6, colour(order, profile).filled())
                    + Text::new(truncate(profile, PLOT_LABEL_CHARS), (9, -16), label_style.clone())
            }))
            .map_err(plot_error)?;
        let entries: Vec<LegendEntry> = points
            .iter()
            .map(|&(profile, _, _)| LegendEntry {
                label: truncate(profile, PLOT_LABEL_CHARS),
                colour: colour(order, profile),
                stroke: Stroke::Marker,
            })
            .collect();
        draw_legend(&legend_area, &[("Profiles", entries)])
    })?;
    Ok(Some(svg))
}

/// Plot 3: link seconds against records, one line per profile; `None` with fewer than 2 points.
/// An axis is logarithmic when its values are all positive and span at least a factor of 10.
/// Returns the SVG and whether the x and y axes are logarithmic.
fn scaling_svg(ev: &Evaluation, order: &[&str]) -> anyhow::Result<Option<(String, bool, bool)>> {
    let series: Vec<(&str, Line)> = scaling_series(ev)
        .into_iter()
        .map(|(p, points)| {
            let line = points.iter().map(|s| (s.records as f64, s.link_secs)).filter(|(_, y)| y.is_finite()).collect();
            (p, line)
        })
        .collect();
    if series.iter().map(|(_, line)| line.len()).sum::<usize>() < 2 {
        return Ok(None);
    }
    let xs: Vec<f64> = series.iter().flat_map(|(_, l)| l.iter().map(|p| p.0)).collect();
    let ys: Vec<f64> = series.iter().flat_map(|(_, l)| l.iter().map(|p| p.1)).collect();
    let wide = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        (lo > 0.0 && hi / lo >= 10.0).then_some(lo..hi)
    };
    let linear = |v: &[f64]| {
        let hi = v.iter().fold(0.0f64, |hi, &x| hi.max(x));
        0.0..if hi > 0.0 { hi * 1.08 } else { 1.0 }
    };
    let log = |r: Range<f64>| (r.start / 1.25)..(r.end * 1.25);
    let (log_x, log_y) = (wide(&xs), wide(&ys));
    let (is_log_x, is_log_y) = (log_x.is_some(), log_y.is_some());
    let svg = match (log_x, log_y) {
        (Some(x), Some(y)) => scaling_chart(&series, order, log(x).log_scale(), log(y).log_scale())?,
        (Some(x), None) => scaling_chart(&series, order, log(x).log_scale(), linear(&ys))?,
        (None, Some(y)) => scaling_chart(&series, order, linear(&xs), log(y).log_scale())?,
        (None, None) => scaling_chart(&series, order, linear(&xs), linear(&ys))?,
    };
    Ok(Some((svg, is_log_x, is_log_y)))
}

fn scaling_chart<X, Y>(series: &[(&str, Line)], order: &[&str], x: X, y: Y) -> anyhow::Result<String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    render_svg(|root| {
        let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&chart_area)
            .caption("Runtime scaling: linking time against records", (FONT, 20))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x, y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("records linked")
            .y_desc("link seconds (block, score, cluster)")
            .x_label_formatter(&|v| axis_number(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .axis_desc_style((FONT, 15))
            .label_style((FONT, 13))
            .light_line_style(RGBColor(0xEE, 0xEE, 0xEE))
            .draw()
            .map_err(plot_error)?;
        for (profile, line) in series {
            let c = colour(order, profile);
            chart
                .draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2)).point_size(4))
                .map_err(plot_error)?;
        }
        let entries: Vec<LegendEntry> = series
            .iter()
            .map(|(profile, _)| LegendEntry {
                label: truncate(profile, PLOT_LABEL_CHARS),
                colour: colour(order, profile),
                stroke: Stroke::Solid,
            })
            .collect();
        draw_legend(&legend_area, &[("Profiles", entries)])
    })
}

/// A tick label: whole numbers from 100 up, else up to 3 decimals without trailing zeros
/// (`0.1`, `1`, `10`, `2.5`), so that logarithmic ticks read as powers of ten.
fn axis_number(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v };
    if v.abs() >= 100.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// At most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::{ScalingPoint, Scores};

    fn curve(shift: f64) -> Vec<ThresholdPoint> {
        (0..=10)
            .map(|i| {
                let t = f64::from(i) / 10.0;
                ThresholdPoint {
                    threshold: t,
                    precision: (0.5 + 0.5 * t - shift).clamp(0.0, 1.0),
                    recall: (1.0 - t * t + shift).clamp(0.0, 1.0),
                }
            })
            .collect()
    }

    fn quality(profile: &str, f1_shift: f64, curve_shift: f64) -> ProfileQuality {
        ProfileQuality {
            profile: profile.into(),
            schema_fingerprint: format!("fp-{}", profile.len()),
            records: 12_000,
            cross: Scores::from_counts(1000, 990, 980),
            within: Scores::from_counts(200, 150, 140),
            all: Scores { f1: 0.9876 - f1_shift, ..Scores::from_counts(1200, 1140, 1120) },
            pair_completeness: 0.99512,
            reduction_ratio: 0.998765,
            encode_secs: 1.23456,
            link_secs: 4.5,
            rss_bytes: 123_456_789,
            curve: curve(curve_shift),
        }
    }

    fn attack(profile: &str, attack: &str, encoding: &str, field: &str, share_records: f64) -> AttackOutcome {
        AttackOutcome {
            profile: profile.into(),
            attack: attack.into(),
            encoding: encoding.into(),
            field: field.into(),
            overlap: 0.75,
            values_targeted: 400,
            values_reidentified: 50,
            share_values: 0.125,
            records: 12_000,
            records_reidentified: (share_records * 12_000.0) as u64,
            share_records,
            secs: 2.0,
        }
    }

    const EVIL: &str = "hardened <b>&\"x\"|y";

    fn fixture() -> Evaluation {
        let scaling = [
            ("default", 1_000, 0.05),
            ("default", 10_000, 0.7),
            ("default", 100_000, 9.5),
            (EVIL, 1_000, 0.06),
            (EVIL, 10_000, 0.8),
        ]
        .into_iter()
        .map(|(p, records, link_secs)| ScalingPoint {
            profile: p.into(),
            records,
            encode_secs: link_secs / 2.0,
            link_secs,
        })
        .collect();
        Evaluation {
            scenario: "small-town".into(),
            seed: 42,
            persons: 5_000,
            command: "cargo run --release -p ponte-sim -- run --scenario small-town --seed 42".into(),
            qualities: vec![quality("default", 0.0, 0.0), quality("unhardened", 0.01, 0.05), quality(EVIL, 0.05, 0.1)],
            attacks: vec![
                attack("unhardened", "frequency", "field-level", "surname", 0.4567),
                attack("unhardened", "pattern-mining", "record-level", "", 0.2),
                attack("default", "frequency", "record-level", "", 0.031),
                attack(EVIL, "pattern-mining", "field-level", "given_names", 0.0),
            ],
            scaling,
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// Checks that every opened element is closed in order (a light XML well-formedness check).
    fn assert_balanced(doc: &str, void: &[&str]) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        while let Some(start) = rest.find('<') {
            rest = &rest[start + 1..];
            let end = rest.find('>').expect("unterminated tag");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') {
                continue;
            }
            let name: String = tag.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(!name.is_empty(), "stray '<' before {tag:?}");
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(closing.trim()), "misnested </{closing}>");
            } else if !tag.ends_with('/') && !void.contains(&name.as_str()) {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    }

    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .map(|t| t.split_once('>').unwrap().1.split("</text>").next().unwrap().trim().to_string())
            .collect()
    }

    #[test]
    fn write_creates_the_report_and_every_plot() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/report");
        let written = write(&fixture(), &out).unwrap();
        assert_eq!(written.markdown, out.join(MARKDOWN_FILE));
        assert_eq!(written.html, out.join(HTML_FILE));
        let names: Vec<_> = written.plots.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, [PRECISION_RECALL_FILE, QUALITY_PRIVACY_FILE, SCALING_FILE]);
        for path in written.plots.iter().chain([&written.markdown, &written.html]) {
            assert!(std::fs::metadata(path).unwrap().len() > 200, "{} is empty", path.display());
        }
        let md = read(&written.markdown);
        for name in names {
            assert!(md.contains(&format!("]({name})")), "markdown does not embed {name}");
        }
    }

    #[test]
    fn markdown_tables_carry_the_figures() {
        let md = markdown(&fixture(), &[("a.svg".into(), "What a shows.".into())]);
        assert!(md.starts_with("# Ponte research report: small-town\n"));
        assert!(md.contains("```sh\ncargo run --release -p ponte-sim -- run --scenario small-town --seed 42\n```"));
        assert!(md.contains("**Seed:** 42") && md.contains("**Persons:** 5000") && md.contains("`small-town`"));
        // Quality row of `default`: cross 980/990 and 980/1000, within 140/150 and 140/200.
        let row = md.lines().find(|l| l.starts_with("| default |")).expect("quality row of default");
        assert_eq!(
            row,
            "| default | 12000 | 0.990 | 0.980 | 0.985 | 0.933 | 0.700 | 0.800 | 0.988 | 0.995 | 0.999 | 1.235 | 4.500 | 123.5 |"
        );
        // The attack table: overlap as a ratio, shares as percentages with their counts.
        assert!(md.contains(
            "| unhardened | frequency | field-level | surname | 0.750 | 12.5% (50 of 400) | 45.7% (5480 of 12000) |"
        ));
        assert!(md.contains(
            "| default | frequency | record-level | (whole record) | 0.750 | 12.5% (50 of 400) | 3.1% (372 of 12000) |"
        ));
        // The strongest attack of `unhardened` is the field-level frequency attack.
        assert!(md.contains("| unhardened | frequency (field-level, surname) | 45.7% | 0.978 |"));
        // Scaling sorted by profile then records.
        assert!(md.contains("| default | 100000 | 4.750 | 9.500 |"));
        assert!(md.contains("![What a shows.](a.svg)\n\n*What a shows.*"));
        assert!(md.contains("## How to read this"));
        // Names that would break a table or turn into HTML are escaped.
        assert!(md.contains("hardened \\<b\\>\\&\"x\"\\|y"));
        assert!(!md.contains("<b>"));
    }

    #[test]
    fn html_is_self_contained_escaped_and_balanced() {
        let ev = fixture();
        let plots = plots(&ev).unwrap();
        let page = html(&ev, &plots);
        assert!(page.starts_with("<!DOCTYPE html>"));
        for forbidden in ["http", "src=", "href=", "<script", "url(", "@import", "<link"] {
            assert!(!page.contains(forbidden), "the page holds {forbidden:?}");
        }
        assert!(!page.contains("<b>"), "a profile name went into the page unescaped");
        assert!(page.contains("hardened &lt;b&gt;&amp;&quot;x&quot;|y"));
        assert_eq!(page.matches("<svg").count(), 3);
        assert_eq!(page.matches("</svg>").count(), 3);
        assert_eq!(page.matches("<figure>").count(), 3);
        assert!(page.contains("<style>") && page.contains("<td class=\"num\">0.988</td>"));
        assert_balanced(&page, &["meta", "!DOCTYPE"]);
    }

    #[test]
    fn plots_are_svg_with_axis_labels_and_a_line_per_series() {
        let ev = fixture();
        let order = profile_order(&ev);
        let plots = plots(&ev).unwrap();
        let expect: [(&str, &[&str], &[&str]); 3] = [
            (
                PRECISION_RECALL_FILE,
                &["match-probability threshold", "precision, recall"],
                &["default", "unhardened", EVIL],
            ),
            (QUALITY_PRIVACY_FILE, &["records re-identified by the strongest attack (share)", "F1 (all pairs)"], &[]),
            (SCALING_FILE, &["records linked", "link seconds (block, score, cluster)"], &["default", EVIL]),
        ];
        for (plot, (file, labels, lines)) in plots.iter().zip(expect) {
            assert_eq!(plot.file_name, file);
            let svg = &plot.svg;
            assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"), "{file} is not an SVG document");
            assert_balanced(svg, &[]);
            let texts = svg_texts(svg);
            for label in labels {
                assert!(texts.iter().any(|t| t == label), "{file} lacks the axis label {label:?}: {texts:?}");
            }
            for profile in lines {
                let stroke = format!("stroke=\"{}\"", hex(colour(&order, profile)));
                assert!(
                    svg.lines().any(|l| l.starts_with("<polyline") && l.contains(&stroke)),
                    "{file} has no line for {profile}"
                );
            }
            // Profile names are escaped text, never markup.
            assert!(!svg.contains("<b>"));
        }
        // The trade-off plot labels its points with the profile names, escaped.
        let texts = svg_texts(&plots[1].svg);
        for profile in ["default", "unhardened"] {
            assert!(texts.iter().filter(|t| *t == profile).count() >= 2, "point and legend label for {profile}");
        }
        assert!(texts.iter().any(|t| t == "hardened &lt;b&gt;&amp;&quot;x&quot;|y"), "{texts:?}");
        // Records span 100x and seconds more than 10x: both scaling axes are logarithmic.
        assert!(plots[2].caption.contains("both axes logarithmic"));
    }

    fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn writing_twice_gives_identical_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = write(&fixture(), a.path()).unwrap();
        let snapshot: Vec<Vec<u8>> =
            first.plots.iter().chain([&first.markdown, &first.html]).map(|p| std::fs::read(p).unwrap()).collect();
        write(&fixture(), a.path()).unwrap();
        let second = write(&fixture(), b.path()).unwrap();
        for (before, (again, other)) in snapshot.iter().zip(
            first
                .plots
                .iter()
                .chain([&first.markdown, &first.html])
                .zip(second.plots.iter().chain([&second.markdown, &second.html])),
        ) {
            assert_eq!(before, &std::fs::read(again).unwrap(), "{} changed on rewrite", again.display());
            assert_eq!(before, &std::fs::read(other).unwrap(), "{} differs across directories", other.display());
        }
    }

    #[test]
    fn an_evaluation_without_attacks_or_scaling_still_renders() {
        let ev = Evaluation { attacks: vec![], scaling: vec![], ..fixture() };
        let dir = tempfile::tempdir().unwrap();
        let written = write(&ev, dir.path()).unwrap();
        assert_eq!(written.plots, [dir.path().join(PRECISION_RECALL_FILE)]);
        let md = read(&written.markdown);
        let after = |heading: &str| md.split(heading).nth(1).unwrap().trim_start().lines().next().unwrap().to_string();
        assert_eq!(after("## Re-identification attacks\n"), "Not measured in this run.");
        assert_eq!(after("## Runtime scaling\n"), "Not measured in this run.");
        let page = read(&written.html);
        assert!(page.contains("<h2>Re-identification attacks</h2>\n<p>Not measured in this run.</p>"));
        assert_balanced(&page, &["meta", "!DOCTYPE"]);

        // Nothing at all: every section says so, and there is no plot.
        let empty = Evaluation::default();
        let written = write(&empty, dir.path()).unwrap();
        assert!(written.plots.is_empty());
        assert!(!dir.path().join(PRECISION_RECALL_FILE).exists(), "the stale plot of the earlier report was left");
        let md = read(&written.markdown);
        assert_eq!(md.matches("Not measured in this run.").count(), 3);
        assert!(md.contains("No plots: nothing in this run to plot."));
        assert!(md.contains("The command line was not recorded."));
    }

    #[test]
    fn a_single_scaling_point_gives_no_scaling_plot() {
        let mut ev = fixture();
        ev.scaling.truncate(1);
        let plots = plots(&ev).unwrap();
        assert!(plots.iter().all(|p| p.file_name != SCALING_FILE));
        assert!(markdown(&ev, &[]).contains("One point only: no scaling plot."));
    }

    #[test]
    fn numbers_are_formatted_consistently() {
        assert_eq!(ratio(0.98765), "0.988");
        assert_eq!(ratio(-0.0), "0.000");
        assert_eq!(ratio(f64::NAN), "n/a");
        assert_eq!(percent(0.45678), "45.7%");
        assert_eq!(percent(f64::INFINITY), "n/a");
        assert_eq!(secs(0.0004), "0.000");
        assert_eq!(megabytes(0), "n/a");
        assert_eq!(megabytes(2_500_000), "2.5");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_escape("a|b_c"), "a\\|b\\_c");
        assert_eq!(
            [axis_number(0.1), axis_number(1.0), axis_number(10.0), axis_number(2.5), axis_number(12345.6)],
            ["0.1", "1", "10", "2.5", "12346"]
        );
    }

    #[test]
    fn a_command_with_backtick_fences_stays_one_code_block() {
        let ev = Evaluation { command: "echo ```x```".into(), ..Evaluation::default() };
        assert!(markdown(&ev, &[]).contains("````sh\necho ```x```\n````\n"));
    }

    #[test]
    fn evaluations_past_the_limits_are_refused() {
        let too_many = Evaluation {
            qualities: (0..=MAX_PROFILES).map(|i| quality(&format!("p{i}"), 0.0, 0.0)).collect(),
            ..Evaluation::default()
        };
        let err = write(&too_many, tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
        assert!(err.contains(&format!("at most {MAX_PROFILES} profiles")), "{err}");
        let long_name = Evaluation { scenario: "x".repeat(MAX_TEXT_CHARS + 1), ..Evaluation::default() };
        assert!(check_bounds(&long_name).is_err());
        assert!(check_bounds(&fixture()).is_ok());
    }
}
