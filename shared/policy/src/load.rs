//! Turning YAML text into typed values while keeping track of where every problem is.
//!
//! serde stops at the first error and serde_yaml's `Value` forgets line numbers, so loading runs in three steps:
//! the text is read into a `Value` (syntax errors, with serde_yaml's line); the whole document is also read into
//! its typed form once, only to learn the line serde_yaml gives its first type error; then each list item is read
//! on its own from the `Value`, so every item's problems are collected. Lines for those, and for the semantic
//! checks done afterwards, come from [`LineIndex`], a small map from field paths to the lines they start on.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::error::PolicyError;

/// One step of a field path: a mapping key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// `.key`
    Key(String),
    /// `[n]`
    Index(usize),
}

/// `policies[2].grace`.
pub(crate) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `base` followed by `keys`.
pub(crate) fn join(base: &[Seg], keys: &[&str]) -> Vec<Seg> {
    base.iter().cloned().chain(keys.iter().map(|k| Seg::Key((*k).to_owned()))).collect()
}

/// The line each block-style field of a YAML text starts on.
///
/// This is deliberately not a YAML parser: the text has already parsed, and this only follows indentation,
/// `- ` list items and `key:` lines. Fields written in flow style (`{ type: x }`) or inside block scalars are
/// not indexed; a lookup then falls back to the nearest indexed ancestor, which is on the same line for flow
/// style.
#[derive(Debug, Default)]
pub(crate) struct LineIndex {
    lines: HashMap<Vec<Seg>, usize>,
}

struct Frame {
    col: usize,
    path: Vec<Seg>,
    seq: bool,
    next: usize,
}

/// A key whose value starts on a later line, or a list item whose content continues on this one.
struct Pending {
    col: usize,
    path: Vec<Seg>,
    /// YAML lets a list under a key start at the key's own column.
    seq_at_same_col: bool,
}

#[derive(Default)]
struct Builder {
    lines: HashMap<Vec<Seg>, usize>,
    frames: Vec<Frame>,
    pending: Option<Pending>,
    /// Lines more indented than this belong to a block scalar (`|`, `>`).
    block_scalar_above: Option<usize>,
    /// Open brackets of a flow collection continuing on later lines.
    flow_depth: i64,
}

impl LineIndex {
    /// Indexes `src`.
    pub(crate) fn build(src: &str) -> Self {
        let mut b = Builder::default();
        for (n, raw) in src.lines().enumerate() {
            let line = n + 1;
            let raw = raw.trim_end_matches('\r');
            if b.flow_depth > 0 {
                b.flow_depth += bracket_balance(raw);
                continue;
            }
            let content = raw.trim_start_matches(' ');
            let col = raw.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if let Some(above) = b.block_scalar_above {
                if col > above {
                    continue;
                }
                b.block_scalar_above = None;
            }
            if col == 0 && (content.starts_with("---") || content.starts_with("...") || content.starts_with('%')) {
                b.frames.clear();
                b.pending = None;
                continue;
            }
            b.node(line, col, content);
        }
        Self { lines: b.lines }
    }

    /// The line of `path`, or of its nearest indexed ancestor.
    pub(crate) fn line_of(&self, path: &[Seg]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| self.lines.get(&path[..n]).copied())
    }
}

