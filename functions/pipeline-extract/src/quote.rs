//! The quote record the pipeline produces, and the checks it must pass before anything downstream trusts it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// One insurance quote, as extracted from the carrier's PDF. The JSON form (ISO dates, decimal-string money) is
/// the schema of `tests/fixtures/quotes/*.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// The carrier's quote reference.
    pub quote_number: String,
    /// Who is insured.
    pub insured_name: String,
    /// Line of business, as the carrier names it.
    pub line_of_business: String,
    /// First day of cover.
    pub effective_date: NaiveDate,
    /// Day the cover ends.
    pub expiry_date: NaiveDate,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// What the insured pays: the net premium (the coverages' premiums) plus taxes.
    pub total_premium: Money,
    /// The schedule of cover, in document order.
    pub coverages: Vec<Coverage>,
}

/// One row of the schedule of cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Coverage name, with wrapped cell lines joined by single spaces.
    pub name: String,
    /// Limit of insurance.
    pub limit: Money,
    /// Deductible (zero when none).
    pub deductible: Money,
    /// Net premium for this coverage.
    pub premium: Money,
}

/// One reason a quote is not acceptable. Messages name fields and positions, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required text field is empty.
    #[error("{field} is empty")]
    Empty {
        /// Field path, e.g. `insured_name` or `coverages[2].name`.
        field: String,
    },
    /// The currency is not three capital letters.
    #[error("currency is not an ISO 4217 code")]
    BadCurrency,
    /// Cover would end before (or when) it starts.
    #[error("effective_date is not before expiry_date")]
    DatesOutOfOrder,
    /// No schedule of cover.
    #[error("the quote has no coverages")]
    NoCoverages,
    /// An amount below zero.
    #[error("{field} is negative")]
    Negative {
        /// Field path, e.g. `total_premium` or `coverages[0].limit`.
        field: String,
    },
    /// The coverage premiums add up to more than the total premium.
    #[error("the coverage premiums add up to more than total_premium")]
    PremiumsExceedTotal,
    /// The coverage premiums add up to less than half of the total premium (taxes are never that high, so rows
    /// were probably lost).
    #[error("the coverage premiums add up to less than half of total_premium")]
    PremiumsBelowHalfTotal,
    /// Two coverages share a name.
    #[error("coverages[{index}] has the same name as coverages[{first}]")]
    DuplicateCoverage {
        /// The later row.
        index: usize,
        /// The earlier row with that name.
        first: usize,
    },
}

impl ValidationError {
    /// Fixed code for logs, metrics and quarantine reasons.
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::Empty { .. } => "empty_field",
            ValidationError::BadCurrency => "bad_currency",
            ValidationError::DatesOutOfOrder => "dates_out_of_order",
            ValidationError::NoCoverages => "no_coverages",
            ValidationError::Negative { .. } => "negative_amount",
            ValidationError::PremiumsExceedTotal => "premiums_exceed_total",
            ValidationError::PremiumsBelowHalfTotal => "premiums_below_half_total",
            ValidationError::DuplicateCoverage { .. } => "duplicate_coverage",
        }
    }
}

