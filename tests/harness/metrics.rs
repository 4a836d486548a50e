//! The edge's Prometheus text exposition, read back as numbers.

#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            text: text.to_owned(),
        }
    }

    /// The sum of `name` over all its label sets; `None` when the family is absent.
    pub fn value(&self, name: &str) -> Option<f64> {
        let mut found = None;
        for line in self.text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let after_labels = if rest.starts_with('{') {
                match rest.find('}') {
                    Some(end) => &rest[end + 1..],
                    None => continue,
                }
            } else if rest.starts_with(' ') {
                rest
            } else {
                continue; // a longer name sharing the prefix
            };
            if let Some(v) = after_labels
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                found = Some(found.unwrap_or(0.0) + v);
            }
        }
        found
    }

    /// Like [`Metrics::value`], panicking with the exposition when the family is missing.
    #[track_caller]
    pub fn require(&self, name: &str) -> f64 {
        self.value(name).unwrap_or_else(|| {
            panic!(
                "metric {name} missing from the edge's /metrics:\n{}",
                self.text
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_and_ignores_prefixes() {
        let m = Metrics::parse(
            "# HELP grantwire_edge_dropped_unpinned_total x\n\
             # TYPE grantwire_edge_dropped_unpinned_total counter\n\
             grantwire_edge_dropped_unpinned_total{family=\"v4\"} 3\n\
             grantwire_edge_dropped_unpinned_total{family=\"v6\"} 2\n\
             grantwire_edge_dropped_unpinned_total_extra 100\n\
             grantwire_edge_bytes_sent_unpinned_total 0\n",
        );
        assert_eq!(m.value("grantwire_edge_dropped_unpinned_total"), Some(5.0));
        assert_eq!(
            m.value("grantwire_edge_bytes_sent_unpinned_total"),
            Some(0.0)
        );
        assert_eq!(m.value("grantwire_edge_nothing"), None);
    }
}
