//! `pipeline-extract`: turns an accepted insurance-quote PDF into a validated [`Quote`].
//!
//! The steps, each its own module:
//! - [`pdf`]: bounded, panic-free text with positions (the only module that touches the PDF library);
//! - [`rules`]: per-carrier layouts as YAML data (`rules/*.yaml`, compiled in; or a folder at run time);
//! - the table reader: the coverage table from word positions, robust to wrapped and vertically centred cells and
//!   to tables that continue on the next page;
//! - [`quote`]: the record, exact [`money`], and the checks it must pass;
//! - [`cli`]: `text`, `quote` and `bench` commands for people, the robustness corpus and the benchmark.
//!
//! [`extract_quote`] runs them all. Every error has a fixed code and is permanent: the same file fails the same way.
#![deny(missing_docs)]

pub mod cli;
mod extract;
pub mod handler;
mod lines;
pub mod money;
pub mod pdf;
pub mod quote;
pub mod rules;
mod table;

pub use extract::{ExtractError, Extracted, extract_from_words, extract_quote};
pub use money::Money;
pub use pdf::{Limits, PdfError};
pub use quote::{Coverage, Quote, ValidationError, validate};
pub use rules::{RuleSet, RulesError};
