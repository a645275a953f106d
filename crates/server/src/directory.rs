//! The tenant's agents: here, or in a cluster adopted from the shared agent directory under the
//! same id. Every route that names an agent finds it through [`tenant_agent`].

use std::sync::Arc;

use aether_runtime::agents::Agent;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Tenant;

/// The agent, when it exists and belongs to the tenant; 404 otherwise (either way). In a cluster,
/// an agent another instance created is adopted here under its id.
pub async fn tenant_agent(s: &AppState, t: &Tenant, id: &str) -> Result<Arc<Agent>, ApiError> {
    if let Some(a) = s.rt.agent(id).filter(|a| t.owns(a) && !a.is_retired()) {
        return Ok(a);
    }
    let not_found = || ApiError::not_found("agent", id);
    let Some(c) = &s.cluster else {
        return Err(not_found());
    };
    let config = c.get_agent(id, &t.name).await?.ok_or_else(not_found)?;
    s.rt.adopt_agent(id, config)
        .await
        .map_err(|e| ApiError::internal(format!("cannot adopt agent `{id}`: {e}")))?;
    s.rt.agent(id).filter(|a| t.owns(a)).ok_or_else(not_found)
}
