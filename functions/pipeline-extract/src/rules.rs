//! Per-carrier layout rules: data, not code. Each `rules/<layout>.yaml` says how to recognise one carrier's quote
//! and where each field is, so adding a carrier is adding a file.
//!
//! The files in `rules/` are compiled in (`build.rs` lists the folder); [`RuleSet::load_dir`] reads another folder
//! at run time instead. Every file is checked completely when it is loaded, and every problem is reported with the
//! file, the line and the key it concerns.
//!
//! ```yaml
//! carrier: Northwind Mutual                  # for people; not used to match
//! match:
//!   all: ["Northwind Mutual", "Schedule of Cover"]   # phrases the document must contain (case-insensitive)
//!   none: ["Endorsement"]                    # optional: phrases it must not contain
//! dates: ["%d %b %Y"]                        # chrono formats, tried in order
//! numbers:
//!   decimal: ","                             # decimal separator
//!   thousands: "."                           # thousands separator, or "" for none
//!   currencies: {"€": EUR, EUR: EUR}         # symbols and codes as printed -> ISO 4217 code reported
//! fields:                                    # each: a label, a pattern, or a constant
//!   quote-number: {label: "Quote Number:"}   # the value is the rest of the line after the label
//!   insured-name: {label: "Insured:", max-lines: 3}    # the value may wrap onto following lines
//!   line-of-business: {constant: Commercial Property}
//!   effective-date: {label: "Policy Period:", pattern: '^(.+?) to '}   # one capture group, applied to the value
//!   expiry-date: {label: "Policy Period:", pattern: ' to (.+)$'}
//!   total-premium: {label: ["Total Premium:", "Total:"]}   # alternatives, tried in order
//! table:
//!   after: "Schedule of Cover"               # optional: the header comes after this phrase
//!   end: ["Net Premium:"]                    # the table ends at a line starting with one of these
//!   anchor: premium                          # one row per amount in this column
//!   columns:                                 # header labels as printed (they may wrap)
//!     - {field: name, header: "Coverage"}
//!     - {field: limit, header: "Limit of Insurance"}
//!     - {field: deductible, header: "Deductible"}
//!     - {field: premium, header: "Premium"}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use regex::Regex;
use serde::Deserialize;

use crate::money::{Money, MoneyError};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));
}

/// All known layouts.
#[derive(Clone, Debug)]
pub struct RuleSet {
    layouts: Vec<Layout>,
}

/// One carrier's layout, checked and compiled.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The file stem, e.g. `A`; reported with every extraction.
    pub name: String,
    /// The carrier, for people.
    pub carrier: String,
    pub(crate) all: Vec<String>,
    pub(crate) none: Vec<String>,
    pub(crate) dates: Vec<String>,
    pub(crate) numbers: NumberFormat,
    pub(crate) fields: Fields,
    pub(crate) table: TableRule,
}

/// How each quote field is found.
#[derive(Clone, Debug)]
pub(crate) struct Fields {
    pub quote_number: FieldRule,
    pub insured_name: FieldRule,
    pub line_of_business: FieldRule,
    pub effective_date: FieldRule,
    pub expiry_date: FieldRule,
    pub total_premium: FieldRule,
    pub currency: Option<FieldRule>,
}

/// How one field is found.
#[derive(Clone, Debug)]
pub(crate) enum FieldRule {
    /// Always this value.
    Constant(String),
    /// The text after a label (the first label found, in the order given), possibly over several lines, then
    /// optionally narrowed by a pattern's capture group.
    Label { labels: Vec<String>, pattern: Option<Regex>, max_lines: usize },
    /// The capture group of the first line the pattern matches.
    Pattern(Regex),
}

/// Which part of a coverage a table column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoverageField {
    /// Coverage name (text).
    Name,
    /// Limit (money).
    Limit,
    /// Deductible (money).
    Deductible,
    /// Premium (money).
    Premium,
}

impl CoverageField {
    /// The field's name in the quote JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CoverageField::Name => "name",
            CoverageField::Limit => "limit",
            CoverageField::Deductible => "deductible",
            CoverageField::Premium => "premium",
        }
    }

    /// Whether the column holds amounts.
    pub fn is_money(self) -> bool {
        self != CoverageField::Name
    }
}

/// How the coverage table is read.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRule {
    /// The header is searched only after this phrase (on the table's first page).
    pub after: Option<String>,
    /// The table ends at the first line that starts with one of these.
    pub end: Vec<String>,
    /// The columns, left to right, each with its header label split into words.
    pub columns: Vec<Column>,
    /// Index into `columns` of the column with one amount per row.
    pub anchor: usize,
}

/// One table column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// What it holds.
    pub field: CoverageField,
    /// Its header label, as words.
    pub header: Vec<String>,
}

/// How amounts are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberFormat {
    /// Decimal separator.
    pub decimal: char,
    /// Thousands separator, if any.
    pub thousands: Option<char>,
    /// Currency symbols and codes as printed, longest first, with the ISO 4217 code each stands for.
    pub currencies: Vec<(String, String)>,
}

