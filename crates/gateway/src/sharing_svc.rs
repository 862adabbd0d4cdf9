//! `citybrain.v1.SharingService`: applications, decisions, grants, revocation.

use crate::call::CallContext;
use crate::hub::Hub;
use crate::status::respond;
use crate::{Error, Result};
use citybrain_auth::Principal;
use citybrain_governance::{Application, ApplyRequest, Decision, Grant, Mask, Mode};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::sharing_service_server::SharingService;
use citybrain_types::{Role, rfc3339};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub(crate) struct SharingApi {
    pub(crate) hub: Arc<Hub>,
}

fn require(p: &Principal, role: Role, what: &str) -> Result<()> {
    if p.role == role {
        Ok(())
    } else {
        Err(Error::Denied(format!(
            "{what} requires the {} role",
            role.as_str()
        )))
    }
}

pub(crate) fn mode_from(v: i32) -> Result<Mode> {
    match pb::Mode::try_from(v) {
        Ok(pb::Mode::Verify) => Ok(Mode::Verify),
        Ok(pb::Mode::Read) => Ok(Mode::Read),
        Ok(pb::Mode::Aggregate) => Ok(Mode::Aggregate),
        _ => Err(Error::invalid(
            "mode",
            "verify, read or aggregate is required",
        )),
    }
}

fn mode_to(m: Mode) -> i32 {
    match m {
        Mode::Verify => pb::Mode::Verify,
        Mode::Read => pb::Mode::Read,
        Mode::Aggregate => pb::Mode::Aggregate,
    }
    .into()
}

fn mask_to(column: &str, m: &Mask) -> pb::Mask {
    let (kind, first, last) = match m {
        Mask::Keep { first, last } => ("keep", *first, *last),
        Mask::FirstChar => ("first_char", 0, 0),
        Mask::Year => ("year", 0, 0),
        Mask::Hash => ("hash", 0, 0),
        Mask::Null => ("null", 0, 0),
    };
    pb::Mask {
        column: column.to_owned(),
        kind: kind.to_owned(),
        keep_first: first,
        keep_last: last,
    }
}

fn app_to(a: &Application) -> pb::Application {
    pb::Application {
        id: a.id.clone(),
        table: a.request.table.clone(),
        consumer_department: a.consumer_dept.clone(),
        subject: a.subject.clone(),
        columns: a.request.columns.clone(),
        purpose: a.request.purpose.clone(),
        business_system: a.request.business_system.clone(),
        service_matter: a.request.service_matter.clone(),
        days: a.request.days,
        mode: mode_to(a.request.mode),
        status: a.status.as_str().to_owned(),
        reason: a.reason.clone(),
        decided_by: a.decided_by.clone(),
        created_at: rfc3339(a.created_at),
        grant_id: a.grant_id.clone().unwrap_or_default(),
    }
}

fn grant_to(g: &Grant) -> pb::Grant {
    pb::Grant {
        id: g.id.clone(),
        application_id: g.application_id.clone(),
        table: g.table.clone(),
        consumer_department: g.consumer_dept.clone(),
        columns: g
            .terms
            .columns
            .iter()
            .map(|c| pb::GrantedColumn {
                name: c.name.clone(),
                mask: c.mask.as_ref().map(|m| mask_to(&c.name, m)),
            })
            .collect(),
        row_filter: g.terms.row_filter.clone().unwrap_or_default(),
        purpose: g.terms.purpose.clone(),
        mode: mode_to(g.terms.mode),
        max_calls_per_day: g.terms.max_calls_per_day,
        max_rows_per_day: g.terms.max_rows_per_day,
        min_group_size: g.terms.min_group_size,
        created_at: rfc3339(g.created_at),
        expires_at: rfc3339(g.expires_at),
        revoked_at: g.revoked_at.map(rfc3339).unwrap_or_default(),
        revoke_reason: g.revoke_reason.clone(),
    }
}

