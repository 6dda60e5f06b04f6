//! Values: Helm-compatible merge, profiles, and the claim → chart values mapping.
//! Pure: no I/O. Charts arrive here already loaded (see `crate::charts`).

mod mapping;
mod merge;
mod path;
mod schema;

pub use mapping::{FieldMapping, Mapping, MappingError, MAPPING_FILE};
pub use merge::{coalesce, merge_maps, values_for_file};
pub use path::{Path, Segment};
pub use schema::{Schema, Violation};

use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which chart reference a claim asks for.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ChartRef {
    /// OCI repository holding the chart, e.g. `oci://ghcr.io/nimbusprotch`.
    pub repository: String,
    pub name: String,
    pub version: String,
}

impl std::fmt::Display for ChartRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}:{}",
            self.repository.trim_end_matches('/'),
            self.name,
            self.version
        )
    }
}

/// The parts of a chart claimd needs: its values files and its mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub reference: ChartRef,
    /// Content digest (`sha256:…`) of the chart artifact.
    pub digest: String,
    /// `values.yaml`.
    pub defaults: Map<String, Json>,
    /// `values-production.yaml`, when the chart has one.
    pub production: Option<Map<String, Json>>,
    /// `values-<env>.yaml` files, by environment name.
    pub env_values: BTreeMap<String, Map<String, Json>>,
    pub mapping: Mapping,
    /// `values.schema.json`, when the chart has one: the final values must satisfy it.
    pub schema: Option<Schema>,
}

/// Which overlay applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Default,
    /// Environment `prod`, clusterType `prod`, or a service with `production: true`.
    Production,
}

impl Profile {
    pub fn of(environment: &str, cluster_type: &str, production_flag: bool) -> Profile {
        if production_flag || environment == "prod" || cluster_type == "prod" {
            Profile::Production
        } else {
            Profile::Default
        }
    }
}

/// What to merge for one application or service.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub chart: &'a Chart,
    pub environment: &'a str,
    pub profile: Profile,
    /// The claim's mappable fields (image, replicas, …) as JSON.
    pub claim_fields: &'a Json,
    /// The claim's raw `values:`, passed through on top.
    pub raw_values: &'a Map<String, Json>,
}

/// Result of a merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// What the chart's templates will see.
    pub final_values: Map<String, Json>,
    /// The chart's defaults as Helm reads them (shared by every merge of a chart).
    defaults: Arc<Map<String, Json>>,
}

impl Merged {
    /// What goes into the committed values.yaml: the final values plus `key: null`
    /// for chart defaults that were removed.
    pub fn file_values(&self) -> Map<String, Json> {
        merge::file_level(&self.defaults, &self.final_values)
    }

    /// [`Merged::file_values`] as YAML, written without building it.
    pub fn file_yaml(&self) -> String {
        crate::yaml::emit_over(&self.defaults, &self.final_values)
    }
}

/// chart `values.yaml` → `values-production.yaml` (production profile) →
/// `values-<env>.yaml` → claim fields (through the chart's mapping) → raw `values:`.
/// Errors with the claim fields the chart's mapping does not know.
pub fn merge(req: &Request<'_>) -> Result<Merged, Vec<Path>> {
    Layers::new(req.chart, req.environment, req.profile).merge(req.claim_fields, req.raw_values)
}

/// The chart's layers for one environment and profile, prepared once and shared by
/// every application that uses the same chart there.
#[derive(Debug, Clone)]
pub struct Layers<'a> {
    chart: &'a Chart,
    /// The chart's defaults as Helm reads them (without nulls).
    defaults: Arc<Map<String, Json>>,
    /// values-production.yaml and values-<env>.yaml, merged as Helm merges `-f` files.
    overlays: Map<String, Json>,
    /// The chart's values before any claim: what list paths in the mapping start from.
    base: Json,
}

