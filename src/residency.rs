//! Data residency: where each region's URL records go — a topic, and optionally another Kafka
//! cluster (`output_topics_by_region`, `[clusters.<name>]`). Pure: the routing plan the Kafka
//! adapter follows, and the checks that refuse an impossible one at start.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::security::SecurityConfig;

/// The `cluster` label of the main cluster (`brokers`, `[security]`) in metrics; so no
/// `[clusters.main]`.
pub const MAIN_CLUSTER: &str = "main";

/// One region's entry of `output_topics_by_region`: a topic on the main cluster, or a topic on a
/// cluster of `[clusters]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "an entry of output_topics_by_region: a topic name, or a table { topic = \"…\", cluster = \"…\" }"
)]
pub enum RegionOutput {
    Topic(String),
    OnCluster(TopicOnCluster),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopicOnCluster {
    pub topic: String,
    /// A name of `[clusters]`.
    pub cluster: String,
}

impl RegionOutput {
    pub fn topic(&self) -> &str {
        match self {
            RegionOutput::Topic(t) => t,
            RegionOutput::OnCluster(c) => &c.topic,
        }
    }

    /// The cluster's name, `None` for the main cluster.
    pub fn cluster(&self) -> Option<&str> {
        match self {
            RegionOutput::Topic(_) => None,
            RegionOutput::OnCluster(c) => Some(&c.cluster),
        }
    }
}

impl From<&str> for RegionOutput {
    fn from(topic: &str) -> Self {
        RegionOutput::Topic(topic.to_owned())
    }
}

/// Another Kafka cluster some regions' records are written to (`[clusters.<name>]`): its brokers
/// and how to connect, as the main cluster's `brokers` and `[security]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Bootstrap servers of this cluster, comma-separated `host:port`.
    pub brokers: String,
    /// TLS and SASL for this cluster: the keys of `[security]`
    /// (`AEPIOT_CLUSTERS__<NAME>__SECURITY__SASL_PASSWORD`, `sasl_password_file`, …).
    pub security: SecurityConfig,
    /// Raw librdkafka properties for this cluster's clients. The main `[kafka]` table does not
    /// apply here (it often carries the main cluster's credentials).
    pub kafka: crate::config::properties::KafkaProperties,
}

/// Where records go, resolved once at start: for each region (in `urls.regions` order) its topic
/// and the index of its cluster in [`Routes::clusters`] (0: the main cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    pub region_topics: Vec<String>,
    pub region_clusters: Vec<usize>,
    /// Names of the clusters records go to: [`MAIN_CLUSTER`] first, then each cluster some region
    /// uses, in the order of `[clusters]`.
    pub clusters: Vec<String>,
}

impl Routes {
    /// `regions`: the region names in order; `fallback`: the topic of regions without an entry.
    /// Unknown cluster names are refused by [`check`] before this runs; here they count as main.
    pub fn new<'a>(
        regions: impl Iterator<Item = &'a String>,
        by_region: &IndexMap<String, RegionOutput>,
        clusters: &IndexMap<String, ClusterConfig>,
        fallback: &str,
    ) -> Routes {
        let used: Vec<String> = clusters
            .keys()
            .filter(|name| {
                by_region
                    .values()
                    .any(|o| o.cluster() == Some(name.as_str()))
            })
            .cloned()
            .collect();
        let mut names = vec![MAIN_CLUSTER.to_string()];
        names.extend(used);
        let (mut region_topics, mut region_clusters) = (Vec::new(), Vec::new());
        for r in regions {
            let out = by_region.get(r);
            region_topics.push(out.map_or(fallback, RegionOutput::topic).to_owned());
            let cluster = out
                .and_then(RegionOutput::cluster)
                .and_then(|c| names.iter().position(|n| n == c))
                .unwrap_or(0);
            region_clusters.push(cluster);
        }
        Routes {
            region_topics,
            region_clusters,
            clusters: names,
        }
    }

    /// Every topic of cluster `index` that receives URL records, each once; for the main cluster
    /// `fallback` (`output_topic`) first.
    pub fn topics_of(&self, index: usize, fallback: &str) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        if index == 0 {
            topics.push(fallback.to_owned());
        }
        for (t, c) in self.region_topics.iter().zip(&self.region_clusters) {
            if *c == index && !topics.contains(t) {
                topics.push(t.clone());
            }
        }
        topics
    }
}

