//! PDF text, bounded and panic-free: the only module that touches the PDF library.
//!
//! Everything a customer uploads passes through here, so the wrapper assumes hostile input: the size is checked
//! before parsing, every FlateDecode stream is inflated once into a counting sink (no allocation) and the document is
//! refused when one inflates past [`Limits::max_stream_bytes`] (the library's own cap is 256 MB per stream, which is
//! memory we do not have), pages and output are bounded, and every call into the library runs under
//! `catch_unwind`. Errors carry fixed reasons only: never document text, never the library's own messages (which can
//! quote bytes of the file).
//!
//! Words come from the library's character path (positions of every glyph; about twice as fast as its span path),
//! except on pages where some glyph has no single-character mapping (ligatures such as `ff` come out as U+FFFD
//! there): those pages take the span path, which maps them.

use std::collections::HashSet;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pdf_oxide::PdfDocument;

/// Bounds on what one document may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_input_bytes: usize,
    /// Most pages accepted; a document with more is refused before any page is read.
    pub max_pages: usize,
    /// Most bytes one compressed stream may inflate to.
    pub max_stream_bytes: u64,
    /// Most bytes all compressed streams together may inflate to (bounds the time spent checking them).
    pub max_inflated_bytes: u64,
    /// Most bytes of text (for [`words`], text plus a fixed cost per word).
    pub max_text_bytes: usize,
    /// Wall-clock budget, checked between pages (a page already being read is not interrupted).
    pub max_duration: Option<Duration>,
}

impl Limits {
    /// For insurance quotes: a few pages, a few hundred kilobytes.
    pub fn quote() -> Self {
        Self {
            max_input_bytes: 20 * 1024 * 1024,
            max_pages: 50,
            max_stream_bytes: 64 * 1024 * 1024,
            max_inflated_bytes: 512 * 1024 * 1024,
            max_text_bytes: 8 * 1024 * 1024,
            max_duration: Some(Duration::from_secs(30)),
        }
    }

    /// For arbitrary documents (the `text` command): books, long reports.
    pub fn document() -> Self {
        Self {
            max_input_bytes: 256 * 1024 * 1024,
            max_pages: 10_000,
            max_stream_bytes: 64 * 1024 * 1024,
            max_inflated_bytes: 2 * 1024 * 1024 * 1024,
            max_text_bytes: 64 * 1024 * 1024,
            max_duration: None,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::quote()
    }
}

/// Why a document gave no text. Messages are fixed: they never quote the document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    /// No `%PDF-` header in the first 1024 bytes (this includes empty files).
    #[error("not a PDF: no %PDF- header in the first 1024 bytes")]
    NotPdf,
    /// Larger than [`Limits::max_input_bytes`].
    #[error("the file has {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Encrypted with a user password that is not empty.
    #[error("the PDF is encrypted and needs a password")]
    Encrypted,
    /// The structure cannot be read.
    #[error("the PDF is damaged or unreadable ({stage}: {reason})")]
    Damaged {
        /// What we were doing: `open`, `decrypt`, `page tree`, `page text`.
        stage: &'static str,
        /// What went wrong, from a fixed list.
        reason: &'static str,
    },
    /// More pages than [`Limits::max_pages`].
    #[error("the PDF has {pages} pages, over the limit of {limit}")]
    TooManyPages {
        /// Page count.
        pages: usize,
        /// The limit.
        limit: usize,
    },
    /// A compressed stream (or all of them together) inflates past the limit: a decompression bomb, or an image
    /// far larger than any quote needs.
    #[error("a compressed stream inflates to more than {limit} bytes")]
    StreamTooLarge {
        /// The limit that was passed.
        limit: u64,
    },
    /// More text than [`Limits::max_text_bytes`].
    #[error("the text is longer than {limit} bytes")]
    TextTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Reading took longer than [`Limits::max_duration`].
    #[error("reading the PDF took longer than {limit_secs} s")]
    TooSlow {
        /// The budget in seconds.
        limit_secs: u64,
    },
    /// No page has any text (a scan without a text layer, or no pages at all).
    #[error("the PDF has no text layer")]
    NoText,
    /// The PDF library panicked; the panic was contained.
    #[error("the PDF library failed on this file ({stage})")]
    Panicked {
        /// What we were doing.
        stage: &'static str,
    },
}

