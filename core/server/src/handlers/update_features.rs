//! UpdateFeatures (key 57), versions 0–2 (KIP-584).
//!
//! This broker finalizes no feature flags (ApiVersions advertises none), so no update can be
//! applied: each named feature gets Kafka's answer for a feature the controller does not support,
//! INVALID_UPDATE_VERSION, with or without `validate_only`. Versions 0–1 answer per feature with
//! no top-level error; version 2 dropped the per-feature results, so the first failure becomes the
//! top-level error, as Kafka does. Malformed requests (no updates, a feature named twice, an
//! unknown upgrade type) are INVALID_REQUEST.

use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

pub fn handle(ctx: &Ctx<'_>, req: UpdateFeaturesRequest) -> UpdateFeaturesResponse {
    answer(ctx.version, &req)
}

fn answer(version: i16, req: &UpdateFeaturesRequest) -> UpdateFeaturesResponse {
    let top = |e: ResponseError, msg: String| {
        UpdateFeaturesResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(str_bytes(msg)))
    };
    if req.feature_updates.is_empty() {
        return top(
            ResponseError::InvalidRequest,
            "The request must contain at least one feature update.".into(),
        );
    }
    for (i, u) in req.feature_updates.iter().enumerate() {
        if req.feature_updates[..i]
            .iter()
            .any(|p| p.feature == u.feature)
        {
            return top(
                ResponseError::InvalidRequest,
                format!(
                    "Feature {} appears more than once in the request.",
                    u.feature.as_str()
                ),
            );
        }
        // Version 0 has `allow_downgrade` instead; from version 1, 1..=3 are UPGRADE,
        // SAFE_DOWNGRADE and UNSAFE_DOWNGRADE.
        if version >= 1 && !(1..=3).contains(&u.upgrade_type) {
            return top(
                ResponseError::InvalidRequest,
                format!(
                    "Unknown upgrade type {} for feature {}.",
                    u.upgrade_type,
                    u.feature.as_str()
                ),
            );
        }
    }
    let message = |name: &str, level: i16| {
        format!(
            "Invalid update version {level} for feature {name}. The broker does not support \
             this feature."
        )
    };
    if version >= 2 {
        let first = &req.feature_updates[0];
        return top(
            ResponseError::InvalidUpdateVersion,
            message(first.feature.as_str(), first.max_version_level),
        );
    }
    let results = req
        .feature_updates
        .iter()
        .map(|u| {
            UpdatableFeatureResult::default()
                .with_feature(u.feature.clone())
                .with_error_code(ResponseError::InvalidUpdateVersion.code())
                .with_error_message(Some(str_bytes(message(
                    u.feature.as_str(),
                    u.max_version_level,
                ))))
        })
        .collect();
    UpdateFeaturesResponse::default()
        .with_error_message(None)
        .with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;

    fn update(name: &str, level: i16, ty: i8) -> FeatureUpdateKey {
        FeatureUpdateKey::default()
            .with_feature(str_bytes(name))
            .with_max_version_level(level)
            .with_upgrade_type(ty)
    }

    fn req(updates: Vec<FeatureUpdateKey>) -> UpdateFeaturesRequest {
        UpdateFeaturesRequest::default().with_feature_updates(updates)
    }

    #[test]
    fn every_feature_is_unsupported() {
        let r = answer(
            1,
            &req(vec![update("metadata.version", 20, 1), update("x", 0, 3)]),
        );
        assert_eq!(r.error_code, 0);
        let got: Vec<(&str, i16)> = r
            .results
            .iter()
            .map(|x| (x.feature.as_str(), x.error_code))
            .collect();
        assert_eq!(got, vec![("metadata.version", 95), ("x", 95)]);
        let r = answer(2, &req(vec![update("group.version", 1, 1)]));
        assert_eq!(r.error_code, 95);
        assert!(r.results.is_empty());
        assert!(r.error_message.unwrap().contains("group.version"));
    }

    #[test]
    fn malformed_requests_are_invalid() {
        assert_eq!(answer(1, &req(vec![])).error_code, 42);
        let twice = req(vec![update("a", 1, 1), update("a", 2, 1)]);
        assert_eq!(answer(1, &twice).error_code, 42);
        assert_eq!(answer(1, &req(vec![update("a", 1, 9)])).error_code, 42);
        // Version 0 has no upgrade type.
        assert_eq!(answer(0, &req(vec![update("a", 1, 0)])).error_code, 0);
    }
}
