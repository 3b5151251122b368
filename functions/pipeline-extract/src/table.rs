//! Rebuilds the coverage table from positioned words.
//!
//! Cells wrap and are vertically centred: a two-line name puts one line above and one below the line with the
//! amounts, and a narrow amount column puts `1.234,56` on one line and `EUR` on the next. Reading lines in order
//! therefore mixes rows. Instead:
//!
//! 1. The header is found by its labels, each of which may wrap (`Limit of` / `Insurance`); each label's words
//!    give its column's horizontal extent. Later pages may repeat the header; if they do not, the table continues
//!    from the top of the page with the columns it had.
//! 2. Every word between the header and the end phrase goes to the column it overlaps most (the nearest when it
//!    overlaps none). Words without digits never go to an amount column, so long names that reach under an amount
//!    header stay names.
//! 3. Each amount in the anchor column makes one row; a currency word just above or below it belongs to it. The
//!    row's centre is the middle of that group.
//! 4. In every other column, lines closer together than a line pitch form a block (one wrapped cell); each block
//!    goes to the row whose centre is nearest its own. A block that spans several row centres (rows without
//!    padding) is split and each line goes to its nearest row.
//! 5. Each cell's words are joined top to bottom, left to right.

use crate::lines::{Line, find_ci, lines, make_line, same_word, starts_with_ci};
use crate::pdf::{Page, Word};
use crate::rules::{NumberFormat, TableRule};

/// One reconstructed row: one string per column of the rule, in the rule's column order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Cell texts.
    pub cells: Vec<String>,
}

/// Lines further apart than this many font sizes belong to different cells.
const PITCH: f32 = 1.4;

/// The table's rows, in document order. `None` when no header was found.
pub fn read(pages: &[Page], rule: &TableRule, nf: &NumberFormat) -> Option<Vec<Row>> {
    let mut columns: Option<Vec<(f32, f32)>> = None;
    let mut rows = Vec::new();
    for page in pages {
        let ls = lines(&page.words);
        let mut from = 0;
        if columns.is_none() {
            if let Some(after) = &rule.after {
                match ls.iter().position(|l| find_ci(&l.text, after).is_some()) {
                    Some(i) => from = i + 1,
                    None => continue,
                }
            }
        }
        let start = match find_header(&ls[from..], rule) {
            Some((ranges, bottom)) => {
                columns = Some(ranges);
                from + ls[from..].iter().position(|l| l.y < bottom - 0.3 * l.size).unwrap_or(ls.len() - from)
            }
            None if columns.is_some() => from,
            None => continue,
        };
        let Some(cols) = &columns else { continue };
        let end = ls[start..].iter().position(|l| rule.end.iter().any(|e| starts_with_ci(&l.text, e)));
        let stop = end.map_or(ls.len(), |e| start + e);
        rows.extend(read_rows(&ls[start..stop], cols, rule, nf));
        if end.is_some() {
            break;
        }
    }
    columns.map(|_| rows)
}

