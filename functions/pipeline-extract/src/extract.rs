//! From PDF bytes to a validated [`Quote`]: words, layout, fields, table, checks.

use chrono::NaiveDate;
use palisade_shared::error::{Class, Classify};

use crate::lines::{Line, find_ci, lines, starts_with_ci};
use crate::money::Money;
use crate::pdf::{self, Limits, Page, PdfError};
use crate::quote::{Coverage, Quote, ValidationError, validate};
use crate::rules::{AmountError, CoverageField, FieldRule, Layout, RuleSet};
use crate::table;

/// A quote and the layout it was read with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Extracted {
    /// The rules file that matched (its stem, e.g. `A`).
    pub layout: String,
    /// The quote.
    pub quote: Quote,
}

/// Why a quote could not be extracted. Every variant is permanent: the same file fails the same way. Messages
/// name fields, never their values.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The PDF itself could not be read.
    #[error(transparent)]
    Pdf(#[from] PdfError),
    /// No rules file describes this document.
    #[error("no layout matches this document")]
    NoLayoutMatched,
    /// More than one rules file describes it; their `match` phrases need to tell them apart.
    #[error("the document matches more than one layout: {}", .0.join(", "))]
    AmbiguousLayout(Vec<String>),
    /// A field's label (or pattern, or the table header) was not found.
    #[error("{field} not found")]
    MissingField {
        /// Field path, e.g. `quote_number` or `coverages`.
        field: String,
    },
    /// A field was found but its value is not usable.
    #[error("{field}: {reason}")]
    BadValue {
        /// Field path, e.g. `effective_date` or `coverages[3].premium`.
        field: String,
        /// Why, from a fixed list.
        reason: &'static str,
    },
    /// The quote was read but fails validation.
    #[error("invalid quote: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ValidationError>),
}

impl Classify for ExtractError {
    fn class(&self) -> Class {
        Class::Permanent
    }

    fn code(&self) -> &'static str {
        match self {
            ExtractError::Pdf(e) => e.code(),
            ExtractError::NoLayoutMatched => "no_layout_matched",
            ExtractError::AmbiguousLayout(_) => "ambiguous_layout",
            ExtractError::MissingField { .. } => "missing_field",
            ExtractError::BadValue { .. } => "bad_value",
            ExtractError::Invalid(_) => "invalid_quote",
        }
    }
}

/// Reads a quote PDF with the layout that matches it and validates the result.
pub fn extract_quote(pdf: &[u8], rules: &RuleSet, limits: &Limits) -> Result<Extracted, ExtractError> {
    let pages = pdf::words(pdf, limits)?;
    extract_from_words(&pages, rules)
}

/// [`extract_quote`] after the PDF step, for callers (and tests) that already have the words.
pub fn extract_from_words(pages: &[Page], rules: &RuleSet) -> Result<Extracted, ExtractError> {
    let ls = lines(pages.iter().flat_map(|p| &p.words));
    let layout = match_layout(&ls, rules)?;
    let quote = read_quote(layout, pages, &ls)?;
    validate(&quote).map_err(ExtractError::Invalid)?;
    Ok(Extracted { layout: layout.name.clone(), quote })
}

fn match_layout<'r>(ls: &[Line<'_>], rules: &'r RuleSet) -> Result<&'r Layout, ExtractError> {
    let text = ls.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n").to_lowercase();
    let found: Vec<&Layout> = rules.layouts().iter().filter(|l| l.matches(&text)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(ExtractError::NoLayoutMatched),
        many => Err(ExtractError::AmbiguousLayout(many.iter().map(|l| l.name.clone()).collect())),
    }
}

fn bad(field: impl Into<String>, reason: &'static str) -> ExtractError {
    ExtractError::BadValue { field: field.into(), reason }
}

