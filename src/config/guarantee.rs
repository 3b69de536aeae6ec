//! `[kafka]` properties that would void the delivery guarantee, refused at start: the processor's
//! own client settings are what the guarantee rests on (README, "Delivery guarantees"), and a raw
//! property overrides them silently, so one that breaks it is a configuration error, with why and
//! what to do in the message.

use super::{Config, Guarantee, KafkaProperties};

/// `transaction.timeout.ms` as the processor sets it (`kafka::client::producer_config`).
pub const TRANSACTION_TIMEOUT_MS: u64 = 10_000;

impl Config {
    /// Refuses `[kafka]` (and `[clusters.<name>.kafka]`) properties that void the guarantee.
    pub(super) fn check_guarantee_overrides(&self) -> Result<(), String> {
        check_table("kafka", &self.kafka, self.processing_guarantee)?;
        for (name, cluster) in &self.clusters {
            check_table(
                &format!("clusters.{name}.kafka"),
                &cluster.kafka,
                self.processing_guarantee,
            )?;
        }
        if self.processing_guarantee == Guarantee::ExactlyOnce {
            let timeout = match lookup(&self.kafka, &["transaction.timeout.ms"]) {
                None => TRANSACTION_TIMEOUT_MS,
                Some((_, v)) => v.parse().map_err(|_| {
                    format!(
                        "kafka.\"transaction.timeout.ms\" = {v:?} is not a number of milliseconds"
                    )
                })?,
            };
            // A transaction stays open for a commit interval and then for its commit, which
            // waits for every output of it to be acknowledged: the broker aborts one open longer
            // than transaction.timeout.ms, so every commit would fail and rewind.
            if self.commit_interval_ms.saturating_mul(2) > timeout {
                return Err(format!(
                    "commit_interval_ms = {} does not fit transaction.timeout.ms = {timeout}: a \
                     transaction is open for the commit interval and then for its commit, and the \
                     broker aborts one open longer than transaction.timeout.ms, so commits would \
                     fail and rewind. Keep commit_interval_ms at most half of it (lower \
                     commit_interval_ms, or raise kafka.\"transaction.timeout.ms\" within the \
                     broker's transaction.max.timeout.ms)",
                    self.commit_interval_ms
                ));
            }
        }
        Ok(())
    }
}

/// The first of `names` (a property and its librdkafka aliases) set in `table`, as librdkafka
/// reads it.
fn lookup(table: &KafkaProperties, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|n| table.get(n).map(|v| (*n, v.trim().to_ascii_lowercase())))
}