impl PdfError {
    /// Fixed code for logs, metrics and quarantine reasons.
    pub fn code(&self) -> &'static str {
        match self {
            PdfError::NotPdf => "not_a_pdf",
            PdfError::TooLarge { .. } => "pdf_too_large",
            PdfError::Encrypted => "pdf_encrypted",
            PdfError::Damaged { .. } => "pdf_damaged",
            PdfError::TooManyPages { .. } => "pdf_too_many_pages",
            PdfError::StreamTooLarge { .. } => "pdf_stream_too_large",
            PdfError::TextTooLarge { .. } => "pdf_text_too_large",
            PdfError::TooSlow { .. } => "pdf_too_slow",
            PdfError::NoText => "pdf_no_text",
            PdfError::Panicked { .. } => "pdf_library_panic",
        }
    }
}

/// One word with its box, in PDF user space: points, origin at the bottom left, y growing upwards.
#[derive(Clone, Debug, PartialEq)]
pub struct Word {
    /// The text (never contains whitespace).
    pub text: String,
    /// Left edge.
    pub x0: f32,
    /// Right edge.
    pub x1: f32,
    /// Baseline.
    pub y0: f32,
    /// Top (baseline plus font size).
    pub y1: f32,
    /// Font size in points.
    pub font_size: f32,
    /// Page number, from 1.
    pub page: usize,
}

/// The words of one page, top to bottom, then left to right.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Page {
    /// Page number, from 1.
    pub number: usize,
    /// Its words.
    pub words: Vec<Word>,
}

/// Positioned words of every page.
pub fn words(bytes: &[u8], limits: &Limits) -> Result<Vec<Page>, PdfError> {
    let started = Instant::now();
    let (doc, count) = open(bytes, limits)?;
    let mut pages = Vec::with_capacity(count);
    let mut budget = limits.max_text_bytes;
    let mut any = false;
    for index in 0..count {
        check_time(started, limits)?;
        let words = page_words_of(&doc, index)?;
        spend(&mut budget, &words, limits)?;
        any |= !words.is_empty();
        pages.push(Page { number: index + 1, words });
    }
    if !any {
        return Err(no_text(bytes));
    }
    Ok(pages)
}

/// Plain text of every page as the pipeline reads it (the words of [`words`], in lines), pages separated by form
/// feeds (`\f`). A page the library cannot read is left empty; the document fails only when no page can be read.
/// Being the production path, it is what the robustness corpus grades, and the binary carries no second extractor.
pub fn text(bytes: &[u8], limits: &Limits) -> Result<String, PdfError> {
    let started = Instant::now();
    let (doc, count) = open(bytes, limits)?;
    let mut out = String::new();
    let mut budget = limits.max_text_bytes;
    let mut failed = 0usize;
    let mut first_failure = None;
    for index in 0..count {
        check_time(started, limits)?;
        if index > 0 {
            out.push('\x0c');
        }
        match page_words_of(&doc, index) {
            Ok(words) => {
                spend(&mut budget, &words, limits)?;
                for line in crate::lines::lines(&words) {
                    out.push_str(&line.text);
                    out.push('\n');
                }
            }
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert(e);
            }
        }
    }
    if count > 0 && failed == count {
        return Err(first_failure.unwrap_or(PdfError::Damaged { stage: "page text", reason: "unreadable" }));
    }
    if out.chars().all(|c| c.is_whitespace()) {
        return Err(no_text(bytes));
    }
    Ok(out)
}