/// An amount read from a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Amount {
    /// The value.
    pub value: Money,
    /// The ISO code of the currency symbol or code printed with it, if any.
    pub currency: Option<String>,
}

/// Why a string is not an amount. Reasons are fixed; they never quote the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing but currency and spaces.
    #[error("no digits")]
    Empty,
    /// Digits and separators that do not follow the layout's number format.
    #[error("not in the layout's number format")]
    Format,
    /// More than two decimal places.
    #[error("more than two decimal places")]
    Precision,
    /// Too large for the money type.
    #[error("amount too large")]
    Overflow,
    /// Two different currencies in one amount.
    #[error("more than one currency")]
    MixedCurrency,
}

impl NumberFormat {
    /// Parses `€ 1.234,56`, `$1,234.56`, `1.234,56 EUR`, `-$5.00`: an optional sign, currency symbols or codes
    /// before or after, digits grouped by the thousands separator (or not grouped at all), and at most two
    /// decimals. Spaces (including no-break and thin spaces) are ignored.
    pub fn parse(&self, s: &str) -> Result<Amount, AmountError> {
        let mut rest: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let mut currency: Option<String> = None;
        let mut negative = false;
        // Strip signs and currency tokens from both ends until nothing changes.
        loop {
            let before = rest.len();
            for sign in ['-', '\u{2212}'] {
                if let Some(r) = rest.strip_prefix(sign) {
                    if negative {
                        return Err(AmountError::Format);
                    }
                    negative = true;
                    rest = r.to_owned();
                }
            }
            if rest.starts_with('(') && rest.ends_with(')') && rest.len() >= 2 && !negative {
                negative = true;
                rest = rest[1..rest.len() - 1].to_owned();
            }
            for (token, iso) in &self.currencies {
                let stripped = if let Some(r) = rest.strip_prefix(token.as_str()) {
                    Some(r.to_owned())
                } else {
                    rest.strip_suffix(token.as_str()).map(str::to_owned)
                };
                if let Some(r) = stripped {
                    match &currency {
                        Some(c) if c != iso => return Err(AmountError::MixedCurrency),
                        _ => currency = Some(iso.clone()),
                    }
                    rest = r;
                    break;
                }
            }
            if rest.len() == before {
                break;
            }
        }
        if rest.is_empty() {
            return Err(AmountError::Empty);
        }
        let (int, frac) = match rest.rfind(self.decimal) {
            Some(i) => (&rest[..i], &rest[i + self.decimal.len_utf8()..]),
            None => (rest.as_str(), ""),
        };
        if rest.ends_with(self.decimal) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Format);
        }
        let digits: String = match self.thousands {
            Some(t) if int.contains(t) => {
                let groups: Vec<&str> = int.split(t).collect();
                let first_ok = (1..=3).contains(&groups[0].len());
                if !first_ok || groups[1..].iter().any(|g| g.len() != 3) {
                    return Err(AmountError::Format);
                }
                groups.concat()
            }
            _ => int.to_owned(),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Format);
        }
        let value = Money::from_parts(&digits, frac).map_err(|e| match e {
            MoneyError::Precision => AmountError::Precision,
            MoneyError::Overflow => AmountError::Overflow,
            MoneyError::Syntax => AmountError::Format,
        })?;
        let value = if negative { value.checked_neg().ok_or(AmountError::Overflow)? } else { value };
        Ok(Amount { value, currency })
    }

    /// Whether a word is only a currency symbol or code (as narrow table cells put `EUR` on a line of its own).
    pub fn is_currency(&self, word: &str) -> bool {
        self.currencies.iter().any(|(t, _)| t == word)
    }

    /// The ISO code a symbol or code stands for, or the word itself when it is already an ISO code.
    pub fn iso(&self, word: &str) -> Option<String> {
        let w = word.trim();
        if let Some((_, iso)) = self.currencies.iter().find(|(t, _)| t == w) {
            return Some(iso.clone());
        }
        (w.len() == 3 && w.bytes().all(|b| b.is_ascii_uppercase())).then(|| w.to_owned())
    }

    /// The one ISO code all tokens stand for, when they agree.
    pub fn only_currency(&self) -> Option<&str> {
        let first = &self.currencies.first()?.1;
        self.currencies.iter().all(|(_, iso)| iso == first).then_some(first.as_str())
    }
}

/// Parses a date with the first of `formats` that reads all of it.
pub fn parse_date(s: &str, formats: &[String]) -> Option<NaiveDate> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    formats.iter().find_map(|f| NaiveDate::parse_from_str(&s, f).ok())
}

// ---------------------------------------------------------------------------------------------------------------
// Loading

