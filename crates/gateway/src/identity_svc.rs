//! `citybrain.v1.IdentityService`: tells callers who the hub thinks they are.

use crate::call::CallContext;
use crate::hub::Hub;
use crate::status::respond;
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::identity_service_server::IdentityService;
use citybrain_types::rfc3339;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(crate) struct IdentityApi {
    pub(crate) hub: Arc<Hub>,
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(
            &ctx,
            self.hub.principal(&req).map(|p| pb::WhoAmIResponse {
                subject: p.subject,
                department: p.department,
                role: p.role.as_str().to_owned(),
                issuer: p.issuer,
                expires_at: rfc3339(p.expires_at),
            }),
        )
    }
}