/// Refuses an impossible residency configuration, saying what to change.
pub fn check<'a>(
    regions: impl Iterator<Item = &'a String> + Clone,
    by_region: &IndexMap<String, RegionOutput>,
    clusters: &IndexMap<String, ClusterConfig>,
    exactly_once: bool,
) -> Result<(), String> {
    for (name, c) in clusters {
        if name == MAIN_CLUSTER {
            return Err(format!(
                "clusters.{MAIN_CLUSTER}: `{MAIN_CLUSTER}` names the main cluster (`brokers`, \
                 `[security]`); give this cluster another name"
            ));
        }
        if c.brokers.trim().is_empty() {
            return Err(format!(
                "clusters.{name}.brokers must name at least one broker (host:port)"
            ));
        }
    }
    for (region, out) in by_region {
        if !regions.clone().any(|r| r == region) {
            return Err(format!(
                "output_topics_by_region.{region}: {region:?} is not a region of urls.regions"
            ));
        }
        if out.topic().trim().is_empty() {
            return Err(format!(
                "output_topics_by_region.{region} must name a topic"
            ));
        }
        let Some(cluster) = out.cluster() else {
            continue;
        };
        if !clusters.contains_key(cluster) {
            let known: Vec<&String> = clusters.keys().collect();
            return Err(format!(
                "output_topics_by_region.{region}: cluster {cluster:?} is not defined (add a \
                 [clusters.{cluster}] table with its brokers; defined: {known:?})"
            ));
        }
        if exactly_once {
            return Err(format!(
                "processing_guarantee = \"exactly_once\" cannot write region {region:?} to \
                 cluster {cluster:?}: a Kafka transaction cannot span clusters, so its records \
                 and the input offsets could not be committed together. Use at_least_once, or \
                 keep every region on the main cluster"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<String> {
        ["europe", "asia_pacific", "north_america", "global"]
            .map(String::from)
            .to_vec()
    }

    fn eu_cluster() -> IndexMap<String, ClusterConfig> {
        IndexMap::from([(
            "eu".to_string(),
            ClusterConfig {
                brokers: "eu:9092".into(),
                ..Default::default()
            },
        )])
    }

    fn on(topic: &str, cluster: &str) -> RegionOutput {
        RegionOutput::OnCluster(TopicOnCluster {
            topic: topic.into(),
            cluster: cluster.into(),
        })
    }

    #[test]
    fn each_region_gets_its_topic_and_cluster() {
        let by_region = IndexMap::from([
            ("europe".to_string(), on("urls-eu", "eu")),
            ("asia_pacific".to_string(), "urls-ap".into()),
        ]);
        let r = Routes::new(regions().iter(), &by_region, &eu_cluster(), "urls");
        assert_eq!(r.region_topics, ["urls-eu", "urls-ap", "urls", "urls"]);
        assert_eq!(r.region_clusters, [1, 0, 0, 0]);
        assert_eq!(r.clusters, ["main", "eu"]);
        assert_eq!(r.topics_of(0, "urls"), ["urls", "urls-ap"]);
        assert_eq!(r.topics_of(1, "urls"), ["urls-eu"]);
        // A cluster no region uses gets no producer.
        let none = Routes::new(regions().iter(), &IndexMap::new(), &eu_cluster(), "urls");
        assert_eq!(none.clusters, ["main"]);
    }

    #[test]
    fn impossible_plans_are_refused_with_what_to_change() {
        let rs = regions();
        let by_region = IndexMap::from([("europe".to_string(), on("urls-eu", "eu"))]);
        assert!(check(rs.iter(), &by_region, &eu_cluster(), false).is_ok());
        let e = check(rs.iter(), &by_region, &IndexMap::new(), false).unwrap_err();
        assert!(
            e.contains("cluster \"eu\" is not defined") && e.contains("[clusters.eu]"),
            "{e}"
        );
        let e = check(rs.iter(), &by_region, &eu_cluster(), true).unwrap_err();
        assert!(e.contains("transaction cannot span clusters"), "{e}");
        // Exactly-once is fine while every region stays on the main cluster.
        let main_only = IndexMap::from([("europe".to_string(), "urls-eu".into())]);
        assert!(check(rs.iter(), &main_only, &eu_cluster(), true).is_ok());
        let mut named_main = eu_cluster();
        let eu = named_main["eu"].clone();
        named_main.insert("main".into(), eu);
        assert!(check(rs.iter(), &main_only, &named_main, false)
            .unwrap_err()
            .contains("clusters.main"));
        let mut no_brokers = eu_cluster();
        no_brokers["eu"].brokers = " ".into();
        assert!(check(rs.iter(), &by_region, &no_brokers, false)
            .unwrap_err()
            .contains("clusters.eu.brokers"));
    }
}
