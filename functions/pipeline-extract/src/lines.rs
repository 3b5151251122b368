//! Words grouped into text lines, and case-insensitive phrase search over them.

use crate::pdf::Word;

/// One line of text: words sharing a baseline, left to right.
#[derive(Clone, Debug)]
pub struct Line<'a> {
    /// Page number, from 1.
    pub page: usize,
    /// Baseline (PDF points, y up).
    pub y: f32,
    /// Largest font size on the line.
    pub size: f32,
    /// Its words, left to right.
    pub words: Vec<&'a Word>,
    /// The words joined by single spaces.
    pub text: String,
    /// Byte offset in `text` where each word starts.
    pub starts: Vec<usize>,
}

impl Line<'_> {
    /// Index of the first word that starts at or after byte `at` of `text`.
    pub fn word_at(&self, at: usize) -> Option<usize> {
        self.starts.iter().position(|&s| s >= at)
    }

    /// Left edge of the line.
    pub fn x0(&self) -> f32 {
        self.words.first().map_or(0.0, |w| w.x0)
    }
}

/// Groups words into lines: sorted top to bottom, then left to right; words whose baselines are within 30 % of the
/// font size share a line.
pub fn lines<'a>(words: impl IntoIterator<Item = &'a Word>) -> Vec<Line<'a>> {
    let mut ws: Vec<&Word> = words.into_iter().collect();
    ws.sort_by(|a, b| a.page.cmp(&b.page).then(b.y0.total_cmp(&a.y0)).then(a.x0.total_cmp(&b.x0)));
    let mut out: Vec<Line<'a>> = Vec::new();
    let mut it = ws.into_iter().peekable();
    while let Some(first) = it.next() {
        let tol = first.font_size.max(1.0) * 0.3;
        let mut group = vec![first];
        while let Some(w) = it.next_if(|w| w.page == first.page && (first.y0 - w.y0).abs() <= tol) {
            group.push(w);
        }
        group.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        out.push(make_line(group));
    }
    out
}

/// A line from words already in order.
pub fn make_line(words: Vec<&Word>) -> Line<'_> {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(words.len());
    for w in &words {
        if !text.is_empty() {
            text.push(' ');
        }
        starts.push(text.len());
        text.push_str(&w.text);
    }
    let y = words.iter().map(|w| w.y0).sum::<f32>() / words.len().max(1) as f32;
    let size = words.iter().map(|w| w.font_size).fold(0.0f32, f32::max).max(1.0);
    Line { page: words.first().map_or(0, |w| w.page), y, size, words, text, starts }
}

/// Byte range of the first case-insensitive occurrence of `needle` in `hay` that starts at a word boundary.
pub fn find_ci(hay: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    for (start, _) in hay.char_indices() {
        if start > 0 && !hay[..start].ends_with(char::is_whitespace) {
            continue;
        }
        if let Some(len) = prefix_len_ci(&hay[start..], needle) {
            return Some((start, start + len));
        }
    }
    None
}

/// Whether `hay` starts with `needle`, ignoring case.
pub fn starts_with_ci(hay: &str, needle: &str) -> bool {
    !needle.is_empty() && prefix_len_ci(hay, needle).is_some()
}

/// Byte length of the prefix of `hay` that equals `needle` ignoring case.
fn prefix_len_ci(hay: &str, needle: &str) -> Option<usize> {
    let mut h = hay.char_indices();
    for n in needle.chars() {
        let (_, c) = h.next()?;
        if c != n && !c.to_lowercase().eq(n.to_lowercase()) {
            return None;
        }
    }
    Some(h.next().map_or(hay.len(), |(i, _)| i))
}

/// Whether two words are the same ignoring case and a trailing colon (header labels).
pub fn same_word(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches(':'), b.trim_end_matches(':'));
    a.chars().count() == b.chars().count()
        && a.chars().zip(b.chars()).all(|(x, y)| x.to_lowercase().eq(y.to_lowercase()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A word for hand-made layouts: text, left edge, baseline; 10 pt, about 5 pt per character.
    pub fn w(text: &str, x0: f32, y: f32) -> Word {
        Word {
            text: text.into(),
            x0,
            x1: x0 + 5.0 * text.chars().count() as f32,
            y0: y,
            y1: y + 10.0,
            font_size: 10.0,
            page: 1,
        }
    }

    #[test]
    fn words_become_lines() {
        let ws =
            [w("Insured:", 100.0, 700.0), w("Bäckerei", 250.0, 700.5), w("Quote", 100.0, 720.0), w("KG", 300.0, 699.8)];
        let ls = lines(&ws);
        let texts: Vec<_> = ls.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["Quote", "Insured: Bäckerei KG"]);
        assert_eq!(ls[1].starts, [0, 9, 19], "byte offsets: ä takes two");
        assert_eq!(ls[1].word_at(9), Some(1));
        assert_eq!(ls[1].word_at(10), Some(2));
    }

    #[test]
    fn phrases_match_at_word_starts_ignoring_case() {
        assert_eq!(find_ci("Named Insured: X", "insured:"), Some((6, 14)));
        assert_eq!(find_ci("Uninsured: X", "insured:"), None);
        assert_eq!(find_ci("JAHRESPRÄMIE: 5", "Jahresprämie:"), Some((0, 14)));
        assert!(starts_with_ci("Net Premium: € 5", "net premium:"));
        assert!(!starts_with_ci("Net", "net premium:"));
        assert!(same_word("Coverage:", "coverage"));
        assert!(!same_word("Cover", "coverage"));
    }
}