/// The words of one page.
fn page_words_of(doc: &PdfDocument, index: usize) -> Result<Vec<Word>, PdfError> {
    // (The filtered variant with no filters is the same extraction without the library's per-page cache,
    // which would clone every character once more and keep them all until the document is dropped.)
    let chars = guarded("page text", || doc.extract_chars_filtered(index, HashSet::new(), HashSet::new()))?
        .map_err(|e| PdfError::Damaged { stage: "page text", reason: reason(&e) })?;
    // The character path is the fast one, but it cannot map glyphs that stand for several characters
    // (ligatures such as `ff`); the span path can, so pages with unmapped glyphs take it.
    let glyphs = if chars.iter().any(|c| c.char == '\u{FFFD}') {
        let config = pdf_oxide::extractors::SpanMergingConfig::default();
        let spans = guarded("page text", || doc.extract_spans_with_config(index, config))?
            .map_err(|e| PdfError::Damaged { stage: "page text", reason: reason(&e) })?;
        glyphs_from_spans(&spans)
    } else {
        glyphs_from_chars(&chars)
    };
    drop(chars);
    Ok(page_words(glyphs, index + 1))
}

/// Charges a page's words against the document's text budget.
fn spend(budget: &mut usize, words: &[Word], limits: &Limits) -> Result<(), PdfError> {
    for w in words {
        *budget = budget
            .checked_sub(w.text.len() + WORD_COST)
            .ok_or(PdfError::TextTooLarge { limit: limits.max_text_bytes })?;
    }
    Ok(())
}

/// Makes [`text`] print U+FFFD for glyphs the document gives no Unicode for, instead of dropping them, so a page
/// whose glyphs are all unmapped shows that it has text. Process-wide (the library keeps one flag); the `text`
/// command sets it, quote extraction does not need it.
pub fn show_unmapped_glyphs() {
    pdf_oxide::extractors::text::set_preserve_unmapped_glyphs(true);
}

/// Whether `%PDF-` occurs in the first 1024 bytes, as the specification allows.
pub fn has_pdf_header(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(1024)].windows(5).any(|w| w == b"%PDF-")
}

/// Per-word cost against [`Limits::max_text_bytes`], roughly what a [`Word`] holds besides its text.
const WORD_COST: usize = 48;

fn open(bytes: &[u8], limits: &Limits) -> Result<(PdfDocument, usize), PdfError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(PdfError::TooLarge { size: bytes.len(), limit: limits.max_input_bytes });
    }
    if !has_pdf_header(bytes) {
        return Err(PdfError::NotPdf);
    }
    check_streams(bytes, limits)?;
    let doc = guarded("open", || PdfDocument::from_bytes(bytes.to_vec()))?
        .map_err(|e| PdfError::Damaged { stage: "open", reason: reason(&e) })?;
    if doc.is_encrypted() {
        match guarded("decrypt", || doc.authenticate(b""))? {
            Ok(true) => {}
            Ok(false) | Err(pdf_oxide::Error::EncryptedPdf) => return Err(PdfError::Encrypted),
            Err(e) => return Err(PdfError::Damaged { stage: "decrypt", reason: reason(&e) }),
        }
    }
    let count = match guarded("page tree", || doc.page_count())? {
        Ok(n) => n,
        Err(pdf_oxide::Error::EncryptedPdf) => return Err(PdfError::Encrypted),
        Err(e) => return Err(PdfError::Damaged { stage: "page tree", reason: reason(&e) }),
    };
    if count > limits.max_pages {
        return Err(PdfError::TooManyPages { pages: count, limit: limits.max_pages });
    }
    Ok((doc, count))
}

/// A document with no text at all: a truncated file says damaged, anything else says it has no text layer.
fn no_text(bytes: &[u8]) -> PdfError {
    match truncated(bytes) {
        Some(reason) => PdfError::Damaged { stage: "open", reason },
        None => PdfError::NoText,
    }
}