/// Checks everything a quote must satisfy, reporting every problem at once.
pub fn validate(q: &Quote) -> Result<(), Vec<ValidationError>> {
    let mut errs = Vec::new();
    for (field, value) in [
        ("quote_number", &q.quote_number),
        ("insured_name", &q.insured_name),
        ("line_of_business", &q.line_of_business),
    ] {
        if value.trim().is_empty() {
            errs.push(ValidationError::Empty { field: field.to_owned() });
        }
    }
    if q.currency.len() != 3 || !q.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errs.push(ValidationError::BadCurrency);
    }
    if q.effective_date >= q.expiry_date {
        errs.push(ValidationError::DatesOutOfOrder);
    }
    if q.total_premium.is_negative() {
        errs.push(ValidationError::Negative { field: "total_premium".into() });
    }
    if q.coverages.is_empty() {
        errs.push(ValidationError::NoCoverages);
    }
    let mut seen: Vec<(String, usize)> = Vec::with_capacity(q.coverages.len());
    let mut sum: i128 = 0;
    for (i, c) in q.coverages.iter().enumerate() {
        if c.name.trim().is_empty() {
            errs.push(ValidationError::Empty { field: format!("coverages[{i}].name") });
        }
        for (what, m) in [("limit", c.limit), ("deductible", c.deductible), ("premium", c.premium)] {
            if m.is_negative() {
                errs.push(ValidationError::Negative { field: format!("coverages[{i}].{what}") });
            }
        }
        sum += i128::from(c.premium.cents());
        let key = c.name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        match seen.iter().find(|(k, _)| *k == key) {
            Some(&(_, first)) if !key.is_empty() => errs.push(ValidationError::DuplicateCoverage { index: i, first }),
            Some(_) => {}
            None => seen.push((key, i)),
        }
    }
    if !q.coverages.is_empty() {
        let total = i128::from(q.total_premium.cents());
        if sum > total {
            errs.push(ValidationError::PremiumsExceedTotal);
        } else if sum * 2 < total {
            errs.push(ValidationError::PremiumsBelowHalfTotal);
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn cov(name: &str, premium: &str) -> Coverage {
        Coverage { name: name.into(), limit: money("1000000"), deductible: money("0"), premium: money(premium) }
    }

    fn quote() -> Quote {
        Quote {
            quote_number: "NWM-2027-843950".into(),
            insured_name: "Łódź Textil S.A.".into(),
            line_of_business: "Commercial Property".into(),
            effective_date: NaiveDate::from_ymd_opt(2027, 1, 27).unwrap(),
            expiry_date: NaiveDate::from_ymd_opt(2028, 1, 27).unwrap(),
            currency: "EUR".into(),
            total_premium: money("119.00"),
            coverages: vec![cov("Flood", "60.00"), cov("Theft", "40.00")],
        }
    }

    fn codes(q: &Quote) -> Vec<&'static str> {
        match validate(q) {
            Ok(()) => vec![],
            Err(e) => e.iter().map(ValidationError::code).collect(),
        }
    }

    #[test]
    fn a_good_quote_passes() {
        // GIVEN premiums of 100.00 and a total of 119.00 (19 % tax)
        // THEN nothing is wrong
        assert_eq!(validate(&quote()), Ok(()));
        // AND the premiums may equal the total (no tax) or be exactly half of it
        let mut q = quote();
        q.total_premium = money("100.00");
        assert_eq!(validate(&q), Ok(()));
        q.total_premium = money("200.00");
        assert_eq!(validate(&q), Ok(()));
    }

    #[test]
    fn empty_fields_are_named() {
        let mut q = quote();
        q.quote_number = " ".into();
        q.insured_name = String::new();
        q.line_of_business = "\n".into();
        q.coverages[1].name = "  ".into();
        let errs = validate(&q).unwrap_err();
        let fields: Vec<_> = errs
            .iter()
            .map(|e| match e {
                ValidationError::Empty { field } => field.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(fields, ["quote_number", "insured_name", "line_of_business", "coverages[1].name"]);
        assert_eq!(errs[3].to_string(), "coverages[1].name is empty");
    }

    #[test]
    fn currency_must_be_iso() {
        for bad in ["", "eur", "EURO", "€", "E1R"] {
            let mut q = quote();
            q.currency = bad.into();
            assert_eq!(codes(&q), ["bad_currency"], "{bad:?}");
        }
    }

    #[test]
    fn dates_must_be_in_order() {
        let mut q = quote();
        q.expiry_date = q.effective_date;
        assert_eq!(codes(&q), ["dates_out_of_order"]);
        q.expiry_date = q.effective_date.pred_opt().unwrap();
        assert_eq!(codes(&q), ["dates_out_of_order"]);
    }

    #[test]
    fn at_least_one_coverage() {
        let mut q = quote();
        q.coverages.clear();
        assert_eq!(codes(&q), ["no_coverages"]);
    }

    #[test]
    fn amounts_are_not_negative() {
        let mut q = quote();
        q.coverages[0].limit = money("-1");
        q.coverages[1].deductible = money("-0.01");
        let errs = validate(&q).unwrap_err();
        assert_eq!(
            errs,
            [
                ValidationError::Negative { field: "coverages[0].limit".into() },
                ValidationError::Negative { field: "coverages[1].deductible".into() },
            ]
        );
        let mut q = quote();
        q.total_premium = money("-119");
        assert_eq!(codes(&q), ["negative_amount", "premiums_exceed_total"]);
        let mut q = quote();
        q.coverages[1].premium = money("-40");
        q.total_premium = money("20");
        assert_eq!(codes(&q), ["negative_amount"]);
    }

    #[test]
    fn premiums_add_up_to_between_half_and_all_of_the_total() {
        let mut q = quote();
        q.total_premium = money("99.99");
        assert_eq!(codes(&q), ["premiums_exceed_total"]);
        q.total_premium = money("200.01");
        assert_eq!(codes(&q), ["premiums_below_half_total"]);
    }

    #[test]
    fn coverage_names_are_unique() {
        let mut q = quote();
        q.coverages.push(cov("flood ", "0"));
        q.coverages.push(cov("Glass", "0"));
        q.coverages.push(cov("Theft", "0"));
        let errs = validate(&q).unwrap_err();
        assert_eq!(
            errs,
            [
                ValidationError::DuplicateCoverage { index: 2, first: 0 },
                ValidationError::DuplicateCoverage { index: 4, first: 1 },
            ]
        );
        assert_eq!(errs[0].to_string(), "coverages[2] has the same name as coverages[0]");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut q = quote();
        q.quote_number.clear();
        q.expiry_date = q.effective_date;
        q.coverages.clear();
        assert_eq!(codes(&q), ["empty_field", "dates_out_of_order", "no_coverages"]);
    }

    #[test]
    fn json_matches_the_fixture_schema() {
        let q = quote();
        let json = serde_json::to_string(&q).unwrap();
        assert!(json.contains(r#""effective_date":"2027-01-27""#), "{json}");
        assert!(json.contains(r#""total_premium":"119.00""#), "{json}");
        assert!(json.contains(r#""premium":"60.00""#), "{json}");
        assert_eq!(serde_json::from_str::<Quote>(&json).unwrap(), q);
    }
}