/// A problem in one rules file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line, when it can be told.
    pub line: Option<usize>,
    /// The key concerned, e.g. `fields.quote-number.pattern` (empty for the whole file).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why rules could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A folder or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// What we tried to read.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The folder has no `.yaml` files.
    #[error("no rules files (*.yaml) in {0}")]
    Empty(String),
    /// Files with problems; every problem of every file is listed.
    #[error("invalid rules:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl RuleSet {
    /// The rules compiled into the binary from `rules/`.
    pub fn embedded() -> Result<Self, RulesError> {
        Self::from_sources(embedded::RULES.iter().map(|(name, src)| (format!("rules/{name}.yaml"), (*src).to_owned())))
    }

    /// Every `*.yaml` / `*.yml` file in `dir` (not recursive), replacing the embedded rules.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self, RulesError> {
        let dir = dir.as_ref();
        let io = |path: &Path, source| RulesError::Io { path: path.display().to_string(), source };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
            if yaml && path.is_file() {
                let src = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
                files.push((path.display().to_string(), src));
            }
        }
        if files.is_empty() {
            return Err(RulesError::Empty(dir.display().to_string()));
        }
        Self::from_sources(files)
    }

    /// From `(file name, YAML)` pairs; the layout name is the file stem.
    pub fn from_sources(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, RulesError> {
        let mut layouts: Vec<Layout> = Vec::new();
        let mut problems = Vec::new();
        for (file, src) in files {
            match Layout::parse(&file, &src) {
                Ok(l) => {
                    if layouts.iter().any(|o| o.name == l.name) {
                        problems.push(Problem {
                            file,
                            line: None,
                            field: String::new(),
                            message: format!("layout {:?} is defined twice", l.name),
                        });
                    } else {
                        layouts.push(l);
                    }
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if !problems.is_empty() {
            return Err(RulesError::Invalid(problems));
        }
        if layouts.is_empty() {
            return Err(RulesError::Empty("the given sources".into()));
        }
        layouts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self { layouts })
    }

    /// The layouts, by name.
    pub fn layouts(&self) -> &[Layout] {
        &self.layouts
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLayout {
    carrier: String,
    #[serde(rename = "match")]
    matching: RawMatch,
    dates: Vec<String>,
    numbers: RawNumbers,
    fields: RawFields,
    table: RawTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMatch {
    all: Vec<String>,
    #[serde(default)]
    none: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNumbers {
    decimal: String,
    thousands: String,
    currencies: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawFields {
    quote_number: RawField,
    insured_name: RawField,
    line_of_business: RawField,
    effective_date: RawField,
    expiry_date: RawField,
    total_premium: RawField,
    #[serde(default)]
    currency: Option<RawField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawField {
    label: Option<OneOrMany>,
    pattern: Option<String>,
    constant: Option<String>,
    max_lines: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTable {
    after: Option<String>,
    #[serde(default)]
    end: Option<OneOrMany>,
    anchor: CoverageField,
    columns: Vec<RawColumn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawColumn {
    field: CoverageField,
    header: String,
}

/// Collects problems for one file, locating keys in its source.
struct Check<'a> {
    file: &'a str,
    src: &'a str,
    problems: Vec<Problem>,
}

impl Check<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: locate(self.src, path),
            field: path.to_owned(),
            message: message.into(),
        });
    }

    fn phrase(&mut self, path: &str, s: &str) -> String {
        let norm = normalize(s);
        if norm.is_empty() {
            self.problem(path, "must not be empty");
        }
        norm
    }

    fn regex(&mut self, path: &str, p: &str) -> Option<Regex> {
        match Regex::new(p) {
            Ok(r) if r.captures_len() == 2 => Some(r),
            Ok(r) => {
                self.problem(path, format!("must have exactly one capture group (has {})", r.captures_len() - 1));
                None
            }
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("invalid").trim().to_owned();
                self.problem(path, format!("not a valid regular expression: {last}"));
                None
            }
        }
    }

    fn field(&mut self, path: &str, raw: RawField) -> Option<FieldRule> {
        match (raw.label, raw.pattern, raw.constant) {
            (None, None, Some(c)) => {
                if raw.max_lines.is_some() {
                    self.problem(&format!("{path}.max-lines"), "only applies to a label");
                }
                let c = normalize(&c);
                if c.is_empty() {
                    self.problem(&format!("{path}.constant"), "must not be empty");
                }
                Some(FieldRule::Constant(c))
            }
            (Some(labels), pattern, None) => {
                let labels: Vec<String> = labels
                    .into_vec()
                    .iter()
                    .enumerate()
                    .map(|(i, l)| self.phrase(&format!("{path}.label[{i}]"), l))
                    .collect();
                if labels.is_empty() {
                    self.problem(&format!("{path}.label"), "needs at least one label");
                }
                let pattern = match pattern {
                    Some(p) => Some(self.regex(&format!("{path}.pattern"), &p)?),
                    None => None,
                };
                let max_lines = raw.max_lines.unwrap_or(1);
                if !(1..=10).contains(&max_lines) {
                    self.problem(&format!("{path}.max-lines"), "must be from 1 to 10");
                }
                Some(FieldRule::Label { labels, pattern, max_lines })
            }
            (None, Some(p), None) => {
                if raw.max_lines.is_some() {
                    self.problem(&format!("{path}.max-lines"), "only applies to a label");
                }
                Some(FieldRule::Pattern(self.regex(&format!("{path}.pattern"), &p)?))
            }
            (None, None, None) => {
                self.problem(path, "needs a label, a pattern or a constant");
                None
            }
            (_, _, Some(_)) => {
                self.problem(path, "a constant cannot be combined with a label or a pattern");
                None
            }
        }
    }
}

impl Layout {
    /// Parses and checks one rules file; `file` names it in problems and gives the layout its name (the stem).
    pub fn parse(file: &str, src: &str) -> Result<Layout, Vec<Problem>> {
        let name = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("").to_owned();
        let mut ck = Check { file, src, problems: Vec::new() };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            ck.problem("", "the file name must be a layout name: letters, digits, '-' and '_'");
        }
        let de = serde_yaml::Deserializer::from_str(src);
        let raw: RawLayout = match serde_path_to_error::deserialize(de) {
            Ok(r) => r,
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let line = inner.location().map(|l| l.line()).or_else(|| locate(src, &path));
                let message = inner.to_string();
                // serde_yaml appends " at line L column C"; the line is reported separately.
                let message = match message.find(" at line ") {
                    Some(i) => message[..i].to_owned(),
                    None => message,
                };
                let field = if path == "." { String::new() } else { path };
                ck.problems.push(Problem { file: file.to_owned(), line, field, message });
                return Err(ck.problems);
            }
        };

        let carrier = normalize(&raw.carrier);
        if carrier.is_empty() {
            ck.problem("carrier", "must not be empty");
        }
        if raw.matching.all.is_empty() {
            ck.problem("match.all", "needs at least one phrase");
        }
        let all: Vec<String> =
            raw.matching.all.iter().enumerate().map(|(i, p)| ck.phrase(&format!("match.all[{i}]"), p)).collect();
        let none: Vec<String> =
            raw.matching.none.iter().enumerate().map(|(i, p)| ck.phrase(&format!("match.none[{i}]"), p)).collect();

        if raw.dates.is_empty() {
            ck.problem("dates", "needs at least one format");
        }
        let probe = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        for (i, f) in raw.dates.iter().enumerate() {
            let items: Vec<_> = chrono::format::StrftimeItems::new(f).collect();
            let valid = !items.iter().any(|i| matches!(i, chrono::format::Item::Error));
            let round_trips =
                valid && NaiveDate::parse_from_str(&probe.format(f).to_string(), f).is_ok_and(|d| d == probe);
            if !round_trips {
                ck.problem(&format!("dates[{i}]"), "not a chrono date format with a day, a month and a year");
            }
        }

        let numbers = numbers(&mut ck, raw.numbers);

        let f = raw.fields;
        let fields = (
            ck.field("fields.quote-number", f.quote_number),
            ck.field("fields.insured-name", f.insured_name),
            ck.field("fields.line-of-business", f.line_of_business),
            ck.field("fields.effective-date", f.effective_date),
            ck.field("fields.expiry-date", f.expiry_date),
            ck.field("fields.total-premium", f.total_premium),
            f.currency.map(|c| ck.field("fields.currency", c)),
        );

        let table = table(&mut ck, raw.table);

        if !ck.problems.is_empty() {
            return Err(ck.problems);
        }
        let (Some(quote_number), Some(insured_name), Some(line_of_business), Some(effective_date), Some(expiry_date)) =
            (fields.0, fields.1, fields.2, fields.3, fields.4)
        else {
            return Err(ck.problems);
        };
        let (Some(total_premium), Some(table)) = (fields.5, table) else { return Err(ck.problems) };
        let currency = match fields.6 {
            Some(Some(c)) => Some(c),
            Some(None) => return Err(ck.problems),
            None => None,
        };
        Ok(Layout {
            name,
            carrier,
            all,
            none,
            dates: raw.dates,
            numbers,
            fields: Fields {
                quote_number,
                insured_name,
                line_of_business,
                effective_date,
                expiry_date,
                total_premium,
                currency,
            },
            table,
        })
    }

    /// Whether a document's text (whitespace-normalised, lower-case) fits this layout.
    pub(crate) fn matches(&self, text_lower: &str) -> bool {
        self.all.iter().all(|p| text_lower.contains(&p.to_lowercase()))
            && !self.none.iter().any(|p| text_lower.contains(&p.to_lowercase()))
    }
}

fn single_char(ck: &mut Check<'_>, path: &str, s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if !c.is_ascii_digit() && !c.is_alphabetic() => Some(c),
        _ => {
            ck.problem(path, "must be one character, not a digit or a letter");
            None
        }
    }
}

fn numbers(ck: &mut Check<'_>, raw: RawNumbers) -> NumberFormat {
    let decimal = single_char(ck, "numbers.decimal", &raw.decimal);
    let thousands = if raw.thousands.is_empty() { None } else { single_char(ck, "numbers.thousands", &raw.thousands) };
    if decimal.is_some() && thousands == decimal {
        ck.problem("numbers.thousands", "must differ from the decimal separator");
    }
    if raw.currencies.is_empty() {
        ck.problem("numbers.currencies", "needs at least one symbol or code");
    }
    let mut currencies = Vec::new();
    for (token, iso) in raw.currencies {
        let path = format!("numbers.currencies.{token}");
        if token.trim().is_empty() || token.chars().any(|c| c.is_ascii_digit() || c.is_whitespace()) {
            ck.problem(&path, "a currency symbol or code must be non-empty, without digits or spaces");
        }
        if decimal.is_some_and(|d| token == d.to_string()) {
            ck.problem(&path, "a currency symbol cannot be the decimal separator");
        }
        if iso.len() != 3 || !iso.bytes().all(|b| b.is_ascii_uppercase()) {
            ck.problem(&path, "must map to an ISO 4217 code (three capital letters)");
        }
        currencies.push((token, iso));
    }
    currencies.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    NumberFormat { decimal: decimal.unwrap_or('.'), thousands, currencies }
}

fn table(ck: &mut Check<'_>, raw: RawTable) -> Option<TableRule> {
    let after = raw.after.map(|a| ck.phrase("table.after", &a));
    let end: Vec<String> = raw
        .end
        .map(OneOrMany::into_vec)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, e)| ck.phrase(&format!("table.end[{i}]"), e))
        .collect();
    let mut columns = Vec::new();
    for (i, c) in raw.columns.into_iter().enumerate() {
        let header: Vec<String> = c.header.split_whitespace().map(str::to_owned).collect();
        if header.is_empty() {
            ck.problem(&format!("table.columns[{i}].header"), "must not be empty");
        }
        if columns.iter().any(|o: &Column| o.field == c.field) {
            ck.problem(&format!("table.columns[{i}].field"), format!("{} appears twice", c.field.as_str()));
        }
        columns.push(Column { field: c.field, header });
    }
    for f in [CoverageField::Name, CoverageField::Limit, CoverageField::Deductible, CoverageField::Premium] {
        if !columns.iter().any(|c| c.field == f) {
            ck.problem("table.columns", format!("needs a column for {}", f.as_str()));
        }
    }
    if !raw.anchor.is_money() {
        ck.problem("table.anchor", "must be a column of amounts (limit, deductible or premium)");
    }
    let anchor = columns.iter().position(|c| c.field == raw.anchor);
    Some(TableRule { after, end, columns, anchor: anchor? })
}