/// librdkafka's booleans; `None` for anything else (librdkafka would refuse it too).
fn boolean(v: &str) -> Option<bool> {
    match v {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

fn check_table(
    table_name: &str,
    table: &KafkaProperties,
    guarantee: Guarantee,
) -> Result<(), String> {
    let eos = guarantee == Guarantee::ExactlyOnce;
    let refuse = |key: &str, value: &str, why: &str, what: &str| {
        Err(format!(
            "{table_name}.\"{key}\" = {value:?} voids the {} guarantee: {why}. {what}",
            match guarantee {
                Guarantee::AtLeastOnce => "at_least_once",
                Guarantee::ExactlyOnce => "exactly_once",
            }
        ))
    };
    if let Some((k, v)) = lookup(table, &["enable.auto.offset.store"]) {
        if boolean(&v) != Some(false) {
            return refuse(
                k,
                &v,
                "librdkafka would store (and commit) the offset of every record as soon as it is \
                 read, before its output is acknowledged, so a crash loses the records in flight",
                "Remove it: the processor stores an offset once its record is done",
            );
        }
    }
    if let Some((k, v)) = lookup(table, &["enable.auto.commit", "auto.commit.enable"]) {
        match (eos, boolean(&v)) {
            (true, Some(false)) | (false, Some(true)) => {}
            (true, _) => {
                return refuse(
                    k,
                    &v,
                    "offsets would be committed outside the transactions, past outputs that may \
                     still be aborted",
                    "Remove it: under exactly_once the offsets are committed in each transaction",
                )
            }
            (false, _) => {
                return refuse(
                    k,
                    &v,
                    "the processor commits the offsets of finished records through librdkafka's \
                     auto-commit every second; without it, a crash would repeat everything since \
                     the last rebalance",
                    "Remove it (auto.commit.interval.ms tunes how often)",
                )
            }
        }
    }
    if let Some((k, v)) = lookup(table, &["enable.idempotence"]) {
        if boolean(&v) != Some(true) {
            return refuse(
                k,
                &v,
                "librdkafka's own retries could then write an output twice or out of order, and \
                 exactly_once's transactions need the idempotent producer",
                "Remove it",
            );
        }
    }
    if let Some((k, v)) = lookup(table, &["acks", "request.required.acks"]) {
        if v != "all" && v != "-1" {
            return refuse(
                k,
                &v,
                "an output acknowledged by fewer than all in-sync replicas is lost when its \
                 leader fails, after its input offset was committed",
                "Remove it (the processor uses acks=all; min.insync.replicas on the topic sets \
                 how many replicas that is)",
            );
        }
    }
    if eos {
        if let Some((k, v)) = lookup(table, &["isolation.level"]) {
            if v != "read_committed" {
                return refuse(
                    k,
                    &v,
                    "input (and the state changelog, on restore) would be read including \
                     transactions that are later aborted",
                    "Remove it: under exactly_once the processor reads with read_committed",
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(guarantee: Guarantee, kafka: &[(&str, toml::Value)]) -> Config {
        Config {
            processing_guarantee: guarantee,
            kafka: {
                let mut t = KafkaProperties::default();
                for (k, v) in kafka {
                    t.insert(k.to_string(), v.clone());
                }
                t
            },
            ..Config::default()
        }
    }

    fn refused(c: &Config) -> String {
        c.validate().expect_err("must be refused").to_string()
    }

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }

    use Guarantee::{AtLeastOnce as Alo, ExactlyOnce as Eos};

    #[test]
    fn the_processors_own_settings_and_unrelated_properties_pass() {
        for g in [Alo, Eos] {
            let ok = with(
                g,
                &[
                    ("linger.ms", s("10")),
                    ("acks", s("all")),
                    ("enable.idempotence", toml::Value::Boolean(true)),
                    ("enable.auto.offset.store", s("false")),
                ],
            );
            ok.validate().unwrap();
            with(g, &[("request.required.acks", toml::Value::Integer(-1))])
                .validate()
                .unwrap();
        }
        with(Alo, &[("enable.auto.commit", s("true"))])
            .validate()
            .unwrap();
        with(Eos, &[("enable.auto.commit", toml::Value::Boolean(false))])
            .validate()
            .unwrap();
        with(Eos, &[("isolation.level", s("read_committed"))])
            .validate()
            .unwrap();
        // At-least-once reads whatever the producers wrote: read_uncommitted is the user's choice.
        with(Alo, &[("isolation.level", s("read_uncommitted"))])
            .validate()
            .unwrap();
    }

    #[test]
    fn enable_auto_offset_store_is_refused() {
        for g in [Alo, Eos] {
            let e = refused(&with(g, &[("enable.auto.offset.store", s("true"))]));
            assert!(
                e.contains("kafka.\"enable.auto.offset.store\"")
                    && e.contains("a crash loses")
                    && e.contains("Remove it"),
                "{e}"
            );
        }
    }

    #[test]
    fn enable_auto_commit_against_the_guarantee_is_refused() {
        let e = refused(&with(Eos, &[("enable.auto.commit", s("true"))]));
        assert!(
            e.contains("exactly_once") && e.contains("outside the transactions"),
            "{e}"
        );
        let e = refused(&with(
            Eos,
            &[("auto.commit.enable", toml::Value::Boolean(true))],
        ));
        assert!(e.contains("auto.commit.enable"), "{e}");
        let e = refused(&with(Alo, &[("enable.auto.commit", s("false"))]));
        assert!(
            e.contains("at_least_once") && e.contains("auto-commit every second"),
            "{e}"
        );
    }

    #[test]
    fn a_producer_that_is_not_idempotent_is_refused() {
        for g in [Alo, Eos] {
            let e = refused(&with(g, &[("enable.idempotence", s("false"))]));
            assert!(
                e.contains("enable.idempotence") && e.contains("twice or out of order"),
                "{e}"
            );
        }
    }

    #[test]
    fn acks_other_than_all_are_refused() {
        for g in [Alo, Eos] {
            for v in [s("1"), s("0"), toml::Value::Integer(1)] {
                let e = refused(&with(g, &[("acks", v)]));
                assert!(e.contains("fewer than all in-sync replicas"), "{e}");
            }
            let e = refused(&with(g, &[("request.required.acks", s("1"))]));
            assert!(e.contains("request.required.acks"), "{e}");
        }
    }

    #[test]
    fn read_uncommitted_under_exactly_once_is_refused() {
        let e = refused(&with(Eos, &[("isolation.level", s("read_uncommitted"))]));
        assert!(
            e.contains("isolation.level") && e.contains("later aborted"),
            "{e}"
        );
    }

    #[test]
    fn a_regional_clusters_properties_are_checked_too() {
        let mut c = with(Alo, &[]);
        let cluster: crate::residency::ClusterConfig =
            toml::from_str("brokers = \"eu:9092\"\n[kafka]\nacks = \"1\"\n").unwrap();
        c.clusters.insert("eu".into(), cluster);
        let e = c.check_guarantee_overrides().unwrap_err();
        assert!(e.contains("clusters.eu.kafka.\"acks\""), "{e}");
    }

    #[test]
    fn a_commit_interval_that_does_not_fit_the_transaction_timeout_is_refused() {
        let mut c = with(Eos, &[]);
        c.commit_interval_ms = 5_000;
        c.validate().unwrap();
        c.commit_interval_ms = 5_001;
        let e = refused(&c);
        assert!(
            e.contains("commit_interval_ms = 5001")
                && e.contains("transaction.timeout.ms = 10000")
                && e.contains("at most half"),
            "{e}"
        );
        // A longer transaction time-out makes room for it.
        c.kafka.insert("transaction.timeout.ms".into(), s("60000"));
        c.validate().unwrap();
        c.kafka.insert("transaction.timeout.ms".into(), s("8000"));
        c.commit_interval_ms = 4_500;
        assert!(refused(&c).contains("transaction.timeout.ms = 8000"));
        // At-least-once has no transactions.
        c.processing_guarantee = Alo;
        c.validate().unwrap();
    }
}