impl SharingApi {
    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
        ctx: &CallContext,
    ) -> Result<pb::ApplyResponse> {
        let p = self.hub.principal(&req)?;
        require(&p, Role::Consumer, "applying for data")?;
        let r = req.into_inner();
        ctx.tables([r.table.clone()]);
        ctx.purpose(&r.purpose);
        let request = ApplyRequest {
            mode: mode_from(r.mode)?,
            table: r.table,
            columns: r.columns,
            purpose: r.purpose,
            business_system: r.business_system,
            service_matter: r.service_matter,
            days: r.days,
        };
        let gov = self.hub.governance.clone();
        let (app, grant) = self
            .hub
            .blocking(move || gov.apply(&p.department, &p.subject, request))
            .await?;
        ctx.rows(1);
        Ok(pb::ApplyResponse {
            application: Some(app_to(&app)),
            grant: grant.as_ref().map(grant_to),
        })
    }

    async fn list_apps(
        &self,
        req: Request<pb::ListApplicationsRequest>,
        ctx: &CallContext,
    ) -> Result<pb::ListApplicationsResponse> {
        let p = self.hub.principal(&req)?;
        let pending = req.into_inner().pending_for_my_department;
        if pending {
            require(&p, Role::Steward, "reviewing applications")?;
        }
        let gov = self.hub.governance.clone();
        let apps = self
            .hub
            .blocking(move || {
                if pending {
                    gov.pending_for(&p.department)
                } else {
                    gov.applications_of(&p.department)
                }
            })
            .await?;
        ctx.rows(apps.len() as u64);
        Ok(pb::ListApplicationsResponse {
            applications: apps.iter().map(app_to).collect(),
        })
    }

    async fn decide(
        &self,
        req: Request<pb::DecideRequest>,
        ctx: &CallContext,
    ) -> Result<pb::DecideResponse> {
        let p = self.hub.principal(&req)?;
        require(&p, Role::Steward, "deciding applications")?;
        let r = req.into_inner();
        let masks = r
            .masks
            .iter()
            .map(|m| {
                Ok((
                    m.column.clone(),
                    Mask::from_parts(&m.kind, m.keep_first, m.keep_last)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let decision = Decision {
            approve: r.approve,
            reason: r.reason,
            columns: r.columns,
            masks,
            row_filter: (!r.row_filter.trim().is_empty()).then_some(r.row_filter),
            days: r.days,
            max_calls_per_day: r.max_calls_per_day,
            max_rows_per_day: r.max_rows_per_day,
            min_group_size: r.min_group_size,
        };
        let gov = self.hub.governance.clone();
        let id = r.application_id;
        let (app, grant) = self
            .hub
            .blocking(move || gov.decide(&p.department, &p.subject, &id, decision))
            .await?;
        ctx.tables([app.request.table.clone()]);
        ctx.rows(1);
        Ok(pb::DecideResponse {
            application: Some(app_to(&app)),
            grant: grant.as_ref().map(grant_to),
        })
    }

    async fn list_grants(
        &self,
        req: Request<pb::ListGrantsRequest>,
        ctx: &CallContext,
    ) -> Result<pb::ListGrantsResponse> {
        let p = self.hub.principal(&req)?;
        let on_mine = req.into_inner().on_my_tables;
        if on_mine {
            require(&p, Role::Steward, "reviewing grants on your tables")?;
        }
        let gov = self.hub.governance.clone();
        let grants = self
            .hub
            .blocking(move || {
                if on_mine {
                    gov.grants_on(&p.department)
                } else {
                    gov.grants_of(&p.department)
                }
            })
            .await?;
        ctx.rows(grants.len() as u64);
        Ok(pb::ListGrantsResponse {
            grants: grants.iter().map(grant_to).collect(),
        })
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
        ctx: &CallContext,
    ) -> Result<pb::RevokeResponse> {
        let p = self.hub.principal(&req)?;
        require(&p, Role::Steward, "revoking grants")?;
        let r = req.into_inner();
        let gov = self.hub.governance.clone();
        let g = self
            .hub
            .blocking(move || gov.revoke(&p.department, &r.grant_id, &r.reason))
            .await?;
        ctx.tables([g.table.clone()]);
        ctx.rows(1);
        Ok(pb::RevokeResponse {
            grant: Some(grant_to(&g)),
        })
    }
}

#[tonic::async_trait]
impl SharingService for SharingApi {
    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, SharingApi::apply(self, req, &ctx).await)
    }

    async fn list_applications(
        &self,
        req: Request<pb::ListApplicationsRequest>,
    ) -> Result<Response<pb::ListApplicationsResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.list_apps(req, &ctx).await)
    }

    async fn decide(
        &self,
        req: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, SharingApi::decide(self, req, &ctx).await)
    }

    async fn list_grants(
        &self,
        req: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, SharingApi::list_grants(self, req, &ctx).await)
    }

    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, SharingApi::revoke(self, req, &ctx).await)
    }
}