impl Builder {
    fn node(&mut self, line: usize, col: usize, content: &str) {
        let is_seq = content == "-" || content.starts_with("- ");
        let key = if is_seq { None } else { split_key(content) };
        if !is_seq && key.is_none() {
            // A scalar continuation line or flow content: nothing to index.
            self.pending = None;
            return;
        }
        if let Some(p) = self.pending.take() {
            let opens = col > p.col || (is_seq && p.seq_at_same_col && col == p.col);
            if opens {
                self.frames.retain(|f| f.col < col || (f.col == col && f.seq != is_seq && is_seq));
                self.frames.push(Frame { col, path: p.path, seq: is_seq, next: 0 });
            }
        }
        while self.frames.last().is_some_and(|f| f.col > col || (f.col == col && f.seq != is_seq)) {
            self.frames.pop();
        }
        if self.frames.is_empty() {
            self.frames.push(Frame { col, path: Vec::new(), seq: is_seq, next: 0 });
        }
        let Some(top) = self.frames.last_mut() else { return };
        if top.col != col {
            return;
        }
        if is_seq {
            let mut path = top.path.clone();
            path.push(Seg::Index(top.next));
            top.next += 1;
            self.lines.insert(path.clone(), line);
            let rest = content[1..].trim_start_matches(' ');
            let rest_col = col + (content.len() - rest.len());
            self.pending = Some(Pending { col, path, seq_at_same_col: false });
            if !rest.is_empty() && !rest.starts_with('#') {
                self.node(line, rest_col, rest);
            }
        } else if let Some((k, value)) = key {
            let path = join(&top.path, &[k]);
            self.lines.insert(path.clone(), line);
            let value = value.trim();
            if value.is_empty() || value.starts_with('#') {
                self.pending = Some(Pending { col, path, seq_at_same_col: true });
            } else if value.starts_with('|') || value.starts_with('>') {
                self.block_scalar_above = Some(col);
            } else if value.starts_with('{') || value.starts_with('[') {
                self.flow_depth = bracket_balance(value).max(0);
            }
        }
    }
}

/// `key: value` → (`key`, `value`), for plain and quoted keys.
fn split_key(content: &str) -> Option<(&str, &str)> {
    if content.starts_with(['{', '[', '&', '*', '!', '?', '|', '>']) {
        return None;
    }
    let (key, after) = if let Some(q) = content.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = content[1..].find(q)? + 1;
        (&content[1..close], &content[close + 1..])
    } else {
        let colon = content
            .match_indices(':')
            .map(|(i, _)| i)
            .find(|&i| content[i + 1..].is_empty() || content[i + 1..].starts_with([' ', '\t']))?;
        (content[..colon].trim_end(), &content[colon..])
    };
    let value = after.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, value))
}

/// Opening minus closing brackets outside quotes.
fn bracket_balance(s: &str) -> i64 {
    let mut depth = 0;
    let mut quote = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') => break,
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Reads one file, collecting its problems.
pub(crate) struct Loader {
    file: String,
    index: LineIndex,
    /// The path and line of the first type error, as serde_yaml reports it from the text.
    first: Option<(Vec<Seg>, usize)>,
    errors: Vec<PolicyError>,
}

impl Loader {
    /// Parses `src`; `Full` is the whole document's typed form, read only to learn serde_yaml's line for its first
    /// type error. A syntax error ends loading: nothing after it can be trusted.
    pub(crate) fn start<Full: DeserializeOwned>(src: &str, file: &str) -> Result<(Self, Value), Vec<PolicyError>> {
        let value: Value = serde_yaml::from_str(src).map_err(|e| {
            vec![PolicyError {
                file: file.to_owned(),
                line: e.location().map(|l| l.line()),
                field: String::new(),
                message: format!("not valid YAML: {e}"),
            }]
        })?;
        let first = match serde_path_to_error::deserialize::<_, Full>(serde_yaml::Deserializer::from_str(src)) {
            Ok(_) => None,
            Err(e) => e.inner().location().map(|l| (segs(e.path()), l.line())),
        };
        let loader = Self { file: file.to_owned(), index: LineIndex::build(src), first, errors: Vec::new() };
        Ok((loader, value))
    }

    /// Reads `value`, found at `at`, as a `T`; records the problem and returns `None` when it is not one.
    pub(crate) fn read<T: DeserializeOwned>(&mut self, value: Value, at: &[Seg]) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut path: Vec<Seg> = at.iter().cloned().chain(segs(e.path())).collect();
                let first = self.first.as_ref().filter(|(p, _)| *p == path).map(|(_, line)| *line);
                let message = e.into_inner().to_string();
                // Inside a tagged enum (a check) serde buffers the mapping and the path stops at it; name the unknown
                // field anyway, since that is what the author has to delete.
                let unknown = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next());
                if let Some(name) = unknown.filter(|n| path.last() != Some(&Seg::Key((*n).to_owned()))) {
                    path.push(Seg::Key(name.to_owned()));
                }
                let line = first.or_else(|| self.index.line_of(&path));
                self.errors.push(PolicyError { file: self.file.clone(), line, field: render(&path), message });
                None
            }
        }
    }

    /// Records a semantic problem at `path`; `field` is how to show it (it may name the item).
    pub(crate) fn problem(&mut self, path: &[Seg], field: String, message: String) {
        let line = self.index.line_of(path);
        self.errors.push(PolicyError { file: self.file.clone(), line, field, message });
    }

    /// The line of `path`, for messages that point at another item.
    pub(crate) fn line_of(&self, path: &[Seg]) -> Option<usize> {
        self.index.line_of(path)
    }

    /// How many problems so far, so a caller can tell whether its own checks added any.
    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Every problem so far; for when loading cannot go on.
    pub(crate) fn fail<T>(self) -> Result<T, Vec<PolicyError>> {
        Err(self.errors)
    }

    /// `value` when nothing was wrong, else every problem.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Vec<PolicyError>> {
        if self.errors.is_empty() { Ok(value) } else { Err(self.errors) }
    }
}

fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// `policies[2] (name)` followed by `.rest`: how semantic problems name an item, so the author finds it by name.
pub(crate) fn labelled(item: &[Seg], label: &str, rest: &[&str]) -> (Vec<Seg>, String) {
    let path = join(item, rest);
    let mut field = render(item);
    if !label.is_empty() {
        field.push_str(&format!(" ({label})"));
    }
    for k in rest {
        field.push('.');
        field.push_str(k);
    }
    (path, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        // "a[1].b" → segments, for readable tests
        let mut out = Vec::new();
        for part in s.split('.') {
            let mut it = part.split('[');
            if let Some(k) = it.next().filter(|k| !k.is_empty()) {
                out.push(Seg::Key(k.to_owned()));
            }
            for idx in it {
                out.push(Seg::Index(idx.trim_end_matches(']').parse().unwrap()));
            }
        }
        out
    }

    #[test]
    fn block_style_fields_are_indexed_by_path() {
        // GIVEN a block-style document with lists at and below their key's column, comments and a block scalar
        let src = "\
# header
settings:
  fallback-owner: a@b.c
policies:
- name: one
  description: |
    text: not a key
  check: { type: x,
    port: 22 }
  action:
    type: stop
- name: two
  tags:
    - a
    - b
other: 1
";
        // WHEN indexed
        let ix = LineIndex::build(src);
        // THEN keys, items and nested keys have their lines, and unknown paths fall back to their ancestors
        assert_eq!(ix.line_of(&p("settings.fallback-owner")), Some(3));
        assert_eq!(ix.line_of(&p("policies")), Some(4));
        assert_eq!(ix.line_of(&p("policies[0]")), Some(5));
        assert_eq!(ix.line_of(&p("policies[0].name")), Some(5));
        assert_eq!(ix.line_of(&p("policies[0].check")), Some(8));
        assert_eq!(ix.line_of(&p("policies[0].check.type")), Some(8));
        assert_eq!(ix.line_of(&p("policies[0].action.type")), Some(11));
        assert_eq!(ix.line_of(&p("policies[1]")), Some(12));
        assert_eq!(ix.line_of(&p("policies[1].tags[1]")), Some(15));
        assert_eq!(ix.line_of(&p("policies[1].grace")), Some(12));
        assert_eq!(ix.line_of(&p("other")), Some(16));
        assert_eq!(ix.line_of(&p("text")), None);
    }

    #[test]
    fn indented_lists_and_quoted_keys_are_indexed() {
        // GIVEN a list indented under its key and a quoted key
        let src = "exceptions:\n  - policy: a\n    \"tags\":\n      env: x\n  - policy: b\n";
        // WHEN indexed THEN both items and the nested key are found
        let ix = LineIndex::build(src);
        assert_eq!(ix.line_of(&p("exceptions[0].tags.env")), Some(4));
        assert_eq!(ix.line_of(&p("exceptions[1].policy")), Some(5));
    }

    #[test]
    fn items_are_labelled_by_name() {
        // GIVEN an item path WHEN labelled THEN the field names it and the path points into it
        let (path, field) = labelled(&p("policies[2]"), "ec2-stale-instance", &["action", "type"]);
        assert_eq!(field, "policies[2] (ec2-stale-instance).action.type");
        assert_eq!(render(&path), "policies[2].action.type");
    }
}