/// Collapses every run of whitespace (including no-break spaces) into one space and trims.
pub(crate) fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The 1-based line of a key path such as `fields.quote-number.pattern` or `table.columns[2].header`, found by
/// walking the YAML by indentation. Good enough for error messages; `None` when the path cannot be followed.
fn locate(src: &str, path: &str) -> Option<usize> {
    let mut segs: Vec<(Option<&str>, Option<usize>)> = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        match part.split_once('[') {
            Some((key, idx)) => {
                let n = idx.trim_end_matches(']').parse().ok()?;
                if !key.is_empty() {
                    segs.push((Some(key), None));
                }
                segs.push((None, Some(n)));
            }
            None => segs.push((Some(part), None)),
        }
    }
    if segs.is_empty() {
        return None;
    }
    let lines: Vec<&str> = src.lines().collect();
    let (mut from, mut parent_indent, mut found) = (0usize, -1isize, None);
    for (key, index) in segs {
        let mut seen = 0usize;
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = (line.len() - body.len()) as isize;
            if i > from && indent <= parent_indent {
                break;
            }
            if let Some(k) = key {
                // `key:` on its own line, after `- `, or inside a flow mapping `{key: ...}`.
                let bare = body.trim_start_matches("- ");
                let quoted = [format!("{k}:"), format!("\"{k}\":"), format!("'{k}':")];
                if quoted.iter().any(|q| bare.starts_with(q.as_str())) {
                    hit = Some((i, indent));
                    break;
                }
                if quoted.iter().any(|q| body.contains(&format!("{{{q}")) || body.contains(&format!(", {q}"))) {
                    hit = Some((i, indent));
                    break;
                }
            } else if let Some(n) = index {
                if body.starts_with("- ") || body == "-" {
                    if seen == n {
                        hit = Some((i, indent));
                        break;
                    }
                    seen += 1;
                }
            }
        }
        let (i, indent) = hit?;
        found = Some(i + 1);
        // Flow collections keep the rest of the path on this line.
        if (lines[i].contains('{') || lines[i].contains('[')) && key.is_some() && !lines[i].trim_end().ends_with(':') {
            return found;
        }
        from = i;
        parent_indent = indent;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