/// Finds the header: the first band of lines (from one line down to 2.5 font sizes below it) that holds every
/// column label. Returns each column's horizontal extent and the lowest baseline of the header.
fn find_header(ls: &[Line<'_>], rule: &TableRule) -> Option<(Vec<(f32, f32)>, f32)> {
    for (i, top) in ls.iter().enumerate() {
        let band: Vec<(usize, &Word)> = ls[i..]
            .iter()
            .enumerate()
            .take_while(|(_, l)| l.page == top.page && l.y >= top.y - 2.5 * top.size)
            .flat_map(|(k, l)| l.words.iter().map(move |w| (k, *w)))
            .collect();
        let mut used = vec![false; band.len()];
        let mut ranges = Vec::with_capacity(rule.columns.len());
        let mut bottom = f32::INFINITY;
        for col in &rule.columns {
            let Some(cell) = match_label(&band, &col.header, &mut used) else { break };
            let x0 = cell.iter().map(|&j| band[j].1.x0).fold(f32::INFINITY, f32::min);
            let x1 = cell.iter().map(|&j| band[j].1.x1).fold(f32::NEG_INFINITY, f32::max);
            bottom = cell.iter().map(|&j| band[j].1.y0).fold(bottom, f32::min);
            ranges.push((x0, x1));
        }
        if ranges.len() == rule.columns.len() {
            return Some((ranges, bottom));
        }
    }
    None
}

/// Finds the words of one header label in the band: each next word is either the next word to the right on the
/// same line, or (when the label wraps) a word on a line just below that overlaps the words found so far.
fn match_label(band: &[(usize, &Word)], tokens: &[String], used: &mut [bool]) -> Option<Vec<usize>> {
    let first = tokens.first()?;
    'start: for s in 0..band.len() {
        if used[s] || !same_word(&band[s].1.text, first) {
            continue;
        }
        let mut cell = vec![s];
        let (mut x0, mut x1) = (band[s].1.x0, band[s].1.x1);
        let mut cur = s;
        for t in &tokens[1..] {
            let (line, w) = band[cur];
            let size = w.font_size.max(1.0);
            let right = (0..band.len())
                .filter(|&j| band[j].0 == line && band[j].1.x0 >= w.x1 - 0.5 && !used[j] && !cell.contains(&j))
                .min_by(|&a, &b| band[a].1.x0.total_cmp(&band[b].1.x0))
                .filter(|&j| band[j].1.x0 - w.x1 < size && same_word(&band[j].1.text, t));
            let below = || {
                (0..band.len())
                    .filter(|&j| {
                        let c = band[j].1;
                        let dy = w.y0 - c.y0;
                        dy > 0.3 * size
                            && dy < 1.6 * size
                            && c.x1 > x0 - 0.5 * size
                            && c.x0 < x1 + 0.5 * size
                            && !used[j]
                            && !cell.contains(&j)
                            && same_word(&c.text, t)
                    })
                    .min_by(|&a, &b| {
                        (band[b].1.y0).total_cmp(&band[a].1.y0).then(band[a].1.x0.total_cmp(&band[b].1.x0))
                    })
            };
            match right.or_else(below) {
                Some(j) => {
                    cell.push(j);
                    x0 = x0.min(band[j].1.x0);
                    x1 = x1.max(band[j].1.x1);
                    cur = j;
                }
                None => continue 'start,
            }
        }
        for &j in &cell {
            used[j] = true;
        }
        return Some(cell);
    }
    None
}

/// Whether a word may sit in an amount column: it has a digit, or is a currency, or a dash standing for nothing.
fn amount_like(w: &str, nf: &NumberFormat) -> bool {
    w.bytes().any(|b| b.is_ascii_digit()) || nf.is_currency(w) || matches!(w, "-" | "–" | "—")
}

fn column_of(w: &Word, cols: &[(f32, f32)], rule: &TableRule, nf: &NumberFormat) -> usize {
    let money_ok = amount_like(&w.text, nf);
    let allowed = |c: usize| money_ok || !rule.columns[c].field.is_money();
    let overlap = |c: usize| (w.x1.min(cols[c].1) - w.x0.max(cols[c].0)).max(0.0);
    let distance = |c: usize| (cols[c].0 - w.x1).max(w.x0 - cols[c].1).max(0.0);
    let candidates = (0..cols.len()).filter(|&c| allowed(c));
    let best_overlap = candidates.clone().max_by(|&a, &b| overlap(a).total_cmp(&overlap(b)));
    match best_overlap {
        Some(c) if overlap(c) > 0.0 => c,
        _ => candidates.min_by(|&a, &b| distance(a).total_cmp(&distance(b))).unwrap_or(0),
    }
}

/// One column's share of a region line.
struct Part<'a> {
    y: f32,
    size: f32,
    words: Vec<&'a Word>,
}