fn read_quote(layout: &Layout, pages: &[Page], ls: &[Line<'_>]) -> Result<Quote, ExtractError> {
    let f = &layout.fields;
    let labels: Vec<&str> =
        [&f.quote_number, &f.insured_name, &f.line_of_business, &f.effective_date, &f.expiry_date, &f.total_premium]
            .into_iter()
            .chain(f.currency.as_ref())
            .flat_map(|r| match r {
                FieldRule::Label { labels, .. } => labels.iter().map(String::as_str).collect(),
                _ => Vec::new(),
            })
            .collect();
    let get = |name: &str, rule: &FieldRule| field(ls, rule, &labels, name);

    let quote_number = get("quote_number", &f.quote_number)?;
    let insured_name = get("insured_name", &f.insured_name)?;
    let line_of_business = get("line_of_business", &f.line_of_business)?;
    let date = |name: &str, rule: &FieldRule| -> Result<NaiveDate, ExtractError> {
        let v = get(name, rule)?;
        crate::rules::parse_date(&v, &layout.dates).ok_or_else(|| bad(name, "not a date in the layout's formats"))
    };
    let effective_date = date("effective_date", &f.effective_date)?;
    let expiry_date = date("expiry_date", &f.expiry_date)?;

    let mut currencies: Vec<String> = Vec::new();
    let mut amount = |name: &str, text: &str| -> Result<Money, ExtractError> {
        let a = layout.numbers.parse(text).map_err(|e| bad(name, amount_reason(e)))?;
        if let Some(c) = a.currency {
            if !currencies.contains(&c) {
                currencies.push(c);
            }
        }
        Ok(a.value)
    };
    let total_text = get("total_premium", &f.total_premium)?;
    let total_premium = amount("total_premium", &total_text)?;

    let rows = table::read(pages, &layout.table, &layout.numbers)
        .ok_or_else(|| ExtractError::MissingField { field: "coverages".into() })?;
    let col = |field: CoverageField| layout.table.columns.iter().position(|c| c.field == field).unwrap_or(0);
    let (name_c, limit_c, deductible_c, premium_c) = (
        col(CoverageField::Name),
        col(CoverageField::Limit),
        col(CoverageField::Deductible),
        col(CoverageField::Premium),
    );
    let mut coverages = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let cell = |c: usize| row.cells.get(c).map(String::as_str).unwrap_or("");
        coverages.push(Coverage {
            name: cell(name_c).to_owned(),
            limit: amount(&format!("coverages[{i}].limit"), cell(limit_c))?,
            deductible: amount(&format!("coverages[{i}].deductible"), cell(deductible_c))?,
            premium: amount(&format!("coverages[{i}].premium"), cell(premium_c))?,
        });
    }

    let currency = match &f.currency {
        Some(rule) => {
            let v = get("currency", rule)?;
            let iso = layout.numbers.iso(&v).ok_or_else(|| bad("currency", "not a known currency"))?;
            if currencies.iter().any(|c| *c != iso) {
                return Err(bad("currency", "amounts are in another currency"));
            }
            iso
        }
        None => match currencies.as_slice() {
            [one] => one.clone(),
            [] => layout
                .numbers
                .only_currency()
                .map(str::to_owned)
                .ok_or_else(|| ExtractError::MissingField { field: "currency".into() })?,
            _ => return Err(bad("currency", "amounts in more than one currency")),
        },
    };

    Ok(Quote {
        quote_number,
        insured_name,
        line_of_business,
        effective_date,
        expiry_date,
        currency,
        total_premium,
        coverages,
    })
}

fn amount_reason(e: AmountError) -> &'static str {
    match e {
        AmountError::Empty => "no amount",
        AmountError::Format => "not an amount in the layout's number format",
        AmountError::Precision => "more than two decimal places",
        AmountError::Overflow => "amount too large",
        AmountError::MixedCurrency => "more than one currency in one amount",
    }
}

