//! Helm's value-merging rules, reproduced exactly (Helm's `pkg/chart/common/util/coalesce.go`
//! and `pkg/cli/values/options.go`), with stable key order.

use serde_json::{Map, Value as Json};

/// Helm's `mergeMaps`: how `-f a.yaml -f b.yaml` combine. Maps merge deeply; anything
/// else in `b` (lists, scalars, `null`) replaces what `a` had.
pub fn merge_maps(a: &Map<String, Json>, b: &Map<String, Json>) -> Map<String, Json> {
    let mut out = a.clone();
    merge_into(&mut out, b.clone());
    out
}

/// [`merge_maps`] into `a`, taking `b`'s values (no copy of either).
pub(super) fn merge_into(a: &mut Map<String, Json>, b: Map<String, Json>) {
    for (k, bv) in b {
        match (a.get_mut(&k), bv) {
            (Some(Json::Object(av)), Json::Object(bm)) => merge_into(av, bm),
            (_, bv) => {
                a.insert(k, bv);
            }
        }
    }
}

/// Helm's `CoalesceValues(chart, userValues)` for a chart without subcharts: the values
/// templates see. Keys come in the chart's order, then keys only the user has.
/// Verified against Helm v4.3.0 itself (`tests/helm`, `tests/helm_values.rs`):
///
/// - `null`s in the chart's own values are dropped (at any depth);
/// - a user `null` over a chart key deletes it (at any depth);
/// - a user `null` for a key the chart does not have stays `null`;
/// - maps merge; a user scalar over a chart map (or the reverse) wins; lists replace.
pub fn coalesce(defaults: &Map<String, Json>, user: &Map<String, Json>) -> Map<String, Json> {
    coalesce_owned(&without_nulls(defaults), user.clone())
}

/// [`coalesce`] of defaults already without their `null`s, taking the user's values
/// (copying only the chart's defaults the user does not replace).
pub(super) fn coalesce_owned(
    defaults: &Map<String, Json>,
    mut user: Map<String, Json>,
) -> Map<String, Json> {
    let mut out = Map::with_capacity(defaults.len() + user.len());
    for (k, dv) in defaults {
        match (user.get_mut(k), dv) {
            (None, _) => {
                out.insert(k.clone(), dv.clone());
            }
            (Some(Json::Null), _) => {}
            (Some(Json::Object(um)), Json::Object(dm)) => {
                let um = std::mem::take(um);
                out.insert(k.clone(), Json::Object(coalesce_owned(dm, um)));
            }
            (Some(uv), _) => {
                out.insert(k.clone(), uv.take());
            }
        }
    }
    for (k, uv) in user {
        if !defaults.contains_key(&k) {
            out.insert(k, uv);
        }
    }
    out
}

