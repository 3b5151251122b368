//! The one error type of both files: where the problem is and what it is.

use std::fmt;

/// One problem in a policies or exceptions file.
///
/// Parsing collects every problem rather than stopping at the first, so that the security team fixes a file in
/// one round; each carries the file, line and field so the message points at the text to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The file name the caller passed (e.g. `policies.yaml`).
    pub file: String,
    /// 1-based line, when it is known.
    pub line: Option<usize>,
    /// Path of the offending field, such as `policies[2].grace` or `policies[2] (ec2-stale-instance).action.type`;
    /// empty for problems with the file as a whole (YAML syntax).
    pub field: String,
    /// What is wrong, in words the author can act on.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_field_and_message() {
        // GIVEN an error with every part, and one without a line or field
        let full = PolicyError {
            file: "policies.yaml".into(),
            line: Some(14),
            field: "policies[2].grace".into(),
            message: "\"3x\" is not a duration (use 30m, 12h, 3d or 2w)".into(),
        };
        let bare = PolicyError { file: "x.yaml".into(), line: None, field: String::new(), message: "empty".into() };
        // WHEN they are displayed
        // THEN they read like compiler messages
        assert_eq!(
            full.to_string(),
            "policies.yaml:14: policies[2].grace: \"3x\" is not a duration (use 30m, 12h, 3d or 2w)"
        );
        assert_eq!(bare.to_string(), "x.yaml: empty");
    }
}
