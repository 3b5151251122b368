//! Configuration from the environment, read once at start-up.
//!
//! A function reads every variable it needs into a typed value in one pass and fails its cold start with one
//! error that lists every missing or malformed variable, rather than failing on the thousandth message.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Collects typed values and the problems found while reading them.
pub struct Env {
    vars: HashMap<String, String>,
    problems: Vec<String>,
}

/// Every problem found in the environment, reported together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration is invalid: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One line per variable.
    pub problems: Vec<String>,
}

impl Env {
    /// Snapshot of the process environment.
    pub fn from_process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    /// From given variables (tests, the operator CLI).
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self { vars, problems: Vec::new() }
    }

    /// A required variable; records a problem naming it when it is missing, empty or invalid.
    pub fn required<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.vars.get(name).map(|v| v.trim()) {
            None | Some("") => {
                self.problems.push(format!("{name} is not set"));
                None
            }
            Some(raw) => {
                let raw = raw.to_owned();
                self.parse(name, &raw)
            }
        }
    }

    /// An optional variable with a default.
    pub fn optional<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.vars.get(name).map(|v| v.trim()) {
            None | Some("") => default,
            Some(raw) => {
                let raw = raw.to_owned();
                self.parse(name, &raw).unwrap_or(default)
            }
        }
    }

    /// A duration given in whole seconds; the variable name carries the unit (`..._SECS`).
    pub fn secs(&mut self, name: &str, default: Duration) -> Duration {
        Duration::from_secs(self.optional(name, default.as_secs()))
    }

    fn parse<T>(&mut self, name: &str, raw: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match raw.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(format!("{name} is invalid: {e}"));
                None
            }
        }
    }

    /// Ends reading: an error lists every problem; values read as `None` are only used after this succeeds.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() { Ok(()) } else { Err(ConfigError { problems: self.problems }) }
    }
}

/// Builds a required value after [`Env::finish`] succeeded; the `None` case cannot happen then, but it is still
/// an error rather than a panic.
pub fn got<T>(v: Option<T>, name: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ConfigError { problems: vec![format!("{name} is not set")] })
}

macro_rules! arn_like {
    ($(#[$doc:meta])* $name:ident, $check:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub struct $name(String);
        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let check: fn(&str) -> bool = $check;
                if check(s) { Ok(Self(s.to_owned())) } else { Err(format!("{s:?} is not {}", $what)) }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

arn_like!(
    /// An SNS topic ARN.
    TopicArn,
    |s| s.starts_with("arn:") && s.split(':').count() == 6 && s.contains(":sns:"),
    "an SNS topic ARN"
);
arn_like!(
    /// An SQS queue URL (what SendMessage takes).
    QueueUrl,
    |s| (s.starts_with("https://") || s.starts_with("http://")) && s.trim_end_matches('/').rsplit('/').next().is_some_and(|n| !n.is_empty()),
    "an SQS queue URL"
);
arn_like!(
    /// A DynamoDB table name.
    TableName,
    |s| (3..=255).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)),
    "a DynamoDB table name"
);
arn_like!(
    /// An S3 bucket name.
    BucketName,
    |s| (3..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.']),
    "an S3 bucket name"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn every_missing_and_invalid_variable_is_named_at_once() {
        let mut e = env(&[("B", "not-an-arn"), ("C", "")]);
        let _: Option<TableName> = e.required("A_TABLE");
        let _: Option<TopicArn> = e.required("B");
        let _: Option<QueueUrl> = e.required("C");
        let err = e.finish().unwrap_err();
        assert_eq!(err.problems.len(), 3);
        let msg = err.to_string();
        assert!(msg.contains("A_TABLE is not set"), "{msg}");
        assert!(msg.contains("B is invalid"), "{msg}");
        assert!(msg.contains("C is not set"), "{msg}");
    }

    #[test]
    fn good_values_parse_into_types() {
        let mut e = env(&[
            ("T", "arn:aws:sns:eu-west-1:123456789012:alerts"),
            ("Q", "http://127.0.0.1:5000/123456789012/dlq"),
            ("D", "ledger-table"),
            ("S", "90"),
        ]);
        let t: Option<TopicArn> = e.required("T");
        let q: Option<QueueUrl> = e.required("Q");
        let d: Option<TableName> = e.required("D");
        let s = e.secs("S", Duration::from_secs(5));
        let n = e.optional("NOT_THERE", 4usize);
        assert!(e.finish().is_ok());
        assert_eq!(t.unwrap().as_str(), "arn:aws:sns:eu-west-1:123456789012:alerts");
        assert!(q.is_some() && d.is_some());
        assert_eq!(s, Duration::from_secs(90));
        assert_eq!(n, 4);
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        assert!("acme-inbox".parse::<BucketName>().is_ok());
        assert!("Acme".parse::<BucketName>().is_err());
        assert!("-x-".parse::<BucketName>().is_err());
        assert!("ab".parse::<BucketName>().is_err());
    }
}