/// A chart's values without their `null`s, as Helm reads them.
pub(super) fn without_nulls(m: &Map<String, Json>) -> Map<String, Json> {
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Json::Object(inner) => (k.clone(), Json::Object(without_nulls(inner))),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

/// The values file to commit for a chart, given the final values: `final_values` plus an
/// explicit `key: null` for every chart default the final values no longer have, so that
/// Argo CD's Helm, which coalesces the chart's defaults under this file again, arrives at
/// exactly `final_values` (`coalesce(defaults, &values_for_file(defaults, f)) == f`).
pub fn values_for_file(
    defaults: &Map<String, Json>,
    final_values: &Map<String, Json>,
) -> Map<String, Json> {
    file_level(&without_nulls(defaults), final_values)
}

pub(super) fn file_level(
    defaults: &Map<String, Json>,
    final_values: &Map<String, Json>,
) -> Map<String, Json> {
    let mut out = Map::new();
    for (k, dv) in defaults {
        match (final_values.get(k), dv) {
            (None, _) => {
                out.insert(k.clone(), Json::Null);
            }
            (Some(Json::Object(fm)), Json::Object(dm)) => {
                out.insert(k.clone(), Json::Object(file_level(dm, fm)));
            }
            (Some(fv), _) => {
                out.insert(k.clone(), fv.clone());
            }
        }
    }
    for (k, fv) in final_values {
        if !defaults.contains_key(k) {
            out.insert(k.clone(), fv.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => panic!("not a map"),
        }
    }

    fn check(defaults: Json, user: Json, want: Json) {
        let (d, u) = (map(defaults), map(user));
        let got = coalesce(&d, &u);
        assert_eq!(Json::Object(got.clone()), want, "coalesce");
        // The committed file must bring Helm back to the same values.
        let file = values_for_file(&d, &got);
        assert_eq!(
            Json::Object(coalesce(&d, &file)),
            want,
            "file {}",
            Json::Object(file)
        );
    }

    #[test]
    fn maps_merge_deeply() {
        check(
            json!({"a": {"b": 1, "c": {"d": 2}}}),
            json!({"a": {"c": {"e": 3}}}),
            json!({"a": {"b": 1, "c": {"d": 2, "e": 3}}}),
        );
    }

    #[test]
    fn lists_and_scalars_replace() {
        check(
            json!({"l": [1, 2, 3], "s": "x"}),
            json!({"l": [9], "s": "y"}),
            json!({"l": [9], "s": "y"}),
        );
    }

    #[test]
    fn null_deletes_a_chart_key_at_any_depth() {
        check(
            json!({"a": 1, "m": {"b": 2, "c": 3}}),
            json!({"a": null, "m": {"b": null}}),
            json!({"m": {"c": 3}}),
        );
    }

    #[test]
    fn null_deletes_a_whole_chart_map() {
        check(
            json!({"resources": {"limits": {"cpu": "1"}}, "x": 1}),
            json!({"resources": null}),
            json!({"x": 1}),
        );
    }

    #[test]
    fn top_level_null_for_unknown_key_stays() {
        check(
            json!({"a": 1}),
            json!({"z": null}),
            json!({"a": 1, "z": null}),
        );
    }

    #[test]
    fn nested_null_for_unknown_key_stays() {
        check(
            json!({"m": {"a": 1}}),
            json!({"m": {"z": null}}),
            json!({"m": {"a": 1, "z": null}}),
        );
    }

    #[test]
    fn chart_nulls_are_dropped() {
        check(
            json!({"a": null, "m": {"b": null}}),
            json!({}),
            json!({"m": {}}),
        );
    }

    #[test]
    fn user_null_over_chart_null_stays() {
        check(
            json!({"m": {"b": null}}),
            json!({"m": {"b": null}}),
            json!({"m": {"b": null}}),
        );
    }

    #[test]
    fn user_value_over_chart_null() {
        check(
            json!({"a": null, "m": {"b": null}}),
            json!({"a": {"x": 1}, "m": {"b": 2}}),
            json!({"a": {"x": 1}, "m": {"b": 2}}),
        );
    }

    #[test]
    fn user_scalar_over_chart_map_wins() {
        check(json!({"a": {"b": 1}}), json!({"a": 5}), json!({"a": 5}));
    }

    #[test]
    fn user_map_over_chart_scalar_wins() {
        check(
            json!({"a": 5}),
            json!({"a": {"b": 1}}),
            json!({"a": {"b": 1}}),
        );
    }

    #[test]
    fn nulls_inside_a_map_the_chart_does_not_have_survive() {
        // Helm only recurses where the chart has a map; below that the user's map is kept as is.
        check(
            json!({"a": 1}),
            json!({"x": {"y": null}}),
            json!({"a": 1, "x": {"y": null}}),
        );
    }

    #[test]
    fn key_order_is_chart_order_then_user_order() {
        let got = coalesce(
            &map(json!({"b": 1, "a": 2})),
            &map(json!({"z": 1, "a": 3, "c": 4})),
        );
        let keys: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(keys, ["b", "a", "z", "c"]);
    }

    #[test]
    fn merge_maps_later_file_wins() {
        let got = merge_maps(
            &map(json!({"a": {"b": 1, "c": [1]}, "d": 1})),
            &map(json!({"a": {"c": [2], "e": null}, "d": {"x": 1}})),
        );
        // In order too: keys stay where the first file had them (a map's == ignores it).
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            r#"{"a":{"b":1,"c":[2],"e":null},"d":{"x":1}}"#
        );
    }

    /// Exhaustive small trees: for every (defaults, user) pair the committed file brings
    /// Helm back to the same values.
    #[test]
    fn committed_file_round_trips_for_generated_trees() {
        let leaves = [
            json!(null),
            json!(1),
            json!("s"),
            json!([1]),
            json!({}),
            json!({"p": 1}),
            json!({"p": null}),
            json!({"p": {"q": 1}}),
            json!({"p": {"q": null}, "r": 2}),
        ];
        let mut count = 0;
        for a in &leaves {
            for b in &leaves {
                for c in &leaves {
                    for d in &leaves {
                        let defaults = map(json!({"k": a, "m": b}));
                        let user = map(json!({"k": c, "n": d}));
                        let f = coalesce(&defaults, &user);
                        let file = values_for_file(&defaults, &f);
                        assert_eq!(coalesce(&defaults, &file), f, "{defaults:?} {user:?}");
                        // The render writes the file without building it: the same text.
                        assert_eq!(
                            crate::yaml::emit_over(&without_nulls(&defaults), &f),
                            crate::yaml::emit(&Json::Object(file.clone())),
                            "{defaults:?} {user:?}"
                        );
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, leaves.len().pow(4));
    }
}
