//! The end-of-run report: one ordered list of named figures, printed as a readable table on
//! stdout and as ONE JSON line (field order as built, so lines from different runs line up).
//! The field names are documented in the crate README.

use std::fmt::Write as _;

use serde_json::Value;

use crate::stats::Percentiles;

/// One figure: a JSON value or a nested group.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    Value(Value),
    Group(Summary),
}

/// Named figures in the order they were set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    fields: Vec<(String, Field)>,
}

/// Rounds to 3 decimals: enough for ms and s, and keeps the JSON readable.
pub fn round3(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

impl Summary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a value (replacing an earlier one of the same name in place). Floats are
    /// rounded to 3 decimals; non-finite ones become 0.
    pub fn set(&mut self, key: &str, v: impl Into<Value>) -> &mut Self {
        let mut v = v.into();
        if let Some(f) = v.as_f64().filter(|_| v.is_f64()) {
            v = Value::from(round3(f));
        }
        self.put(key, Field::Value(v));
        self
    }

    pub fn group(&mut self, key: &str, g: Summary) -> &mut Self {
        self.put(key, Field::Group(g));
        self
    }

    /// `{count, p50, p90, p99, max, mean}` in milliseconds.
    pub fn percentiles(&mut self, key: &str, p: &Percentiles) -> &mut Self {
        let mut g = Summary::new();
        g.set("count", p.count)
            .set("p50", p.p50)
            .set("p90", p.p90)
            .set("p99", p.p99)
            .set("max", p.max)
            .set("mean", p.mean);
        self.group(key, g)
    }

    fn put(&mut self, key: &str, f: Field) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = f,
            None => self.fields.push((key.to_owned(), f)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, f)| f)
    }

    /// A top-level value, for tests and exit-code decisions.
    pub fn value(&self, key: &str) -> Option<&Value> {
        match self.get(key)? {
            Field::Value(v) => Some(v),
            Field::Group(_) => None,
        }
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.value(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The whole summary as a JSON value (object keys then sort, see [`Summary::to_json`]
    /// for the ordered text).
    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (k, f) in &self.fields {
            let v = match f {
                Field::Value(v) => v.clone(),
                Field::Group(g) => g.to_value(),
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    }

    /// One line of JSON, fields in the order they were set.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, (k, f)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(k.as_str()).to_string());
            out.push(':');
            match f {
                Field::Value(v) => out.push_str(&v.to_string()),
                Field::Group(g) => g.write_json(out),
            }
        }
        out.push('}');
    }

    /// A two-column table; groups are written as `group.key` rows.
    pub fn to_table(&self) -> String {
        let mut rows = Vec::new();
        self.rows("", &mut rows);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }

    fn rows(&self, prefix: &str, rows: &mut Vec<(String, String)>) {
        for (k, f) in &self.fields {
            let name = format!("{prefix}{k}");
            match f {
                Field::Group(g) => g.rows(&format!("{name}."), rows),
                Field::Value(Value::String(s)) => rows.push((name, s.clone())),
                Field::Value(Value::Array(items)) if items.is_empty() => {
                    rows.push((name, "-".into()))
                }
                Field::Value(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let v = match item {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        rows.push((if i == 0 { name.clone() } else { String::new() }, v));
                    }
                }
                Field::Value(v) => rows.push((name, v.to_string())),
            }
        }
    }
}

/// What a scenario hands back: the summary and, when the run is not clean, why.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub summary: Summary,
    /// Failures, losses or refusals that make the exit code 1; empty for a clean run.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_json_and_table() {
        let mut s = Summary::new();
        s.set("scenario", "connect")
            .set("users", 3u64)
            .set("rate", 1.23456);
        let mut server = Summary::new();
        server.set("cpu_s", 0.5).set("rss_kb_before", 100u64);
        s.group("server", server);
        s.set("failure_reasons", vec!["a", "b"]);
        s.set("users", 4u64);
        assert_eq!(
            s.to_json(),
            r#"{"scenario":"connect","users":4,"rate":1.235,"server":{"cpu_s":0.5,"rss_kb_before":100},"failure_reasons":["a","b"]}"#
        );
        let parsed: Value = serde_json::from_str(&s.to_json()).expect("valid JSON");
        assert_eq!(parsed, s.to_value());
        let table = s.to_table();
        assert!(table.contains("server.cpu_s"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.trim_start().starts_with("failure_reasons") && l.ends_with(" a")),
            "{table}"
        );
        assert_eq!(s.u64("users"), 4);
        assert_eq!(round3(f64::NAN), 0.0);
    }
}
