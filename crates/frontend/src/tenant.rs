//! Resolves the tenant of a request from `X-Scope-OrgID`.

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use strata_common::tenant::DEFAULT_NO_AUTH_TENANT;
use strata_common::{ErrorClass, TenantId};

use crate::api_error::ApiError;

/// The header carrying the tenant, as in Mimir and Cortex.
pub const ORG_ID_HEADER: &str = "X-Scope-OrgID";

/// How requests are mapped to tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenancyConfig {
    /// Refuse requests without `X-Scope-OrgID` (401 `no org id`).
    pub require_tenant: bool,
    /// The tenant of requests without the header when it is not required.
    pub no_auth_tenant: String,
}

impl Default for TenancyConfig {
    fn default() -> Self {
        TenancyConfig {
            require_tenant: false,
            no_auth_tenant: DEFAULT_NO_AUTH_TENANT.to_owned(),
        }
    }
}

impl TenancyConfig {
    /// Checks the configured default tenant is itself a valid ID.
    pub fn validate(&self) -> Result<(), String> {
        TenantId::new(&self.no_auth_tenant)
            .map(|_| ())
            .map_err(|e| format!("tenancy.no_auth_tenant: {e}"))
    }

    /// The request's tenant, or 401 / 400 as Mimir answers.
    pub fn resolve(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        // An empty header counts as no header, as in Mimir (dskit).
        let value = headers.get(ORG_ID_HEADER).filter(|v| !v.is_empty());
        let Some(value) = value else {
            if self.require_tenant {
                return Err(ApiError::new(ErrorClass::Unauthenticated, "no org id"));
            }
            return TenantId::new(&self.no_auth_tenant)
                .map_err(|e| ApiError::bad_data(e.to_string()));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_data("tenant ID contains unsupported characters"))?;
        if text.contains('|') {
            return Err(ApiError::bad_data(
                "multiple tenant IDs are not supported yet (tenant federation)",
            ));
        }
        TenantId::new(text).map_err(|e| ApiError::bad_data(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        if let Some(v) = value {
            map.insert(ORG_ID_HEADER, HeaderValue::from_str(v).expect("header"));
        }
        map
    }

    #[test]
    fn missing_header_uses_the_default_tenant() {
        let config = TenancyConfig::default();
        assert_eq!(
            config.resolve(&headers(None)).expect("tenant").as_str(),
            "anonymous"
        );
    }

    #[test]
    fn missing_header_when_required_is_401() {
        let config = TenancyConfig {
            require_tenant: true,
            ..TenancyConfig::default()
        };
        for missing in [None, Some("")] {
            let error = config.resolve(&headers(missing)).expect_err("401");
            assert_eq!(error.class, ErrorClass::Unauthenticated);
            assert_eq!(error.message, "no org id");
        }
    }

    #[test]
    fn invalid_ids_are_400() {
        let config = TenancyConfig::default();
        for bad in ["..", "a/b", "a|b"] {
            let error = config.resolve(&headers(Some(bad))).expect_err("400");
            assert_eq!(error.class, ErrorClass::BadData, "{bad}");
        }
        assert_eq!(
            config
                .resolve(&headers(Some("team-a")))
                .expect("ok")
                .as_str(),
            "team-a"
        );
    }
}
