//! The status page's webhook endpoints (with `run --webhooks`): each endpoint's state (up or
//! down, and for how long) and lag, by name, read from the metrics as `/metrics` shows them.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::metrics::Metrics;

/// `[{"name", "up", "down_secs", "lag"}]`, by name; empty without webhook endpoints.
pub fn endpoints(metrics: &Metrics) -> Vec<Value> {
    const GAUGES: [(&str, &str); 3] = [
        ("aepiot_webhook_endpoint_up", "up"),
        ("aepiot_webhook_endpoint_down_seconds", "down_secs"),
        ("aepiot_webhook_lag", "lag"),
    ];
    let mut rows: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for family in metrics.registry.gather() {
        let Some((_, field)) = GAUGES.iter().find(|(n, _)| *n == family.name()) else {
            continue;
        };
        for metric in family.get_metric() {
            let Some(name) = metric
                .get_label()
                .iter()
                .find(|l| l.name() == "endpoint")
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            let v = metric.get_gauge().value();
            let value = match *field {
                "up" => json!(v >= 1.0),
                "down_secs" => json!(v.floor() as u64),
                _ => json!(v as i64),
            };
            rows.entry(name)
                .or_default()
                .insert(field.to_string(), value);
        }
    }
    rows.into_iter()
        .filter(|(_, row)| row.contains_key("up"))
        .map(|(name, mut row)| {
            row.insert("name".into(), name.into());
            Value::Object(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_with_its_state_time_down_and_lag() {
        let m = Metrics::new();
        assert!(endpoints(&m).is_empty());
        let w = &m.webhook;
        w.endpoint_up.with_label_values(&["crm"]).set(1);
        w.endpoint_down_seconds.with_label_values(&["crm"]).set(0.0);
        w.lag.with_label_values(&["crm"]).set(3);
        w.endpoint_up.with_label_values(&["billing"]).set(0);
        w.endpoint_down_seconds
            .with_label_values(&["billing"])
            .set(75.6);
        w.lag.with_label_values(&["billing"]).set(12_000);
        assert_eq!(
            Value::Array(endpoints(&m)),
            json!([
                {"name": "billing", "up": false, "down_secs": 75, "lag": 12000},
                {"name": "crm", "up": true, "down_secs": 0, "lag": 3},
            ])
        );
    }
}