carrier: Test Mutual
match:
  all: ["Test Mutual", "Schedule"]
dates: ["%d %b %Y"]
numbers:
  decimal: ","
  thousands: "."
  currencies: {"€": EUR, EUR: EUR}
fields:
  quote-number: {label: "Quote Number:"}
  insured-name:
    label: "Insured:"
    max-lines: 3
  line-of-business: {constant: Commercial Property}
  effective-date: {label: "Policy Period:", pattern: '^(.+?) to '}
  expiry-date: {label: "Policy Period:", pattern: ' to (.+)$'}
  total-premium: {label: ["Total Premium:", "Total:"]}
table:
  after: Schedule
  end: "Net Premium:"
  anchor: premium
  columns:
    - {field: name, header: Coverage}
    - {field: limit, header: "Limit of  Insurance"}
    - {field: deductible, header: Deductible}
    - {field: premium, header: Premium}
"#;

    fn problems(src: &str) -> Vec<Problem> {
        Layout::parse("rules/T.yaml", src).expect_err("should fail")
    }

    fn one(src: &str) -> Problem {
        let p = problems(src);
        assert_eq!(p.len(), 1, "{p:#?}");
        p.into_iter().next().unwrap()
    }

    #[test]
    fn a_good_file_compiles() {
        let l = Layout::parse("rules/T.yaml", GOOD).unwrap();
        assert_eq!(l.name, "T");
        assert_eq!(l.carrier, "Test Mutual");
        assert_eq!(l.numbers.decimal, ',');
        assert_eq!(l.numbers.thousands, Some('.'));
        assert_eq!(l.numbers.currencies, [("EUR".to_owned(), "EUR".to_owned()), ("€".to_owned(), "EUR".to_owned())]);
        assert_eq!(l.table.columns[1].header, ["Limit", "of", "Insurance"]);
        assert_eq!(l.table.anchor, 3);
        assert_eq!(l.table.end, ["Net Premium:"]);
        assert!(matches!(&l.fields.insured_name, FieldRule::Label { max_lines: 3, .. }));
        assert!(matches!(&l.fields.total_premium, FieldRule::Label { labels, .. } if labels.len() == 2));
        assert!(matches!(&l.fields.line_of_business, FieldRule::Constant(c) if c == "Commercial Property"));
        assert!(l.matches("this is test mutual's schedule of cover"));
        assert!(!l.matches("test mutual"));
    }

    #[test]
    fn the_embedded_rules_compile() {
        let rules = RuleSet::embedded().unwrap();
        let names: Vec<_> = rules.layouts().iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let p = one("carrier: [unclosed\n");
        assert_eq!(p.file, "rules/T.yaml");
        assert!(p.line.is_some(), "{p}");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let p = one(&GOOD.replace("max-lines: 3", "max-line: 3"));
        assert_eq!(p.field, "fields.insured-name.max-line");
        assert_eq!(p.line, Some(14));
        assert!(p.message.contains("unknown field `max-line`"), "{p}");

        let p = one(&GOOD.replace("  total-premium: {label: [\"Total Premium:\", \"Total:\"]}\n", ""));
        assert_eq!(p.field, "fields");
        assert!(p.message.contains("missing field `total-premium`"), "{p}");

        let p = one(&GOOD.replace("anchor: premium", "anchor: tax"));
        assert_eq!(p.field, "table.anchor");
        assert!(p.message.contains("unknown variant `tax`"), "{p}");
    }

    #[test]
    fn bad_patterns_are_reported_with_their_line() {
        let p = one(&GOOD.replace("pattern: ' to (.+)$'", "pattern: ' to .+$'"));
        assert_eq!(p.field, "fields.expiry-date.pattern");
        assert_eq!(p.line, Some(17));
        assert_eq!(p.message, "must have exactly one capture group (has 0)");
        assert_eq!(
            p.to_string(),
            "rules/T.yaml:17: fields.expiry-date.pattern: must have exactly one capture group (has 0)"
        );

        let p = one(&GOOD.replace("pattern: '^(.+?) to '", "pattern: '^((.+?) to '"));
        assert_eq!(p.field, "fields.effective-date.pattern");
        assert!(p.message.starts_with("not a valid regular expression"), "{p}");
    }

    #[test]
    fn fields_need_exactly_one_source() {
        let p = one(&GOOD.replace("{constant: Commercial Property}", "{constant: X, label: \"Y:\"}"));
        assert_eq!(p.field, "fields.line-of-business");
        assert_eq!(p.message, "a constant cannot be combined with a label or a pattern");
        let p = one(&GOOD.replace("{constant: Commercial Property}", "{max-lines: 2}"));
        assert_eq!(p.message, "needs a label, a pattern or a constant");
        let p = one(&GOOD.replace("{constant: Commercial Property}", "{constant: \"  \"}"));
        assert_eq!(p.field, "fields.line-of-business.constant");
        let p = one(&GOOD.replace("max-lines: 3", "max-lines: 0"));
        assert_eq!((p.field.as_str(), p.line), ("fields.insured-name.max-lines", Some(14)));
        let p = one(&GOOD.replace("{label: \"Quote Number:\"}", "{label: \" \"}"));
        assert_eq!(p.field, "fields.quote-number.label[0]");
    }

    #[test]
    fn date_formats_must_be_complete() {
        let p = one(&GOOD.replace("dates: [\"%d %b %Y\"]", "dates: [\"%d %b\"]"));
        assert_eq!((p.field.as_str(), p.line), ("dates[0]", Some(5)));
        let p = one(&GOOD.replace("dates: [\"%d %b %Y\"]", "dates: [\"%Q\"]"));
        assert_eq!(p.field, "dates[0]");
        let p = one(&GOOD.replace("dates: [\"%d %b %Y\"]", "dates: []"));
        assert_eq!(p.field, "dates");
    }

    #[test]
    fn number_formats_are_checked() {
        let p = one(&GOOD.replace("decimal: \",\"", "decimal: \".\""));
        assert_eq!((p.field.as_str(), p.line), ("numbers.thousands", Some(8)));
        let p = one(&GOOD.replace("decimal: \",\"", "decimal: \",,\""));
        assert_eq!(p.field, "numbers.decimal");
        let p = one(&GOOD.replace("EUR: EUR}", "EUR: Euro}"));
        assert_eq!(p.field, "numbers.currencies.EUR");
        let p = one(&GOOD.replace("{\"€\": EUR, EUR: EUR}", "{}"));
        assert_eq!(p.field, "numbers.currencies");
    }

    #[test]
    fn table_columns_are_checked() {
        let p = one(&GOOD.replace("    - {field: deductible, header: Deductible}\n", ""));
        assert_eq!(p.field, "table.columns");
        assert_eq!(p.message, "needs a column for deductible");
        let p =
            problems(&GOOD.replace("{field: deductible, header: Deductible}", "{field: limit, header: Deductible}"));
        assert_eq!(p[0].field, "table.columns[2].field");
        assert_eq!(p[0].line, Some(26));
        let p = one(&GOOD.replace("anchor: premium", "anchor: name"));
        assert_eq!(p.message, "must be a column of amounts (limit, deductible or premium)");
        let p = one(&GOOD.replace("header: Premium}", "header: \"\"}"));
        assert_eq!(p.field, "table.columns[3].header");
    }

    #[test]
    fn match_phrases_are_required() {
        let p = one(&GOOD.replace("all: [\"Test Mutual\", \"Schedule\"]", "all: []"));
        assert_eq!((p.field.as_str(), p.line), ("match.all", Some(4)));
    }

    #[test]
    fn all_problems_of_all_files_are_listed() {
        let bad1 = GOOD.replace("dates: [\"%d %b %Y\"]", "dates: [\"%d\"]").replace("anchor: premium", "anchor: name");
        let bad2 = "carrier: X\n";
        let err = RuleSet::from_sources([
            ("rules/one.yaml".to_owned(), bad1),
            ("rules/two.yaml".to_owned(), bad2.to_owned()),
            ("rules/T.yaml".to_owned(), GOOD.to_owned()),
            ("other/T.yaml".to_owned(), GOOD.to_owned()),
        ])
        .unwrap_err();
        let RulesError::Invalid(p) = &err else { panic!("{err}") };
        let files: Vec<_> = p.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["rules/one.yaml", "rules/one.yaml", "rules/two.yaml", "other/T.yaml"]);
        assert!(err.to_string().contains("layout \"T\" is defined twice"), "{err}");
    }

    #[test]
    fn bad_file_names_are_refused() {
        let p = Layout::parse("rules/a b.yaml", GOOD).unwrap_err();
        assert_eq!(p[0].message, "the file name must be a layout name: letters, digits, '-' and '_'");
    }

    #[test]
    fn load_dir_reads_yaml_files_only() {
        let dir = std::env::temp_dir().join(format!("palisade-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("X.yaml"), GOOD).unwrap();
        std::fs::write(dir.join("README.md"), "not rules").unwrap();
        let rules = RuleSet::load_dir(&dir).unwrap();
        assert_eq!(rules.layouts().len(), 1);
        assert_eq!(rules.layouts()[0].name, "X");
        std::fs::remove_file(dir.join("X.yaml")).unwrap();
        assert!(matches!(RuleSet::load_dir(&dir), Err(RulesError::Empty(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(RuleSet::load_dir(&dir), Err(RulesError::Io { .. })));
    }

    fn fmt(decimal: char, thousands: Option<char>, cur: &[(&str, &str)]) -> NumberFormat {
        let mut currencies: Vec<(String, String)> =
            cur.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
        currencies.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        NumberFormat { decimal, thousands, currencies }
    }

    fn amount(cents: i64, cur: Option<&str>) -> Result<Amount, AmountError> {
        Ok(Amount { value: Money::from_cents(cents), currency: cur.map(str::to_owned) })
    }

    #[test]
    fn the_three_number_formats() {
        let a = fmt(',', Some('.'), &[("€", "EUR"), ("EUR", "EUR")]);
        let b = fmt('.', Some(','), &[("$", "USD"), ("USD", "USD")]);
        let c = fmt(',', Some('.'), &[("EUR", "EUR")]);
        assert_eq!(a.parse("€ 1.234,56"), amount(123456, Some("EUR")));
        assert_eq!(a.parse("€ 4.243.000,00"), amount(424300000, Some("EUR")));
        assert_eq!(a.parse("€\u{a0}0,00"), amount(0, Some("EUR")));
        assert_eq!(b.parse("$1,234.56"), amount(123456, Some("USD")));
        assert_eq!(b.parse("$18,208,609.70"), amount(1820860970, Some("USD")));
        assert_eq!(b.parse("$343.23"), amount(34323, Some("USD")));
        assert_eq!(c.parse("1.234,56 EUR"), amount(123456, Some("EUR")));
        assert_eq!(c.parse("1.234.702,85\nEUR"), amount(123470285, Some("EUR")));
        assert_eq!(c.parse("809,85"), amount(80985, None));
    }

    #[test]
    fn amount_edge_cases() {
        let a = fmt(',', Some('.'), &[("€", "EUR"), ("EUR", "EUR")]);
        let b = fmt('.', Some(','), &[("$", "USD"), ("£", "GBP")]);
        assert_eq!(a.parse("1234,5"), amount(123450, None), "ungrouped, one decimal");
        assert_eq!(a.parse("1.234"), amount(123400, None), "a group, no decimals");
        assert_eq!(b.parse("-$5.00"), amount(-500, Some("USD")));
        assert_eq!(b.parse("($5.00)"), amount(-500, Some("USD")));
        assert_eq!(b.parse("$ 1 234.00"), amount(123400, Some("USD")), "spaces are ignored");
        assert_eq!(b.parse("$"), Err(AmountError::Empty));
        assert_eq!(b.parse("$£5"), Err(AmountError::MixedCurrency));
        assert_eq!(b.parse("1,23.00"), Err(AmountError::Format));
        assert_eq!(b.parse("1234,567.00"), Err(AmountError::Format));
        assert_eq!(b.parse("1,234."), Err(AmountError::Format));
        assert_eq!(b.parse("1.2.3"), Err(AmountError::Format));
        assert_eq!(b.parse("1.234"), Err(AmountError::Precision));
        assert_eq!(b.parse("12a"), Err(AmountError::Format));
        assert_eq!(b.parse("--5"), Err(AmountError::Format));
        assert_eq!(b.parse("99,999,999,999,999,999.00"), Err(AmountError::Overflow));
        let none = fmt('.', None, &[("CHF", "CHF")]);
        assert_eq!(none.parse("CHF 1234.50"), amount(123450, Some("CHF")));
        assert_eq!(none.parse("1,234.50"), Err(AmountError::Format));
        assert!(a.is_currency("EUR") && a.is_currency("€") && !a.is_currency("USD"));
        assert_eq!(a.only_currency(), Some("EUR"));
        assert_eq!(b.only_currency(), None);
    }

    #[test]
    fn the_three_date_formats() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 1);
        assert_eq!(parse_date("01 Dec 2026", &["%d %b %Y".into()]), d);
        assert_eq!(parse_date("12/01/2026", &["%m/%d/%Y".into()]), d);
        assert_eq!(parse_date("01.12.2026", &["%d.%m.%Y".into()]), d);
        assert_eq!(parse_date(" 01  Dec\u{a0}2026 ", &["%d %b %Y".into()]), d, "whitespace is normalised");
        assert_eq!(parse_date("1.12.2026", &["%d.%m.%Y".into()]), d);
        assert_eq!(parse_date("01.12.2026", &["%m/%d/%Y".into(), "%d.%m.%Y".into()]), d, "formats in order");
        assert_eq!(parse_date("13/01/2026", &["%m/%d/%Y".into()]), None);
        assert_eq!(parse_date("31 Feb 2026", &["%d %b %Y".into()]), None);
        assert_eq!(parse_date("01 Dec 2026 extra", &["%d %b %Y".into()]), None);
    }

    #[test]
    fn locate_follows_indentation() {
        let src = "a:\n  b: 1\n  c:\n    - x: 1\n    - x: 2\n      y: 3\nd: {e: 1}\n";
        assert_eq!(locate(src, "a"), Some(1));
        assert_eq!(locate(src, "a.c"), Some(3));
        assert_eq!(locate(src, "a.c[1]"), Some(5));
        assert_eq!(locate(src, "a.c[1].y"), Some(6));
        assert_eq!(locate(src, "d.e"), Some(7));
        assert_eq!(locate(src, "z"), None);
    }
}