impl<'a> Layers<'a> {
    pub fn new(chart: &'a Chart, environment: &str, profile: Profile) -> Layers<'a> {
        let mut overlays = Map::new();
        if profile == Profile::Production {
            if let Some(prod) = &chart.production {
                overlays = merge_maps(&overlays, prod);
            }
        }
        if environment != "production" || profile != Profile::Production {
            if let Some(env) = chart.env_values.get(environment) {
                overlays = merge_maps(&overlays, env);
            }
        }
        let defaults = Arc::new(merge::without_nulls(&chart.defaults));
        let base = Json::Object(merge::coalesce_owned(&defaults, overlays.clone()));
        Layers {
            chart,
            defaults,
            overlays,
            base,
        }
    }

    /// Adds one claim's fields and raw values on top.
    pub fn merge(
        &self,
        claim_fields: &Json,
        raw_values: &Map<String, Json>,
    ) -> Result<Merged, Vec<Path>> {
        let from_claim = self.chart.mapping.apply(claim_fields, &self.base)?;
        let mut user = self.overlays.clone();
        merge::merge_into(&mut user, from_claim);
        merge::merge_into(&mut user, raw_values.clone());
        let final_values = merge::coalesce_owned(&self.defaults, user);
        Ok(Merged {
            final_values,
            defaults: self.defaults.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("not a map"),
        }
    }

    fn chart() -> Chart {
        Chart {
            reference: ChartRef {
                repository: "oci://r".into(),
                name: "microservice".into(),
                version: "1.0.0".into(),
            },
            digest: "sha256:00".into(),
            defaults: obj(json!({
                "replicaCount": 1,
                "image": {"repository": "nginx", "tag": "latest"},
                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}},
                "ingress": {"enabled": false, "hosts": [{"host": "chart-example.local", "paths": [{"path": "/"}]}]},
                "autoscaling": {"enabled": false}
            })),
            production: Some(obj(
                json!({"replicaCount": 3, "autoscaling": {"enabled": true}}),
            )),
            env_values: BTreeMap::from([("qa".to_string(), obj(json!({"replicaCount": 2})))]),
            mapping: Mapping {
                fields: vec![
                    FieldMapping {
                        from: Path::parse("replicas").unwrap(),
                        to: vec![Path::parse("replicaCount").unwrap()],
                        set: vec![],
                        replace: false,
                    },
                    FieldMapping {
                        from: Path::parse("ingress.host").unwrap(),
                        to: vec![Path::parse("ingress.hosts[0].host").unwrap()],
                        set: vec![(Path::parse("ingress.enabled").unwrap(), json!(true))],
                        replace: false,
                    },
                    FieldMapping {
                        from: Path::parse("resources").unwrap(),
                        to: vec![Path::parse("resources").unwrap()],
                        set: vec![],
                        replace: false,
                    },
                ],
            },
            schema: None,
        }
    }

    fn run(env: &str, profile: Profile, claim: Json, raw: Json) -> Result<Merged, Vec<Path>> {
        let chart = chart();
        merge(&Request {
            chart: &chart,
            environment: env,
            profile,
            claim_fields: &claim,
            raw_values: &obj(raw),
        })
    }

    #[test]
    fn production_overlay_then_claim() {
        let m = run(
            "prod",
            Profile::Production,
            json!({"ingress": {"host": "a.example.com"}}),
            json!({}),
        )
        .unwrap();
        assert_eq!(m.final_values["replicaCount"], json!(3));
        assert_eq!(m.final_values["autoscaling"], json!({"enabled": true}));
        assert_eq!(
            m.final_values["ingress"],
            json!({"enabled": true, "hosts": [{"host": "a.example.com", "paths": [{"path": "/"}]}]})
        );
    }

    #[test]
    fn env_file_applies_and_claim_wins() {
        let m = run("qa", Profile::Default, json!({}), json!({})).unwrap();
        assert_eq!(m.final_values["replicaCount"], json!(2));
        let m = run("qa", Profile::Default, json!({"replicas": 7}), json!({})).unwrap();
        assert_eq!(m.final_values["replicaCount"], json!(7));
    }

    #[test]
    fn raw_values_win_over_mapped_fields() {
        let m = run(
            "dev",
            Profile::Default,
            json!({"replicas": 7}),
            json!({"replicaCount": 9}),
        )
        .unwrap();
        assert_eq!(m.final_values["replicaCount"], json!(9));
    }

    #[test]
    fn deleted_keys_are_written_as_null() {
        let m = run(
            "dev",
            Profile::Default,
            json!({"resources": {"limits": null}}),
            json!({"autoscaling": null}),
        )
        .unwrap();
        assert_eq!(
            m.final_values["resources"],
            json!({"requests": {"cpu": "100m"}})
        );
        assert!(!m.final_values.contains_key("autoscaling"));
        assert_eq!(
            m.file_values()["resources"],
            json!({"requests": {"cpu": "100m"}, "limits": null})
        );
        assert_eq!(m.file_values()["autoscaling"], json!(null));
    }

    #[test]
    fn unmapped_claim_field_is_an_error() {
        let e = run(
            "dev",
            Profile::Default,
            json!({"storage": {"size": "1Gi"}}),
            json!({}),
        )
        .unwrap_err();
        assert_eq!(e, vec![Path::parse("storage.size").unwrap()]);
    }

    #[test]
    fn profile_rules() {
        assert_eq!(Profile::of("prod", "nonprod", false), Profile::Production);
        assert_eq!(Profile::of("dev", "prod", false), Profile::Production);
        assert_eq!(Profile::of("dev", "nonprod", true), Profile::Production);
        assert_eq!(Profile::of("staging", "nonprod", false), Profile::Default);
    }
}