/// Signs that the file was cut short: no end-of-file marker, a linearization length or a cross-reference offset
/// beyond the end of the file. (The library recovers what it can from such files, which can be nothing.)
fn truncated(bytes: &[u8]) -> Option<&'static str> {
    if find(bytes, b"%%EOF", 0).is_none() {
        return Some("truncated: no end-of-file marker");
    }
    let number_after = |key: &[u8]| -> Option<u64> {
        let mut out = None;
        let mut at = 0;
        while let Some(i) = find(bytes, key, at) {
            at = i + key.len();
            let digits: Vec<u8> = bytes[at..]
                .iter()
                .skip_while(|b| b.is_ascii_whitespace())
                .take_while(|b| b.is_ascii_digit())
                .take(19)
                .copied()
                .collect();
            if let Some(n) = std::str::from_utf8(&digits).ok().and_then(|s| s.parse().ok()) {
                out = Some(n);
            }
        }
        out
    };
    let len = bytes.len() as u64;
    if find(bytes, b"/Linearized", 0).is_some() && number_after(b"/L ").is_some_and(|l| l > len) {
        return Some("truncated: shorter than its linearized length");
    }
    if number_after(b"startxref").is_some_and(|o| o >= len) || number_after(b"/Prev").is_some_and(|o| o >= len) {
        return Some("truncated: cross-reference beyond the end of the file");
    }
    None
}

fn check_time(started: Instant, limits: &Limits) -> Result<(), PdfError> {
    match limits.max_duration {
        Some(max) if started.elapsed() > max => Err(PdfError::TooSlow { limit_secs: max.as_secs() }),
        _ => Ok(()),
    }
}

/// Runs a library call, turning a panic into [`PdfError::Panicked`].
fn guarded<T>(stage: &'static str, f: impl FnOnce() -> T) -> Result<T, PdfError> {
    install_quiet_hook();
    catch_unwind(AssertUnwindSafe(|| in_library(f))).map_err(|_| PdfError::Panicked { stage })
}

thread_local! {
    static IN_LIBRARY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Panic messages from inside the PDF library may quote document text, so they must not reach stderr (and from
/// there the logs). A hook installed once stays silent for panics on a thread that is inside [`guarded`] and
/// defers to the previous hook otherwise.
fn install_quiet_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_LIBRARY.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

/// Marks the current thread as inside the library for the duration of `f`.
fn in_library<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let was = self.0;
            IN_LIBRARY.with(|c| c.set(was));
        }
    }
    let _reset = Reset(IN_LIBRARY.with(|c| c.replace(true)));
    f()
}

/// A fixed description of a library error (its own message may quote the file).
fn reason(e: &pdf_oxide::Error) -> &'static str {
    use pdf_oxide::Error as E;
    match e {
        E::InvalidHeader(_) => "invalid header",
        E::UnsupportedVersion(_) => "unsupported version",
        E::ParseError { .. } | E::ParseWarning { .. } => "unparsable object",
        E::InvalidXref => "invalid cross-reference table",
        E::ObjectNotFound(..) => "missing object",
        E::InvalidObjectType { .. } => "object of the wrong type",
        E::UnexpectedEof => "unexpected end of file",
        E::Io(_) => "read error",
        E::Unsupported(_) | E::UnsupportedFilter(_) => "unsupported feature",
        E::InvalidPdf(_) => "invalid structure",
        E::Decode(_) => "stream decoding failed",
        E::Font(_) => "font error",
        E::EncryptedPdf => "encrypted",
        _ => "other",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Decompression guard

/// Inflates every zlib stream in the file into a counting sink and refuses the document when one inflates past
/// [`Limits::max_stream_bytes`], or all of them past [`Limits::max_inflated_bytes`]. Encrypted streams are not zlib
/// data until decrypted, so they pass here; the library's own per-stream cap (256 MB, or
/// `PDF_OXIDE_MAX_DECOMPRESS_MB`) still bounds them.
fn check_streams(bytes: &[u8], limits: &Limits) -> Result<(), PdfError> {
    // Deflate cannot expand data more than 1032 times, so a file too small to reach the limits even if it were
    // one stream (most quotes: under 64 KB for a 64 MiB limit) needs no inflating. The bound is the file's size,
    // not the streams' declared lengths, which the file could misstate.
    let bound = bytes.len() as u64 * MAX_DEFLATE_RATIO;
    if bound <= limits.max_stream_bytes && bound <= limits.max_inflated_bytes {
        return Ok(());
    }
    let mut total: u64 = 0;
    let mut at = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(i) = find(bytes, b"stream", at) {
        at = i + 6;
        if i >= 3 && &bytes[i - 3..i] == b"end" {
            continue;
        }
        let data = match &bytes[at..] {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] | [b'\r', rest @ ..] => rest,
            _ => continue,
        };
        if !is_zlib_header(data) {
            continue;
        }
        let mut inflater = flate2::read::ZlibDecoder::new(data);
        let mut this: u64 = 0;
        loop {
            match inflater.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    this += n as u64;
                    total += n as u64;
                    if this > limits.max_stream_bytes {
                        return Err(PdfError::StreamTooLarge { limit: limits.max_stream_bytes });
                    }
                    if total > limits.max_inflated_bytes {
                        return Err(PdfError::StreamTooLarge { limit: limits.max_inflated_bytes });
                    }
                }
            }
        }
        // Skip what this stream consumed; the next `stream` keyword lies beyond it.
        at += usize::try_from(inflater.total_in()).unwrap_or(0).min(bytes.len() - at);
    }
    Ok(())
}

