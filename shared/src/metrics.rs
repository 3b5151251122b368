//! Metrics as CloudWatch Embedded Metric Format lines: written to stdout, turned into metrics by CloudWatch Logs
//! without an API call in the hot path.

use serde_json::{Map, Value, json};

/// Unit of a metric value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count of things.
    Count,
    /// Milliseconds.
    Milliseconds,
    /// Bytes.
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// A set of metric values sharing dimensions, emitted as one EMF document.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: &'static str,
    dimensions: Vec<(String, String)>,
    values: Vec<(&'static str, f64, Unit)>,
}

/// Our CloudWatch namespace.
pub const NAMESPACE: &str = "Palisade";

impl Metrics {
    /// Metrics dimensioned by function name.
    pub fn for_function(function: &str) -> Self {
        Self { namespace: NAMESPACE, dimensions: vec![("function".into(), function.into())], values: Vec::new() }
    }

    /// Adds a value.
    pub fn put(&mut self, name: &'static str, value: f64, unit: Unit) -> &mut Self {
        self.values.push((name, value, unit));
        self
    }

    /// The EMF document.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let dims: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
        let defs: Vec<Value> = self.values.iter().map(|(n, _, u)| json!({"Name": n, "Unit": u.as_str()})).collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": [dims], "Metrics": defs}]
            }),
        );
        for (k, v) in &self.dimensions {
            doc.insert(k.clone(), Value::String(v.clone()));
        }
        for (n, v, _) in &self.values {
            doc.insert((*n).to_owned(), json!(v));
        }
        Value::Object(doc)
    }

    /// Prints the document as one stdout line.
    pub fn emit(&self) {
        if self.values.is_empty() {
            return;
        }
        println!("{}", self.to_emf(chrono::Utc::now().timestamp_millis()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_value() {
        let mut m = Metrics::for_function("enforce-stop-instance");
        m.put("RecordsFailed", 2.0, Unit::Count).put("DurationMs", 12.5, Unit::Milliseconds);
        let doc = m.to_emf(1_700_000_000_000);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Palisade");
        assert_eq!(cw["Dimensions"][0][0], "function");
        assert_eq!(cw["Metrics"][1]["Name"], "DurationMs");
        assert_eq!(cw["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(doc["function"], "enforce-stop-instance");
        assert_eq!(doc["RecordsFailed"], 2.0);
    }
}
