//! Building policies from configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::service_level::DEFAULT_SERVICE_LEVEL_KEYS;
use super::{
    AccountAffinity, ClusterFilter, Filtered, FirstOf, MostFree, Pin, PlacementPolicy, Rendezvous,
    RequireLabels, ServiceLevelMatch, WeightedFree,
};

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML text does not describe a policy.
    #[error("invalid placement policy configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid placement policy configuration: {0}")]
    Invalid(String),
}

fn default_keys() -> Vec<String> {
    DEFAULT_SERVICE_LEVEL_KEYS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_fill_threshold() -> f64 {
    0.8
}

/// A placement policy as written in configuration (TOML, JSON, …), tagged by `kind`.
///
/// ```toml
/// kind = "first-of"
/// policies = [
///     { kind = "pin" },
///     { kind = "service-level", keys = ["tier", "redundancy"], then = { kind = "account-affinity", fill-threshold = 0.8 } },
/// ]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[non_exhaustive]
pub enum PolicyConfig {
    /// [`MostFree`].
    MostFree,
    /// [`WeightedFree`].
    WeightedFree {
        /// Seed of the draw.
        #[serde(default)]
        seed: u64,
    },
    /// [`Rendezvous`].
    Rendezvous {
        /// Seed of the hash.
        #[serde(default)]
        seed: u64,
    },
    /// [`Pin`].
    Pin,
    /// [`ServiceLevelMatch`] in front of `then` (most free space by default).
    ServiceLevel {
        /// The label keys that are service levels.
        #[serde(default = "default_keys")]
        keys: Vec<String>,
        /// The ranking policy among matching clusters.
        #[serde(default)]
        then: Option<Box<PolicyConfig>>,
    },
    /// [`AccountAffinity`], spilling over with `spill` (most free space by default).
    AccountAffinity {
        /// Fill ratio past which the account spills over.
        #[serde(default = "default_fill_threshold")]
        fill_threshold: f64,
        /// Where an account without a home goes.
        #[serde(default)]
        spill: Option<Box<PolicyConfig>>,
    },
    /// [`Filtered`]: filters, then a ranking policy.
    Filtered {
        /// The filters, applied in order.
        filters: Vec<FilterConfig>,
        /// The ranking policy among clusters that pass.
        then: Box<PolicyConfig>,
    },
    /// [`FirstOf`]: the first policy that applies.
    FirstOf {
        /// The policies, in order.
        policies: Vec<PolicyConfig>,
    },
}

/// A cluster filter as written in configuration, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
#[non_exhaustive]
pub enum FilterConfig {
    /// [`ServiceLevelMatch`].
    ServiceLevel {
        /// The label keys that are service levels.
        #[serde(default = "default_keys")]
        keys: Vec<String>,
    },
    /// [`RequireLabels`].
    RequireLabels {
        /// Labels every admitted cluster must carry.
        labels: BTreeMap<String, String>,
    },
}

impl Default for PolicyConfig {
    /// `first-of [pin, service-level → most-free]`: honour an explicit pin, else match the
    /// requested service level and take the cluster with the most free space.
    fn default() -> Self {
        Self::FirstOf {
            policies: vec![
                Self::Pin,
                Self::ServiceLevel {
                    keys: default_keys(),
                    then: None,
                },
            ],
        }
    }
}

impl PolicyConfig {
    /// Parses a policy from TOML text and checks its values.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types cannot (such as thresholds within 0–1).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::AccountAffinity {
                fill_threshold,
                spill,
            } => {
                if !(0.0..=1.0).contains(fill_threshold) {
                    return Err(ConfigError::Invalid(format!(
                        "fill-threshold must be within 0.0 and 1.0, not {fill_threshold}"
                    )));
                }
                spill.as_deref().map_or(Ok(()), Self::validate)
            }
            Self::ServiceLevel { then, .. } => then.as_deref().map_or(Ok(()), Self::validate),
            Self::Filtered { then, .. } => then.validate(),
            Self::FirstOf { policies } => {
                if policies.is_empty() {
                    return Err(ConfigError::Invalid(
                        "first-of needs at least one policy".to_owned(),
                    ));
                }
                policies.iter().try_for_each(Self::validate)
            }
            Self::MostFree | Self::WeightedFree { .. } | Self::Rendezvous { .. } | Self::Pin => {
                Ok(())
            }
        }
    }

    /// Builds the policy.
    pub fn build(&self) -> Box<dyn PlacementPolicy> {
        let or_most_free = |p: &Option<Box<PolicyConfig>>| match p {
            Some(p) => p.build(),
            None => Box::new(MostFree),
        };
        match self {
            Self::MostFree => Box::new(MostFree),
            Self::WeightedFree { seed } => Box::new(WeightedFree::new(*seed)),
            Self::Rendezvous { seed } => Box::new(Rendezvous { seed: *seed }),
            Self::Pin => Box::new(Pin),
            Self::ServiceLevel { keys, then } => Box::new(
                Filtered::new(
                    vec![Box::new(ServiceLevelMatch::new(keys))],
                    or_most_free(then),
                )
                .named("service-level"),
            ),
            Self::AccountAffinity {
                fill_threshold,
                spill,
            } => Box::new(AccountAffinity::with_spill(
                *fill_threshold,
                or_most_free(spill),
            )),
            Self::Filtered { filters, then } => Box::new(Filtered::new(
                filters.iter().map(FilterConfig::build).collect(),
                then.build(),
            )),
            Self::FirstOf { policies } => Box::new(FirstOf::new(
                policies.iter().map(PolicyConfig::build).collect(),
            )),
        }
    }
}

impl FilterConfig {
    /// Builds the filter.
    pub fn build(&self) -> Box<dyn ClusterFilter> {
        match self {
            Self::ServiceLevel { keys } => Box::new(ServiceLevelMatch::new(keys)),
            Self::RequireLabels { labels } => Box::new(RequireLabels {
                labels: labels.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::testing::*;

    #[test]
    fn parses_nested_configuration() {
        let text = r#"
            kind = "first-of"
            policies = [
                { kind = "pin" },
                { kind = "filtered", filters = [
                    { kind = "require-labels", labels = { region = "east" } },
                    { kind = "service-level", keys = ["tier"] },
                  ], then = { kind = "account-affinity", fill-threshold = 0.5 } },
            ]
        "#;
        let cfg = PolicyConfig::from_toml(text).unwrap();
        let p = cfg.build();
        assert!(p.needs_footprint());
        let clusters = [
            cluster("w", 1000, 0, &[("region", "west"), ("tier", "gold")]),
            cluster("e1", 100, 0, &[("region", "east"), ("tier", "gold")]),
            cluster("e2", 500, 0, &[("region", "east"), ("tier", "silver")]),
        ];
        let r = request("x").label("tier", "gold");
        assert_eq!(p.place_among(&r, &clusters).unwrap(), id("e1"));
        assert_eq!(p.place_among(&r.pin(id("w")), &clusters).unwrap(), id("w"));
    }

    #[test]
    fn rejects_bad_configuration() {
        assert!(PolicyConfig::from_toml(r#"kind = "no-such""#).is_err());
        assert!(PolicyConfig::from_toml(
            r#"kind = "account-affinity"
               fill-threshold = 1.5"#
        )
        .is_err());
        assert!(PolicyConfig::from_toml(
            r#"kind = "first-of"
               policies = []"#
        )
        .is_err());
    }

    #[test]
    fn default_policy_round_trips() {
        let cfg = PolicyConfig::default();
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(PolicyConfig::from_toml(&text).unwrap(), cfg);
        assert_eq!(cfg.build().name(), "first-of");
    }
}
