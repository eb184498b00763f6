//! The Prometheus text exposition format (version 0.0.4) the kubelet's metrics endpoints
//! answer in: one `# HELP` and `# TYPE` per family, then its samples, label values escaped.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: upstream's name and help text (with its stability prefix, e.g.
/// `[ALPHA] `), and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// One sample: its labels in order, its value, and the time it was measured (milliseconds since
/// the epoch) when the source gives one.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    /// A histogram's series: `_bucket` (with `le`), `_sum` or `_count`; empty otherwise.
    pub suffix: &'static str,
    pub le: Option<f64>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self { name, help, kind, samples: Vec::new() }
    }
    /// Adds a sample; returns self for chaining.
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        self.samples.push(Sample { labels, value, timestamp_ms: None, suffix: "", le: None });
        self
    }
    /// Adds a histogram's series: cumulative `buckets` (upper bound, count), then `+Inf`,
    /// `_sum` and `_count`.
    pub fn with_histogram(
        mut self,
        labels: Vec<(&'static str, String)>,
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> Self {
        let sample = |suffix, value, le| Sample { labels: labels.clone(), value, timestamp_ms: None, suffix, le };
        for (upper, n) in buckets {
            self.samples.push(sample("_bucket", *n as f64, Some(*upper)));
        }
        self.samples.push(sample("_bucket", count as f64, Some(f64::INFINITY)));
        self.samples.push(sample("_sum", sum, None));
        self.samples.push(sample("_count", count as f64, None));
        self
    }
    /// Adds a sample measured at `timestamp_ms`.
    pub fn with_at(mut self, labels: Vec<(&'static str, String)>, value: f64, timestamp_ms: i64) -> Self {
        self.samples.push(Sample { labels, value, timestamp_ms: Some(timestamp_ms), suffix: "", le: None });
        self
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, as client_golang writes values: the shortest
/// digits, in exponent form (`1.8571264e+07`) when the exponent is below -4 or at least 6;
/// `+Inf`, `-Inf`, `NaN` as Prometheus spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// The families in the text format; a family without samples is left out, as client_golang
/// does.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    // client_golang's Gather: families by name, samples by their label values.
    let mut sorted: Vec<&Family> = families.iter().filter(|f| !f.samples.is_empty()).collect();
    sorted.sort_by_key(|f| f.name);
    for f in sorted {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        let mut samples: Vec<&Sample> = f.samples.iter().collect();
        samples.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in samples {
            out.push_str(f.name);
            out.push_str(s.suffix);
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
            if let Some(le) = s.le {
                labels.push(format!("le=\"{}\"", format_value(le)));
            }
            if !labels.is_empty() {
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = match s.timestamp_ms {
                Some(ts) => writeln!(out, " {} {ts}", format_value(s.value)),
                None => writeln!(out, " {}", format_value(s.value)),
            };
        }
    }
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let fams = vec![
            Family::new("x_total", "a \\ b\nc", Kind::Counter)
                .with(vec![("a", "q\"uote\\\n".into()), ("b", String::new())], 2.5)
                .with(vec![], 3.0),
            Family::new("node_cpu_usage_seconds_total", "[STABLE] c", Kind::Counter).with_at(
                vec![],
                1.5,
                1700000000123,
            ),
            Family::new("kubelet_node_name", "[ALPHA] The node's name. The count is always 1.", Kind::Gauge)
                .with(vec![("node", "n1".into())], 1.0),
            Family::new("empty_total", "nothing yet", Kind::Counter),
        ];
        assert_eq!(
            render(&fams),
            "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
             # TYPE kubelet_node_name gauge\n\
             kubelet_node_name{node=\"n1\"} 1\n\
             # HELP node_cpu_usage_seconds_total [STABLE] c\n\
             # TYPE node_cpu_usage_seconds_total counter\n\
             node_cpu_usage_seconds_total 1.5 1700000000123\n\
             # HELP x_total a \\\\ b\\nc\n\
             # TYPE x_total counter\n\
             x_total 3\n\
             x_total{a=\"q\\\"uote\\\\\\n\",b=\"\"} 2.5\n"
        );
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        let h = Family::new("op_seconds", "[ALPHA] d", Kind::Histogram)
            .with_histogram(vec![("operation_type", "b".into())], &[(0.5, 1), (1.0, 2)], 1.25, 3)
            .with_histogram(vec![("operation_type", "a".into())], &[(0.5, 0), (1.0, 0)], 0.0, 0);
        assert_eq!(
            render(&[h]),
            "# HELP op_seconds [ALPHA] d\n# TYPE op_seconds histogram\n\
             op_seconds_bucket{operation_type=\"a\",le=\"0.5\"} 0\n\
             op_seconds_bucket{operation_type=\"a\",le=\"1\"} 0\n\
             op_seconds_bucket{operation_type=\"a\",le=\"+Inf\"} 0\n\
             op_seconds_sum{operation_type=\"a\"} 0\n\
             op_seconds_count{operation_type=\"a\"} 0\n\
             op_seconds_bucket{operation_type=\"b\",le=\"0.5\"} 1\n\
             op_seconds_bucket{operation_type=\"b\",le=\"1\"} 2\n\
             op_seconds_bucket{operation_type=\"b\",le=\"+Inf\"} 3\n\
             op_seconds_sum{operation_type=\"b\"} 1.25\n\
             op_seconds_count{operation_type=\"b\"} 3\n"
        );
        assert_eq!(format_value(0.25), "0.25");
        // Go's 'g' with the shortest digits, as client_golang writes values.
        assert_eq!(format_value(18571264.0), "1.8571264e+07");
        assert_eq!(format_value(123456.0), "123456");
        assert_eq!(format_value(1_000_000.0), "1e+06");
        assert_eq!(format_value(0.00001), "1e-05");
        assert_eq!(format_value(0.0001), "0.0001");
        assert_eq!(format_value(-2.5), "-2.5");
    }
}