/// Whether a line reads like the start of another labelled field (`Address: ...`), which ends a wrapped value.
fn looks_like_label(text: &str) -> bool {
    match text.find(':') {
        Some(i) => {
            let head = &text[..i];
            !head.is_empty() && head.split_whitespace().count() <= 4 && !head.chars().any(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A field's text: a constant, the text after a label (with its continuation lines), or a pattern's capture.
fn field(ls: &[Line<'_>], rule: &FieldRule, all_labels: &[&str], name: &str) -> Result<String, ExtractError> {
    let missing = || ExtractError::MissingField { field: name.to_owned() };
    match rule {
        FieldRule::Constant(c) => Ok(c.clone()),
        FieldRule::Pattern(re) => ls
            .iter()
            .find_map(|l| re.captures(&l.text).and_then(|c| c.get(1)).map(|m| m.as_str().trim().to_owned()))
            .filter(|v| !v.is_empty())
            .ok_or_else(missing),
        FieldRule::Label { labels, pattern, max_lines } => {
            let value = labelled(ls, labels, all_labels, *max_lines).ok_or_else(missing)?;
            let value = match pattern {
                Some(re) => re
                    .captures(&value)
                    .and_then(|c| c.get(1))
                    .map(|m| m.as_str().trim().to_owned())
                    .ok_or_else(|| bad(name, "does not match the field's pattern"))?,
                None => value,
            };
            if value.is_empty() { Err(missing()) } else { Ok(value) }
        }
    }
}

fn labelled(ls: &[Line<'_>], labels: &[String], all_labels: &[&str], max_lines: usize) -> Option<String> {
    // A label that starts a line wins over one inside a line (`Insured:` vs `Named Insured:`).
    let hit = labels.iter().find_map(|label| {
        ls.iter()
            .position(|l| starts_with_ci(&l.text, label))
            .map(|i| (i, find_ci(&ls[i].text, label).map_or(0, |r| r.1)))
            .or_else(|| ls.iter().enumerate().find_map(|(i, l)| find_ci(&l.text, label).map(|r| (i, r.1))))
    })?;
    let (mut i, end) = hit;
    let line = &ls[i];
    let mut value = line.text[end..].trim().to_owned();
    let mut value_x = line.word_at(end).map(|k| line.words[k].x0);
    let label_x = line.x0();
    if value.is_empty() {
        if let Some(block) = beside(ls, i, all_labels, max_lines) {
            return Some(block);
        }
        // The value sits on the line below the label.
        let next = ls.get(i + 1).filter(|n| n.page == line.page && line.y - n.y <= 2.0 * line.size)?;
        if looks_like_label(&next.text) {
            return None;
        }
        value = next.text.clone();
        value_x = Some(next.x0());
        i += 1;
    }
    let mut taken = 1;
    while taken < max_lines {
        let (prev, Some(next)) = (&ls[i], ls.get(i + 1)) else { break };
        let aligned = |x: f32| (next.x0() - x).abs() <= 0.3 * next.size;
        let continues = next.page == prev.page
            && prev.y - next.y <= PITCH_LINES * prev.size.max(next.size)
            && (value_x.is_some_and(aligned) || aligned(label_x))
            && !looks_like_label(&next.text)
            && !all_labels.iter().any(|l| starts_with_ci(&next.text, l));
        if !continues {
            break;
        }
        value.push(' ');
        value.push_str(&next.text);
        i += 1;
        taken += 1;
    }
    Some(value)
}

/// The value of a label that stands alone on its line, in a column to its right: a label cell vertically centred
/// against a value that wraps puts the value's lines above and below the label's. Takes the value-column line
/// nearest the label and grows it up and down over closely spaced lines, up to `max_lines`.
fn beside(ls: &[Line<'_>], i: usize, all_labels: &[&str], max_lines: usize) -> Option<String> {
    let label = &ls[i];
    let (size, right_of) = (label.size, label.words.last()?.x1);
    let reach = 1.4 * size * max_lines as f32;
    let cands: Vec<usize> = (0..ls.len())
        .filter(|&j| {
            let l = &ls[j];
            j != i
                && l.page == label.page
                && (l.y - label.y).abs() <= reach
                && l.x0() >= right_of
                && !looks_like_label(&l.text)
                && !all_labels.iter().any(|lab| starts_with_ci(&l.text, lab))
        })
        .collect();
    // `cands` is in line order (top to bottom); start from the one nearest the label.
    let (mut lo, _) = cands
        .iter()
        .enumerate()
        .min_by(|a, b| (ls[*a.1].y - label.y).abs().total_cmp(&(ls[*b.1].y - label.y).abs()))?;
    if (ls[cands[lo]].y - label.y).abs() > PITCH_LINES * size {
        return None;
    }
    let mut hi = lo;
    let close = |a: usize, b: usize| ls[cands[a]].y - ls[cands[b]].y <= PITCH_LINES * size;
    while hi + 1 - lo < max_lines {
        let up = lo > 0 && close(lo - 1, lo);
        let down = hi + 1 < cands.len() && close(hi, hi + 1);
        let dist = |k: usize| (ls[cands[k]].y - label.y).abs();
        match (up, down) {
            (true, true) if dist(lo - 1) <= dist(hi + 1) => lo -= 1,
            (true, false) => lo -= 1,
            (_, true) => hi += 1,
            (false, false) => break,
        }
    }
    Some(cands[lo..=hi].iter().map(|&j| ls[j].text.as_str()).collect::<Vec<_>>().join(" "))
}

/// Lines of one wrapped value are at most this many font sizes apart.
const PITCH_LINES: f32 = 1.4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::tests::w;
    use crate::pdf::Word;

    fn rules() -> RuleSet {
        RuleSet::embedded().unwrap()
    }

    /// A layout-A quote as words: header block, a table with a wrapped name, totals.
    fn quote_a() -> Vec<Word> {
        vec![
            w("Northwind", 107.0, 720.0),
            w("Mutual", 160.0, 720.0),
            w("Commercial", 107.0, 690.0),
            w("Property", 165.0, 690.0),
            w("Quotation", 215.0, 690.0),
            w("Quote", 112.0, 662.0),
            w("Number:", 145.0, 662.0),
            w("NWM-2026-244598", 245.0, 662.0),
            w("Insured:", 112.0, 646.0),
            w("Łódzka", 245.0, 646.0),
            w("Spółdzielnia", 280.0, 646.0),
            w("Spożywcze", 245.0, 634.9),
            w("Sp.", 300.0, 634.9),
            w("Address:", 112.0, 619.0),
            w("12", 245.0, 619.0),
            w("Quay", 260.0, 619.0),
            w("Policy", 112.0, 603.4),
            w("Period:", 145.0, 603.4),
            w("21", 245.0, 603.4),
            w("Dec", 258.0, 603.4),
            w("2026", 278.0, 603.4),
            w("to", 300.0, 603.4),
            w("21", 312.0, 603.4),
            w("Dec", 325.0, 603.4),
            w("2027", 345.0, 603.4),
            w("Schedule", 107.0, 576.0),
            w("of", 150.0, 576.0),
            w("Cover", 162.0, 576.0),
            w("Coverage", 112.0, 550.0),
            w("Limit", 304.0, 550.0),
            w("Deductible", 350.0, 550.0),
            w("Premium", 432.0, 550.0),
            w("Employee", 112.0, 533.7),
            w("Dishonesty", 160.0, 533.7),
            w("€", 256.0, 527.7),
            w("2.537.000,00", 265.0, 527.7),
            w("€", 367.0, 527.7),
            w("228,00", 375.0, 527.7),
            w("€", 438.0, 527.7),
            w("935,98", 446.0, 527.7),
            w("(Dublin)", 112.0, 522.4),
            w("Glass", 112.0, 505.0),
            w("€", 256.0, 505.0),
            w("1.000,00", 265.0, 505.0),
            w("€", 367.0, 505.0),
            w("0,00", 375.0, 505.0),
            w("€", 438.0, 505.0),
            w("64,02", 446.0, 505.0),
            w("Net", 107.0, 480.0),
            w("Premium:", 125.0, 480.0),
            w("€", 170.0, 480.0),
            w("1.000,00", 178.0, 480.0),
            w("Total", 107.0, 460.0),
            w("Premium:", 135.0, 460.0),
            w("€", 180.0, 460.0),
            w("1.190,00", 188.0, 460.0),
        ]
    }

    fn pages(words: Vec<Word>) -> Vec<Page> {
        vec![Page { number: 1, words }]
    }

    #[test]
    fn a_quote_from_hand_made_words() {
        let got = extract_from_words(&pages(quote_a()), &rules()).unwrap();
        assert_eq!(got.layout, "A");
        let q = got.quote;
        assert_eq!(q.quote_number, "NWM-2026-244598");
        assert_eq!(
            q.insured_name, "Łódzka Spółdzielnia Spożywcze Sp.",
            "wrapped in the value column, stops at Address:"
        );
        assert_eq!(q.line_of_business, "Commercial Property");
        assert_eq!(q.effective_date.to_string(), "2026-12-21");
        assert_eq!(q.expiry_date.to_string(), "2027-12-21");
        assert_eq!(q.currency, "EUR");
        assert_eq!(q.total_premium.to_string(), "1190.00");
        let names: Vec<_> = q.coverages.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Employee Dishonesty (Dublin)", "Glass"]);
        assert_eq!(q.coverages[0].limit.to_string(), "2537000.00");
        assert_eq!(q.coverages[1].deductible, Money::ZERO);
    }

    fn without(words: Vec<Word>, drop: &[&str]) -> Vec<Word> {
        words.into_iter().filter(|w| !drop.contains(&w.text.as_str())).collect()
    }

    fn replace(words: Vec<Word>, from: &str, to: &str) -> Vec<Word> {
        words.into_iter().map(|w| if w.text == from { Word { text: to.into(), ..w } } else { w }).collect()
    }

    #[test]
    fn each_failure_is_named_without_its_value() {
        let err = |words: Vec<Word>| extract_from_words(&pages(words), &rules()).unwrap_err();

        let e = err(without(quote_a(), &["Northwind"]));
        assert!(matches!(e, ExtractError::NoLayoutMatched), "{e}");
        assert_eq!(e.code(), "no_layout_matched");

        let e = err(without(quote_a(), &["Number:"]));
        assert!(matches!(&e, ExtractError::MissingField { field } if field == "quote_number"), "{e}");

        let e = err(replace(quote_a(), "2027", "2O27"));
        assert!(matches!(&e, ExtractError::BadValue { field, .. } if field == "expiry_date"), "{e}");
        assert_eq!(e.to_string(), "expiry_date: not a date in the layout's formats");

        let e = err(replace(quote_a(), "64,02", "64,0,2"));
        assert!(matches!(&e, ExtractError::BadValue { field, .. } if field == "coverages[1].premium"), "{e}");
        assert!(!e.to_string().contains("64"), "{e}");

        let e = err(without(quote_a(), &["Deductible"]));
        assert!(matches!(&e, ExtractError::MissingField { field } if field == "coverages"), "{e}");

        let e = err(replace(quote_a(), "1.190,00", "9.190,00"));
        assert!(matches!(&e, ExtractError::Invalid(v) if v == &[ValidationError::PremiumsBelowHalfTotal]), "{e}");
        assert_eq!(e.code(), "invalid_quote");
        assert_eq!(e.class(), Class::Permanent);

        let e = err(replace(quote_a(), "Policy", "Validity"));
        assert!(matches!(&e, ExtractError::MissingField { field } if field == "effective_date"), "{e}");
    }

    #[test]
    fn two_layouts_matching_is_an_error() {
        let mut words = quote_a();
        words.extend([w("Alpenland", 107.0, 100.0), w("Versicherung", 160.0, 100.0), w("AG", 230.0, 100.0)]);
        words.extend([w("Angebotsnummer:", 107.0, 80.0)]);
        let e = extract_from_words(&pages(words), &rules()).unwrap_err();
        assert!(matches!(&e, ExtractError::AmbiguousLayout(l) if l == &["A", "C"]), "{e}");
    }

    #[test]
    fn labels_inside_a_line_and_values_below() {
        let ws = [
            w("Effective", 100.0, 700.0),
            w("Date:", 150.0, 700.0),
            w("01/30/2027", 180.0, 700.0),
            w("Expiration", 250.0, 700.0),
            w("Date:", 300.0, 700.0),
            w("01/30/2028", 330.0, 700.0),
            w("Insured:", 100.0, 680.0),
            w("Müller", 100.0, 669.0),
            w("GmbH", 140.0, 669.0),
        ];
        let ls = lines(&ws);
        let get = |label: &str, max: usize| labelled(&ls, &[label.to_owned()], &[], max);
        assert_eq!(get("Expiration Date:", 1).as_deref(), Some("01/30/2028"));
        assert_eq!(get("Effective Date:", 1).as_deref(), Some("01/30/2027 Expiration Date: 01/30/2028"));
        assert_eq!(get("Insured:", 1).as_deref(), Some("Müller GmbH"));
        assert_eq!(get("Date:", 1).as_deref(), Some("01/30/2027 Expiration Date: 01/30/2028"));
        assert_eq!(get("Nothing:", 1), None);
    }

    #[test]
    fn a_centred_label_beside_a_wrapped_value() {
        // Chromium centres the label cell against a two-line value: value lines above and below the label's.
        let ws = [
            w("Quote", 112.0, 662.0),
            w("Number:", 140.0, 662.0),
            w("NWM-1", 245.0, 662.0),
            w("Łódzka", 245.0, 646.2),
            w("Spółdzielnia", 280.0, 646.2),
            w("Insured:", 112.0, 640.2),
            w("Spożywcze", 245.0, 634.9),
            w("Sp.", 300.0, 634.9),
            w("Address:", 112.0, 619.2),
            w("12", 245.0, 619.2),
            w("Quay", 260.0, 619.2),
        ];
        let ls = lines(&ws);
        let get = |label: &str, max: usize| labelled(&ls, &[label.to_owned()], &[], max);
        assert_eq!(get("Insured:", 3).as_deref(), Some("Łódzka Spółdzielnia Spożywcze Sp."));
        assert_eq!(get("Insured:", 1).as_deref(), Some("Spożywcze Sp."), "one line: the nearest");
        assert_eq!(get("Address:", 3).as_deref(), Some("12 Quay"));
    }

    #[test]
    fn errors_are_permanent_with_fixed_codes() {
        let all = [
            (ExtractError::Pdf(PdfError::Encrypted), "pdf_encrypted"),
            (ExtractError::NoLayoutMatched, "no_layout_matched"),
            (ExtractError::AmbiguousLayout(vec!["A".into(), "B".into()]), "ambiguous_layout"),
            (ExtractError::MissingField { field: "x".into() }, "missing_field"),
            (ExtractError::BadValue { field: "x".into(), reason: "r" }, "bad_value"),
            (ExtractError::Invalid(vec![ValidationError::NoCoverages]), "invalid_quote"),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code);
            assert_eq!(e.class(), Class::Permanent);
        }
    }
}