/// The most deflate can expand its input (RFC 1951: a 258-byte match in about two bits, plus block overhead).
const MAX_DEFLATE_RATIO: u64 = 1032 + 8;

fn is_zlib_header(d: &[u8]) -> bool {
    match d {
        [cmf, flg, ..] => cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() {
        return None;
    }
    let first = needle[0];
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                i += off;
                if hay[i..].starts_with(needle) {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------------------
// Characters to words

/// One glyph, reduced to what word building needs.
struct Glyph {
    c: char,
    x0: f32,
    x1: f32,
    y: f32,
    top: f32,
    size: f32,
}

/// Characters more than this many font sizes apart on a line start a new word. Spaces are rarely drawn as
/// glyphs (producers move the pen instead), so the gap is what separates words; a space is about 0.3 em wide,
/// kerning moves glyphs by a few hundredths.
const WORD_GAP: f32 = 0.15;

/// The page's glyphs from the character path, in the page's reading frame, leaving out glyphs at other angles
/// (watermarks, margin notes).
fn glyphs_from_chars(chars: &[pdf_oxide::layout::TextChar]) -> Vec<Glyph> {
    // The page's reading frame is the quarter turn most of its characters share: a page printed in landscape has
    // all its text at 90 degrees and is read in that frame. Characters at other angles (a diagonal watermark, a
    // vertical margin note on an upright page) stay out, as they would confuse the lines.
    let turn = dominant_turn(chars);
    chars
        .iter()
        .filter(|c| quarter_turn(c.rotation_degrees) == Some(turn) && !c.char.is_control())
        .filter_map(|c| {
            let b = &c.bbox;
            let size = if c.font_size.is_finite() && c.font_size > 0.0 { c.font_size } else { b.height.abs() };
            let width = if turn == 0 && b.width > 0.0 {
                b.width
            } else if c.advance_width > 0.0 {
                c.advance_width
            } else {
                // No extent along the (rotated) line: about half an em, so neighbours stay one word.
                0.5 * size
            };
            let (x, y) = into_frame(b.x, b.y, turn);
            let ok = [x, y, width, size].iter().all(|v| v.is_finite()) && size > 0.0;
            ok.then_some(Glyph { c: c.char, x0: x, x1: x + width, y, top: y + size, size })
        })
        .collect()
}

/// `degrees` as a number of quarter turns (0-3), if it is within a degree of one.
fn quarter_turn(degrees: f32) -> Option<u8> {
    let d = degrees.rem_euclid(360.0);
    let q = (d / 90.0).round();
    ((d - q * 90.0).abs() < 1.0).then_some((q as u8) % 4)
}

/// The quarter turn most characters of a page share (upright when there is a tie or no character).
fn dominant_turn(chars: &[pdf_oxide::layout::TextChar]) -> u8 {
    let mut counts = [0usize; 4];
    for c in chars {
        if let Some(q) = quarter_turn(c.rotation_degrees) {
            counts[usize::from(q)] += 1;
        }
    }
    (1..4u8).fold(0, |best, q| if counts[usize::from(q)] > counts[usize::from(best)] { q } else { best })
}

/// A point of the page in the frame of text turned `turn` quarter turns counter-clockwise, where that text runs left
/// to right and its lines top to bottom.
fn into_frame(x: f32, y: f32, turn: u8) -> (f32, f32) {
    match turn {
        1 => (y, -x),
        2 => (-x, -y),
        3 => (-y, x),
        _ => (x, y),
    }
}

/// The page's glyphs from the span path: each span's characters placed by the library's per-character widths
/// (scaled to the span's width), or spread evenly when it has none.
fn glyphs_from_spans(spans: &[pdf_oxide::layout::TextSpan]) -> Vec<Glyph> {
    let mut out = Vec::new();
    for s in spans {
        let b = &s.bbox;
        let size = if s.font_size.is_finite() && s.font_size > 0.0 { s.font_size } else { b.height.abs() };
        if ![b.x, b.y, b.width, size].iter().all(|v| v.is_finite()) || size <= 0.0 {
            continue;
        }
        let chars: Vec<char> = s.text.chars().collect();
        let n = chars.len();
        let sum: f32 = s.char_widths.iter().sum();
        let widths: Vec<f32> = if s.char_widths.len() == n && sum > 0.0 && sum.is_finite() {
            s.char_widths.iter().map(|w| w.max(0.0) * b.width.max(0.0) / sum).collect()
        } else {
            vec![b.width.max(0.0) / n.max(1) as f32; n]
        };
        let mut x = b.x;
        for (c, w) in chars.into_iter().zip(widths) {
            if !c.is_control() {
                out.push(Glyph { c, x0: x, x1: x + w, y: b.y, top: b.y + size, size });
            }
            x += w;
        }
    }
    out
}

/// Builds words from glyphs: lines by baseline, glyphs by x, a new word at a drawn space or a gap. Fragments that
/// producers emit separately (kerning splits `V|ALE`) join up because only the gap counts; glyphs drawn twice at
/// the same place (fake bold) count once.
fn page_words(mut glyphs: Vec<Glyph>, page: usize) -> Vec<Word> {
    glyphs.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x0.total_cmp(&b.x0)));
    let mut words = Vec::new();
    let mut it = glyphs.into_iter().peekable();
    while let Some(first) = it.next() {
        let (base, tol) = (first.y, first.size * 0.3);
        let mut line = vec![first];
        while let Some(g) = it.next_if(|g| (base - g.y).abs() <= tol) {
            line.push(g);
        }
        line.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        let mut current: Option<Word> = None;
        let mut last: Option<(char, f32)> = None;
        for g in line {
            if last.is_some_and(|(c, x)| c == g.c && (g.x0 - x).abs() < 0.1 * g.size) {
                continue;
            }
            last = Some((g.c, g.x0));
            if g.c.is_whitespace() {
                words.extend(current.take());
                continue;
            }
            match current.as_mut() {
                Some(w) if g.x0 - w.x1 <= WORD_GAP * g.size.max(w.font_size) => {
                    w.text.push(g.c);
                    w.x1 = w.x1.max(g.x1);
                    w.y1 = w.y1.max(g.top);
                    w.font_size = w.font_size.max(g.size);
                }
                _ => {
                    words.extend(current.take());
                    current = Some(Word {
                        text: g.c.to_string(),
                        x0: g.x0,
                        x1: g.x1,
                        y0: g.y,
                        y1: g.top,
                        font_size: g.size,
                        page,
                    });
                }
            }
        }
        words.extend(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_may_sit_anywhere_in_the_first_kilobyte() {
        assert!(has_pdf_header(b"%PDF-1.7\n"));
        assert!(has_pdf_header(b"junk\n%PDF-1.4"));
        let mut late = vec![b' '; 1020];
        late.extend_from_slice(b"%PDF-1.7");
        assert!(!has_pdf_header(&late));
        assert!(!has_pdf_header(b""));
    }

    #[test]
    fn refusals_come_before_parsing() {
        let limits = Limits { max_input_bytes: 10, ..Limits::quote() };
        assert_eq!(words(b"", &limits), Err(PdfError::NotPdf));
        assert_eq!(text(b"\x89PNG\r\n", &limits), Err(PdfError::NotPdf));
        assert_eq!(words(b"%PDF-1.7 and more", &limits), Err(PdfError::TooLarge { size: 17, limit: 10 }));
    }

    #[test]
    fn garbage_after_a_header_is_damaged_not_a_panic() {
        for junk in
            [&b"%PDF-1.7\n"[..], b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", b"%PDF-\xff\xfe\x00trailer"]
        {
            match text(junk, &Limits::quote()) {
                Err(PdfError::Damaged { .. } | PdfError::NoText) => {}
                other => panic!("{junk:?}: {other:?}"),
            }
        }
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflating_streams_are_bounded_without_allocating_them() {
        // GIVEN a stream that inflates to 4 MiB, and one that inflates to 1 KiB
        let big = zlib(&vec![b' '; 4 * 1024 * 1024]);
        let small = zlib(&[b'x'; 1024]);
        let doc =
            |s: &[u8]| [&b"%PDF-1.7\n1 0 obj << /Filter /FlateDecode >> stream\n"[..], s, b"\nendstream"].concat();
        let limits = Limits { max_stream_bytes: 1024 * 1024, ..Limits::quote() };
        // THEN only the big one is refused
        assert_eq!(check_streams(&doc(&big), &limits), Err(PdfError::StreamTooLarge { limit: 1024 * 1024 }));
        assert_eq!(check_streams(&doc(&small), &limits), Ok(()));
        // AND many small streams still add up to the total limit
        let many: Vec<u8> = (0..20).flat_map(|_| doc(&zlib(&vec![b'y'; 512 * 1024]))).collect();
        let limits = Limits { max_stream_bytes: 1024 * 1024, max_inflated_bytes: 8 * 1024 * 1024, ..Limits::quote() };
        assert_eq!(check_streams(&many, &limits), Err(PdfError::StreamTooLarge { limit: 8 * 1024 * 1024 }));
    }

    #[test]
    fn truncation_is_told_from_an_empty_document() {
        assert_eq!(truncated(b"%PDF-1.4\n1 0 obj\n"), Some("truncated: no end-of-file marker"));
        let lin = b"%PDF-1.5\n1 0 obj <</Linearized 1/L 63022/O 3>> endobj\nstartxref\n9\n%%EOF\n";
        assert_eq!(truncated(lin), Some("truncated: shorter than its linearized length"));
        let far = b"%PDF-1.4\ntrailer <</Size 3>>\nstartxref\n99999\n%%EOF\n";
        assert_eq!(truncated(far), Some("truncated: cross-reference beyond the end of the file"));
        let whole = b"%PDF-1.4\nxref\ntrailer <</Size 3>>\nstartxref\n9\n%%EOF\n";
        assert_eq!(truncated(whole), None);
        assert_eq!(no_text(whole), PdfError::NoText);
    }

    fn g(c: char, x0: f32, y: f32) -> Glyph {
        Glyph { c, x0, x1: x0 + 6.0, y, top: y + 10.0, size: 10.0 }
    }

    fn texts(words: &[Word]) -> Vec<&str> {
        words.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn glyphs_become_words_by_gap() {
        // "To" kerned together (overlap), a 3 pt gap (a space), a drawn space, fake bold, and a second line.
        let glyphs = vec![
            g('T', 100.0, 700.0),
            g('o', 105.0, 700.2),
            g('x', 114.0, 700.0),
            g(' ', 120.0, 700.0),
            g('y', 121.0, 700.0),
            g('y', 121.3, 700.0),
            g('b', 100.0, 688.0),
        ];
        let words = page_words(glyphs, 3);
        assert_eq!(texts(&words), ["To", "x", "y", "b"]);
        assert_eq!((words[0].x0, words[0].x1, words[0].page), (100.0, 111.0, 3));
        assert!(words[2].y0 > words[3].y0, "top line first");
    }

    fn ch(c: char, x: f32, y: f32, rotation_degrees: f32) -> pdf_oxide::layout::TextChar {
        pdf_oxide::layout::TextChar {
            char: c,
            bbox: pdf_oxide::geometry::Rect::new(x, y, 0.0, 10.0),
            font_size: 10.0,
            rotation_degrees,
            ..Default::default()
        }
    }

    #[test]
    fn a_page_printed_in_landscape_is_read_in_its_own_frame() {
        // GIVEN a page whose text runs bottom to top (turned 90 degrees), two lines, the first further left,
        // with an upright page number the producer added
        let mut chars = Vec::new();
        for (i, c) in "Hi you".chars().enumerate() {
            chars.push(ch(c, 100.0, 300.0 + 5.0 * i as f32, 90.0));
        }
        for (i, c) in "two".chars().enumerate() {
            chars.push(ch(c, 112.0, 300.0 + 5.0 * i as f32, 89.6));
        }
        chars.push(ch('7', 500.0, 20.0, 0.0));
        // WHEN its words are read
        let words = page_words(glyphs_from_chars(&chars), 1);
        // THEN they read as the reader of the turned page sees them, and the odd upright glyph stays out
        assert_eq!(texts(&words), ["Hi", "you", "two"]);
        assert!(words[0].y0 > words[2].y0, "the left line is the first line");
    }

    #[test]
    fn quarter_turns_and_frames() {
        assert_eq!(quarter_turn(0.4), Some(0));
        assert_eq!(quarter_turn(-90.0), Some(3));
        assert_eq!(quarter_turn(180.5), Some(2));
        assert_eq!(quarter_turn(359.6), Some(0));
        assert_eq!(quarter_turn(45.0), None);
        assert_eq!(quarter_turn(f32::NAN), None);
        // reading direction (along the text) always becomes +x
        assert_eq!(into_frame(0.0, 1.0, 1), (1.0, -0.0));
        assert_eq!(into_frame(-1.0, 0.0, 2), (1.0, -0.0));
        assert_eq!(into_frame(0.0, -1.0, 3), (1.0, 0.0));
        // an upright page, or one without characters, stays upright
        assert_eq!(dominant_turn(&[]), 0);
        assert_eq!(dominant_turn(&[ch('a', 0.0, 0.0, 0.0), ch('b', 0.0, 0.0, 90.0)]), 0);
    }

    #[test]
    fn span_glyphs_follow_the_span_widths() {
        let span = pdf_oxide::layout::TextSpan {
            text: "ab c".into(),
            bbox: pdf_oxide::geometry::Rect::new(10.0, 500.0, 40.0, 10.0),
            font_size: 10.0,
            char_widths: vec![1.0, 1.0, 1.0, 1.0],
            ..Default::default()
        };
        let words = page_words(glyphs_from_spans(&[span]), 1);
        assert_eq!(texts(&words), ["ab", "c"]);
        assert_eq!((words[0].x0, words[0].x1, words[1].x0, words[1].x1), (10.0, 30.0, 40.0, 50.0));
    }

    #[test]
    fn zlib_headers() {
        assert!(is_zlib_header(&[0x78, 0x9C]));
        assert!(is_zlib_header(&[0x78, 0xDA]));
        assert!(is_zlib_header(&[0x78, 0x01]));
        assert!(!is_zlib_header(&[0x78, 0x00]));
        assert!(!is_zlib_header(b"BT"));
        assert!(!is_zlib_header(&[0x78]));
    }

    #[test]
    fn a_library_panic_is_contained() {
        let r: Result<(), _> = guarded("page text", || panic!("document text that must not be printed"));
        assert_eq!(r, Err(PdfError::Panicked { stage: "page text" }));
        assert_eq!(guarded("open", || 7), Ok(7));
        assert!(!IN_LIBRARY.with(|c| c.get()), "the flag is reset after a panic");
    }

    #[test]
    fn codes_are_fixed() {
        assert_eq!(PdfError::NotPdf.code(), "not_a_pdf");
        assert_eq!(PdfError::Encrypted.code(), "pdf_encrypted");
        assert_eq!(PdfError::NoText.code(), "pdf_no_text");
        assert_eq!(PdfError::Damaged { stage: "open", reason: "x" }.code(), "pdf_damaged");
    }
}
