//! The Prometheus text exposition format (version 0.0.4) the kubelet's metrics endpoints
//! answer in: one `# HELP` and `# TYPE` per family, then its samples, label values escaped.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
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

/// One sample: its labels in order, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self { name, help, kind, samples: Vec::new() }
    }
    /// Adds a sample; returns self for chaining.
    pub fn with(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        self.samples.push(Sample { labels, value });
        self
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` for the values metrics carry; `+Inf`, `-Inf`,
/// `NaN` as Prometheus spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.fract() == 0.0 && v.abs() < 1e21 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The families in the text format; a family without samples is left out, as client_golang
/// does.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(f.help));
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", format_value(s.value));
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
            Family::new("kubelet_node_name", "[ALPHA] The node's name. The count is always 1.", Kind::Gauge)
                .with(vec![("node", "n1".into())], 1.0),
            Family::new("empty_total", "nothing yet", Kind::Counter),
            Family::new("x_total", "a \\ b\nc", Kind::Counter)
                .with(vec![("a", "q\"uote\\\n".into()), ("b", String::new())], 2.5)
                .with(vec![], 3.0),
        ];
        assert_eq!(
            render(&fams),
            "# HELP kubelet_node_name [ALPHA] The node's name. The count is always 1.\n\
             # TYPE kubelet_node_name gauge\n\
             kubelet_node_name{node=\"n1\"} 1\n\
             # HELP x_total a \\\\ b\\nc\n\
             # TYPE x_total counter\n\
             x_total{a=\"q\\\"uote\\\\\\n\",b=\"\"} 2.5\n\
             x_total 3\n"
        );
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(0.25), "0.25");
    }
}