fn read_rows(region: &[Line<'_>], cols: &[(f32, f32)], rule: &TableRule, nf: &NumberFormat) -> Vec<Row> {
    let n = cols.len();
    // Each column's lines, top to bottom.
    let mut parts: Vec<Vec<Part<'_>>> = (0..n).map(|_| Vec::new()).collect();
    for line in region {
        let mut per: Vec<Vec<&Word>> = vec![Vec::new(); n];
        for w in &line.words {
            per[column_of(w, cols, rule, nf)].push(w);
        }
        for (c, words) in per.into_iter().enumerate() {
            if !words.is_empty() {
                let l = make_line(words);
                parts[c].push(Part { y: l.y, size: l.size, words: l.words });
            }
        }
    }

    // Rows from the anchor column: each amount, with a currency word on the line just above or below it.
    let anchor = &parts[rule.anchor];
    let is_amount = |p: &Part<'_>| p.words.iter().any(|w| w.text.bytes().any(|b| b.is_ascii_digit()));
    let is_currency = |p: &Part<'_>| p.words.iter().all(|w| nf.is_currency(&w.text));
    let mut groups: Vec<(f32, f32, Vec<usize>)> =
        anchor.iter().enumerate().filter(|(_, p)| is_amount(p)).map(|(k, p)| (p.y, p.y, vec![k])).collect();
    for (k, p) in anchor.iter().enumerate() {
        if is_amount(p) || !is_currency(p) {
            continue;
        }
        // Prefer the amount above (the usual wrap), then the one below.
        let above = groups.iter().position(|g| g.1 > p.y && g.1 - p.y <= PITCH * p.size && g.2.len() == 1);
        let below = || groups.iter().position(|g| p.y > g.0 && p.y - g.0 <= PITCH * p.size && g.2.len() == 1);
        if let Some(g) = above.or_else(below) {
            let g = &mut groups[g];
            g.0 = g.0.max(p.y);
            g.1 = g.1.min(p.y);
            g.2.push(k);
        }
    }
    let centres: Vec<f32> = groups.iter().map(|g| (g.0 + g.1) / 2.0).collect();
    let mut cells: Vec<Vec<Vec<&Word>>> = vec![vec![Vec::new(); n]; groups.len()];
    for (r, g) in groups.iter().enumerate() {
        for &k in &g.2 {
            cells[r][rule.anchor].extend(anchor[k].words.iter().copied());
        }
    }
    if centres.is_empty() {
        return Vec::new();
    }
    let nearest = |y: f32| {
        (0..centres.len()).min_by(|&a, &b| (centres[a] - y).abs().total_cmp(&(centres[b] - y).abs())).unwrap_or(0)
    };

    // Every other column: blocks of closely spaced lines, each to the nearest row centre.
    for (c, col) in parts.iter().enumerate() {
        if c == rule.anchor {
            continue;
        }
        let mut start = 0;
        while start < col.len() {
            let mut end = start + 1;
            while end < col.len() && col[end - 1].y - col[end].y <= PITCH * col[end].size.max(col[end - 1].size) {
                end += 1;
            }
            let block = &col[start..end];
            let (top, bottom) = (block[0].y, block[block.len() - 1].y);
            let size = block.iter().map(|p| p.size).fold(1.0, f32::max);
            let centre = (top + bottom) / 2.0;
            let inside = centres.iter().filter(|&&rc| rc >= bottom - 0.5 * size && rc <= top + 0.5 * size).count();
            if inside <= 1 {
                let r = nearest(centre);
                if (centres[r] - centre).abs() <= (top - bottom) / 2.0 + size {
                    for p in block {
                        cells[r][c].extend(p.words.iter().copied());
                    }
                }
            } else {
                for p in block {
                    let r = nearest(p.y);
                    if (centres[r] - p.y).abs() <= PITCH * p.size {
                        cells[r][c].extend(p.words.iter().copied());
                    }
                }
            }
            start = end;
        }
    }

    cells
        .into_iter()
        .map(|row| {
            let cells = row
                .into_iter()
                .map(|mut ws| {
                    ws.sort_by(|a, b| b.y0.total_cmp(&a.y0).then(a.x0.total_cmp(&b.x0)));
                    lines(ws).iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(" ")
                })
                .collect();
            Row { cells }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::tests::w;
    use crate::rules::{Column, CoverageField};

    fn rule(headers: [&str; 4], end: &str) -> TableRule {
        let fields = [CoverageField::Name, CoverageField::Limit, CoverageField::Deductible, CoverageField::Premium];
        TableRule {
            after: None,
            end: vec![end.into()],
            columns: fields
                .iter()
                .zip(headers)
                .map(|(&field, h)| Column { field, header: h.split_whitespace().map(str::to_owned).collect() })
                .collect(),
            anchor: 3,
        }
    }

    fn eur() -> NumberFormat {
        NumberFormat { decimal: ',', thousands: Some('.'), currencies: vec![("EUR".into(), "EUR".into())] }
    }

    fn usd() -> NumberFormat {
        NumberFormat { decimal: '.', thousands: Some(','), currencies: vec![("$".into(), "USD".into())] }
    }

    fn page(number: usize, words: Vec<Word>) -> Page {
        Page { number, words: words.into_iter().map(|w| Word { page: number, ..w }).collect() }
    }

    fn cells(rows: &[Row]) -> Vec<Vec<&str>> {
        rows.iter().map(|r| r.cells.iter().map(String::as_str).collect()).collect()
    }

    #[test]
    fn centred_cells_wrap_above_and_below_the_amounts() {
        // Layout C: names wrap around the amount line; narrow amounts put EUR on the next line.
        let words = vec![
            w("Deckung", 110.0, 540.0),
            w("Versicherungssumme", 200.0, 540.0),
            w("Selbstbehalt", 330.0, 540.0),
            w("Prämie", 440.0, 540.0),
            // Row 1: one-line name; deductible and premium wrap their currency.
            w("16.500,00", 350.0, 524.5),
            w("225.908,36", 420.0, 524.5),
            w("Leitungswasser", 110.0, 518.7),
            w("209.000,00", 240.0, 518.7),
            w("EUR", 295.0, 518.7),
            w("EUR", 385.0, 512.9),
            w("EUR", 465.0, 512.9),
            // Row 2: name wraps around a one-line amount row.
            w("Grobe", 110.0, 496.0),
            w("812.000,00", 240.0, 490.2),
            w("EUR", 295.0, 490.2),
            w("7.750,00", 340.0, 490.2),
            w("EUR", 385.0, 490.2),
            w("7.177,10", 417.0, 490.2),
            w("EUR", 465.0, 490.2),
            w("Fahrlässigkeit", 110.0, 484.3),
            w("Nettoprämie:", 107.0, 431.1),
            w("1.467.788,31", 180.0, 431.1),
            w("EUR", 245.0, 431.1),
        ];
        let rows = read(
            &[page(1, words)],
            &rule(["Deckung", "Versicherungssumme", "Selbstbehalt", "Prämie"], "Nettoprämie:"),
            &eur(),
        )
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                ["Leitungswasser", "209.000,00 EUR", "16.500,00 EUR", "225.908,36 EUR"],
                ["Grobe Fahrlässigkeit", "812.000,00 EUR", "7.750,00 EUR", "7.177,10 EUR"],
            ]
        );
    }

    #[test]
    fn a_wrapped_header_and_long_names_under_an_amount_header() {
        // Layout B: "Limit of / Insurance" wraps; "Injury" reaches past the name header; a three-line name.
        let words = vec![
            w("Limit", 300.0, 604.8),
            w("of", 330.0, 604.8),
            w("Coverage", 112.0, 599.0),
            w("Part", 160.0, 599.0),
            w("Deductible", 360.0, 599.0),
            w("Premium", 432.0, 599.0),
            w("Insurance", 296.0, 593.2),
            w("Personal", 112.0, 579.4),
            w("&", 155.0, 579.4),
            w("Advertising", 165.0, 579.4),
            w("Injury", 260.0, 579.4),
            w("$2,681,000.00", 278.0, 579.4),
            w("$19,750.00", 365.0, 579.4),
            w("$3,231.44", 432.0, 579.4),
            w("Hired", 112.0, 562.9),
            w("&", 140.0, 562.9),
            w("Non-Owned", 150.0, 562.9),
            w("Auto", 112.0, 551.65),
            w("$18,208,609.70", 272.0, 551.65),
            w("$203.00", 380.0, 551.65),
            w("$1,147.41", 432.0, 551.65),
            w("Liability", 112.0, 540.4),
            w("Premium", 107.0, 520.0),
            w("Subtotal:", 150.0, 520.0),
            w("$4,378.85", 200.0, 520.0),
        ];
        let rows = read(
            &[page(1, words)],
            &rule(["Coverage Part", "Limit of Insurance", "Deductible", "Premium"], "Premium Subtotal:"),
            &usd(),
        )
        .unwrap();
        assert_eq!(
            cells(&rows),
            [
                ["Personal & Advertising Injury", "$2,681,000.00", "$19,750.00", "$3,231.44"],
                ["Hired & Non-Owned Auto Liability", "$18,208,609.70", "$203.00", "$1,147.41"],
            ]
        );
    }

    #[test]
    fn a_tall_cell_next_to_short_rows_keeps_its_lines() {
        // A four-line name between single-line rows with tight padding: nearest-centre by line would give its
        // first and last lines to the neighbours; as a block it stays whole.
        let words = vec![
            w("Coverage", 110.0, 700.0),
            w("Limit", 300.0, 700.0),
            w("Deductible", 350.0, 700.0),
            w("Premium", 430.0, 700.0),
            w("Flood", 110.0, 685.0),
            w("1,00", 300.0, 685.0),
            w("0,00", 350.0, 685.0),
            w("5,00", 430.0, 685.0),
            w("Computer", 110.0, 670.0),
            w("Breakdown", 110.0, 659.0),
            w("and", 110.0, 648.0),
            w("Restoration", 110.0, 637.0),
            w("2,00", 300.0, 653.5),
            w("0,00", 350.0, 653.5),
            w("6,00", 430.0, 653.5),
            w("Glass", 110.0, 622.0),
            w("3,00", 300.0, 622.0),
            w("0,00", 350.0, 622.0),
            w("7,00", 430.0, 622.0),
        ];
        let rows =
            read(&[page(1, words)], &rule(["Coverage", "Limit", "Deductible", "Premium"], "Net"), &eur()).unwrap();
        assert_eq!(
            cells(&rows),
            [
                ["Flood", "1,00", "0,00", "5,00"],
                ["Computer Breakdown and Restoration", "2,00", "0,00", "6,00"],
                ["Glass", "3,00", "0,00", "7,00"],
            ]
        );
    }

    #[test]
    fn unpadded_single_line_rows_split_by_line() {
        // Rows exactly one line pitch apart form one block in the name column; it is split line by line.
        let words = vec![
            w("Coverage", 110.0, 700.0),
            w("Limit", 300.0, 700.0),
            w("Deductible", 350.0, 700.0),
            w("Premium", 430.0, 700.0),
            w("Flood", 110.0, 688.0),
            w("1,00", 300.0, 688.0),
            w("0,00", 350.0, 688.0),
            w("5,00", 430.0, 688.0),
            w("Theft", 110.0, 676.0),
            w("2,00", 300.0, 676.0),
            w("0,00", 350.0, 676.0),
            w("6,00", 430.0, 676.0),
        ];
        let rows =
            read(&[page(1, words)], &rule(["Coverage", "Limit", "Deductible", "Premium"], "Net"), &eur()).unwrap();
        assert_eq!(cells(&rows), [["Flood", "1,00", "0,00", "5,00"], ["Theft", "2,00", "0,00", "6,00"]]);
    }

    #[test]
    fn the_table_continues_on_the_next_page_with_or_without_its_header() {
        let header = |y: f32| {
            vec![w("Coverage", 110.0, y), w("Limit", 300.0, y), w("Deductible", 350.0, y), w("Premium", 430.0, y)]
        };
        let row =
            |name: &str, y: f32| vec![w(name, 110.0, y), w("1,00", 300.0, y), w("0,00", 350.0, y), w("5,00", 430.0, y)];
        let p1 = [vec![w("Schedule", 110.0, 760.0)], header(740.0), row("Flood", 720.0), row("Theft", 700.0)].concat();
        let p2 =
            [header(780.0), row("Glass", 760.0), vec![w("Net", 107.0, 730.0), w("Premium:", 130.0, 730.0)]].concat();
        let p2_bare = [row("Glass", 760.0), vec![w("Net", 107.0, 730.0), w("Premium:", 130.0, 730.0)]].concat();
        let p3 = [header(780.0), row("Ignored", 760.0)].concat();
        let mut r = rule(["Coverage", "Limit", "Deductible", "Premium"], "Net Premium:");
        r.after = Some("Schedule".into());
        for second in [p2, p2_bare] {
            let pages = [page(1, p1.clone()), page(2, second), page(3, p3.clone())];
            let rows = read(&pages, &r, &eur()).unwrap();
            let names: Vec<_> = rows.iter().map(|r| r.cells[0].as_str()).collect();
            assert_eq!(names, ["Flood", "Theft", "Glass"]);
        }
    }

    #[test]
    fn no_header_means_no_table() {
        let words = vec![w("Coverage", 110.0, 700.0), w("Limit", 300.0, 700.0), w("Premium", 430.0, 700.0)];
        assert_eq!(read(&[page(1, words)], &rule(["Coverage", "Limit", "Deductible", "Premium"], "Net"), &eur()), None);
        // A header before the `after` phrase does not count.
        let words = vec![
            w("Coverage", 110.0, 700.0),
            w("Limit", 300.0, 700.0),
            w("Deductible", 350.0, 700.0),
            w("Premium", 430.0, 700.0),
            w("Schedule", 110.0, 600.0),
        ];
        let mut r = rule(["Coverage", "Limit", "Deductible", "Premium"], "Net");
        r.after = Some("Schedule".into());
        assert_eq!(read(&[page(1, words)], &r, &eur()), None);
    }

    #[test]
    fn stray_text_far_from_any_row_is_dropped() {
        let words = vec![
            w("Coverage", 110.0, 700.0),
            w("Limit", 300.0, 700.0),
            w("Deductible", 350.0, 700.0),
            w("Premium", 430.0, 700.0),
            w("Flood", 110.0, 685.0),
            w("1,00", 300.0, 685.0),
            w("0,00", 350.0, 685.0),
            w("5,00", 430.0, 685.0),
            w("Footnote", 110.0, 600.0),
        ];
        let rows =
            read(&[page(1, words)], &rule(["Coverage", "Limit", "Deductible", "Premium"], "Net"), &eur()).unwrap();
        assert_eq!(cells(&rows), [["Flood", "1,00", "0,00", "5,00"]]);
    }
}
