//! Operator endpoints under `/api/v1/admin/`.

use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use strata_proto::store::FlushRequest;

use crate::Frontend;
use crate::api_error::ApiError;
use crate::read_api::success;

impl Frontend {
    /// `POST /api/v1/admin/flush`: cuts the head into blocks now, for the
    /// tenant named by `X-Scope-OrgID`, or for every tenant without one.
    pub(crate) async fn flush(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        let tenant = if headers.contains_key(crate::tenant::ORG_ID_HEADER) {
            self.tenant(headers)?.to_string()
        } else {
            String::new()
        };
        let response = self.store().flush(FlushRequest { tenant }).await?;
        Ok(success(json!({ "blocks": response.blocks }), Vec::new()))
    }
}
