//! Every quote fixture (3 layouts x 3 producers x 4) extracted and compared field by field with its JSON, and
//! every broken fixture refused with the right error, quickly.
//!
//! `cargo test -p pipeline-extract --test fixtures -- --nocapture` also prints accuracy per layout and producer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_shared::error::{Class, Classify};
use pipeline_extract::{ExtractError, Limits, PdfError, RuleSet, extract_quote};
use serde_json::Value;

fn fixtures() -> PathBuf {
    // At run time: a test binary built for another checkout sharing the target directory must read this one's.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    Path::new(&dir).join("../../tests/fixtures")
}

/// `(field path, expected, got)` for every field that differs; `got` is `None` when missing.
fn diff(expected: &Value, got: &Value) -> (usize, Vec<(String, String, String)>) {
    let mut fields = 0;
    let mut out = Vec::new();
    let show = |v: Option<&Value>| v.map_or_else(|| "(missing)".to_owned(), Value::to_string);
    for (k, e) in expected.as_object().expect("fixture JSON is an object") {
        if k == "coverages" {
            let (e, g) = (e.as_array().expect("coverages"), got[k].as_array().cloned().unwrap_or_default());
            fields += 1;
            if e.len() != g.len() {
                out.push(("coverages.len()".into(), e.len().to_string(), g.len().to_string()));
            }
            for (i, ec) in e.iter().enumerate() {
                for (ck, ev) in ec.as_object().expect("coverage object") {
                    fields += 1;
                    let gv = g.get(i).and_then(|gc| gc.get(ck));
                    if gv != Some(ev) {
                        out.push((format!("coverages[{i}].{ck}"), ev.to_string(), show(gv)));
                    }
                }
            }
        } else {
            fields += 1;
            if got.get(k) != Some(e) {
                out.push((k.clone(), e.to_string(), show(got.get(k))));
            }
        }
    }
    (fields, out)
}

#[derive(Default)]
struct Tally {
    docs: usize,
    docs_ok: usize,
    fields: usize,
    fields_ok: usize,
}

impl Tally {
    fn add(&mut self, fields: usize, wrong: usize) {
        self.docs += 1;
        self.docs_ok += usize::from(wrong == 0);
        self.fields += fields;
        self.fields_ok += fields - wrong.min(fields);
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<12} {:>2}/{:<2} documents  {:>4}/{:<4} fields  {:6.2} %",
            self.docs_ok,
            self.docs,
            self.fields_ok,
            self.fields,
            100.0 * self.fields_ok as f64 / self.fields.max(1) as f64
        )
    }
}

#[test]
fn every_fixture_matches_its_json() {
    // GIVEN the embedded rules and every quote fixture
    let rules = RuleSet::embedded().expect("embedded rules");
    let dir = fixtures().join("quotes");
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/quotes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    pdfs.sort();
    assert_eq!(pdfs.len(), 36, "expected 36 quote fixtures in {}", dir.display());

    let mut by_layout: BTreeMap<String, Tally> = BTreeMap::new();
    let mut by_producer: BTreeMap<String, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    let mut failures = Vec::new();
    for pdf in &pdfs {
        let stem = pdf.file_stem().and_then(|s| s.to_str()).expect("name").to_owned();
        let mut parts = stem.split('-');
        let (layout, producer) = (parts.next().expect("layout").to_owned(), parts.next().expect("producer").to_owned());
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(pdf.with_extension("json")).expect("json"))
            .expect("valid json");

        // WHEN it is extracted
        let got = extract_quote(&std::fs::read(pdf).expect("pdf"), &rules, &Limits::quote());

        // THEN every field equals the JSON
        let (fields, wrong) = match &got {
            Ok(x) => {
                let (fields, d) = diff(&expected, &serde_json::to_value(&x.quote).expect("serialise"));
                if x.layout != layout {
                    failures.push(format!("{stem}: matched layout {} instead of {layout}", x.layout));
                }
                for (field, e, g) in &d {
                    failures.push(format!("{stem}: {field}: expected {e}, got {g}"));
                }
                (fields, d.len())
            }
            Err(e) => {
                failures.push(format!("{stem}: {e} [{}]", e.code()));
                let (fields, _) = diff(&expected, &Value::Null);
                (fields, fields)
            }
        };
        by_layout.entry(layout).or_default().add(fields, wrong);
        by_producer.entry(producer).or_default().add(fields, wrong);
        all.add(fields, wrong);
    }
    println!("\nfixture accuracy (fields compared: 7 scalars, the coverage count, 4 per coverage)");
    for (k, t) in &by_layout {
        println!("{}", t.line(&format!("layout {k}")));
    }
    for (k, t) in &by_producer {
        println!("{}", t.line(k));
    }
    println!("{}", all.line("all"));
    assert!(failures.is_empty(), "{} differences:\n{}", failures.len(), failures.join("\n"));
}

/// Extracts a broken input and checks its error code; everything must be permanent and fast.
fn refused(bytes: &[u8], code: &str) {
    let rules = RuleSet::embedded().expect("embedded rules");
    let started = Instant::now();
    let err = extract_quote(bytes, &rules, &Limits::quote()).expect_err("must be refused");
    let took = started.elapsed();
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(err.class(), Class::Permanent);
    assert!(matches!(err, ExtractError::Pdf(_)), "{err}");
    // Generous for unoptimised test builds; a release build takes well under a second.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

fn broken(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("broken").join(name)).expect("broken fixture")
}

#[test]
fn a_truncated_file_is_damaged() {
    refused(&broken("truncated.pdf"), "pdf_damaged");
}

#[test]
fn a_password_protected_file_is_encrypted() {
    refused(&broken("encrypted.pdf"), "pdf_encrypted");
}

#[test]
fn other_formats_are_not_pdfs() {
    refused(&broken("not-a-pdf.pdf"), "not_a_pdf");
    refused(&broken("zip-bomb.zip.pdf"), "not_a_pdf");
    refused(&broken("empty.pdf"), "not_a_pdf");
}

#[test]
fn a_header_alone_is_damaged() {
    refused(&broken("header-only.pdf"), "pdf_damaged");
}

#[test]
fn a_deflate_bomb_is_refused_before_it_inflates() {
    // 1 GiB of content stream from 1 MB: the guard counts it without allocating and stops at the limit.
    refused(&broken("deflate-bomb.pdf"), "pdf_stream_too_large");
}

#[test]
fn an_oversized_file_is_refused_unread() {
    // A real quote padded past the limit (no large file is stored in the repository).
    let mut big = std::fs::read(fixtures().join("quotes/A-weasyprint-0.pdf")).expect("fixture");
    big.resize(Limits::quote().max_input_bytes + 1, b' ');
    refused(&big, "pdf_too_large");
}

#[test]
fn a_scan_without_text_has_no_text_layer() {
    // A minimal valid one-page PDF whose page draws nothing.
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        "<< /Length 8 >>\nstream\n0 0 m S\n\nendstream",
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    refused(&pdf, "pdf_no_text");
    assert_eq!(pipeline_extract::pdf::text(&pdf, &Limits::document()), Err(PdfError::NoText));
}

#[test]
fn too_many_pages_are_refused_before_reading_them() {
    let quote = std::fs::read(fixtures().join("quotes/A-chromium-3.pdf")).expect("fixture");
    let limits = Limits { max_pages: 1, ..Limits::quote() };
    let err = pipeline_extract::pdf::words(&quote, &limits).expect_err("two pages");
    assert_eq!(err, PdfError::TooManyPages { pages: 2, limit: 1 });
}
