//! `citybrain.v1.CatalogService`: browse and maintain the catalog.

use crate::call::CallContext;
use crate::convert::{DataView, manifest_from, share_type_from, table_to};
use crate::hub::Hub;
use crate::status::respond;
use crate::{Error, Result};
use citybrain_auth::Principal;
use citybrain_catalog::{ListFilter, TableEntry, TableManifest, TableStatus};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::catalog_service_server::CatalogService;
use citybrain_types::{Role, validate_table_name};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tonic::{Request, Response, Status};

/// Largest page a listing returns.
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

pub(crate) struct CatalogApi {
    pub(crate) hub: Arc<Hub>,
}

/// Only a steward of the providing department (or an admin) changes a table.
fn authorize_write(p: &Principal, dept: &str) -> Result<()> {
    match p.role {
        Role::Admin => Ok(()),
        Role::Steward if p.department == dept => Ok(()),
        Role::Steward => Err(Error::Denied(format!(
            "a steward of '{}' may not change tables of department '{dept}'",
            p.department
        ))),
        Role::Consumer | Role::Auditor => Err(Error::Denied(
            "changing the catalog requires the steward role".into(),
        )),
    }
}

fn checked_name(name: &str) -> Result<()> {
    validate_table_name(name).map_err(|e| Error::invalid("name", e.to_string()))
}

impl CatalogApi {
    async fn data_view(&self, m: &TableManifest) -> DataView {
        if m.dataset.is_none() {
            return DataView::None;
        }
        match self.hub.engine.table_data(m).await {
            Ok(info) => DataView::Available(info),
            Err(_) => DataView::Unavailable,
        }
    }

    /// The catalog entry of a named table, noted as the call's table.
    async fn entry(&self, name: String, ctx: &CallContext) -> Result<TableEntry> {
        checked_name(&name)?;
        ctx.tables([name.clone()]);
        let catalog = self.hub.catalog.clone();
        self.hub.blocking(move || catalog.get(&name)).await
    }

    async fn view(&self, e: &TableEntry) -> pb::Table {
        table_to(e, &self.data_view(&e.manifest).await)
    }

    async fn register(
        &self,
        req: Request<pb::RegisterTableRequest>,
        ctx: &CallContext,
    ) -> Result<pb::RegisterTableResponse> {
        let p = self.hub.principal(&req)?;
        let m = manifest_from(req.into_inner().spec)?;
        ctx.tables([m.name.clone()]);
        authorize_write(&p, &m.provider_code)?;
        let catalog = self.hub.catalog.clone();
        let entry = self.hub.blocking(move || catalog.register(&m)).await?;
        ctx.rows(1);
        tracing::info!(table = %entry.manifest.name, dept = %p.department, "table registered");
        Ok(pb::RegisterTableResponse {
            table: Some(self.view(&entry).await),
        })
    }

    async fn update(
        &self,
        req: Request<pb::UpdateTableRequest>,
        ctx: &CallContext,
    ) -> Result<pb::UpdateTableResponse> {
        let p = self.hub.principal(&req)?;
        let m = manifest_from(req.into_inner().spec)?;
        checked_name(&m.name)?;
        ctx.tables([m.name.clone()]);
        let catalog = self.hub.catalog.clone();
        let name = m.name.clone();
        let old = self.hub.blocking(move || catalog.get(&name)).await?;
        authorize_write(&p, &old.manifest.provider_code)?;
        authorize_write(&p, &m.provider_code)?;
        let catalog = self.hub.catalog.clone();
        let (entry, changed) = self.hub.blocking(move || catalog.update(&m)).await?;
        ctx.rows(1);
        Ok(pb::UpdateTableResponse {
            table: Some(self.view(&entry).await),
            changed,
        })
    }

    async fn deprecate(
        &self,
        req: Request<pb::DeprecateTableRequest>,
        ctx: &CallContext,
    ) -> Result<pb::DeprecateTableResponse> {
        let p = self.hub.principal(&req)?;
        let r = req.into_inner();
        checked_name(&r.name)?;
        ctx.tables([r.name.clone()]);
        if r.reason.trim().is_empty() {
            return Err(Error::invalid("reason", "is required"));
        }
        let catalog = self.hub.catalog.clone();
        let name = r.name.clone();
        let old = self.hub.blocking(move || catalog.get(&name)).await?;
        authorize_write(&p, &old.manifest.provider_code)?;
        let catalog = self.hub.catalog.clone();
        let entry = self
            .hub
            .blocking(move || catalog.deprecate(&r.name, &r.reason))
            .await?;
        ctx.rows(1);
        Ok(pb::DeprecateTableResponse {
            table: Some(self.view(&entry).await),
        })
    }

    async fn get(
        &self,
        req: Request<pb::GetTableRequest>,
        ctx: &CallContext,
    ) -> Result<pb::GetTableResponse> {
        self.hub.principal(&req)?;
        let entry = self.entry(req.into_inner().name, ctx).await?;
        ctx.rows(1);
        Ok(pb::GetTableResponse {
            table: Some(self.view(&entry).await),
        })
    }

    async fn list(
        &self,
        req: Request<pb::ListTablesRequest>,
        ctx: &CallContext,
    ) -> Result<pb::ListTablesResponse> {
        self.hub.principal(&req)?;
        let r = req.into_inner();
        if r.page_size > MAX_PAGE {
            return Err(Error::invalid("page_size", format!("at most {MAX_PAGE}")));
        }
        let filter = ListFilter {
            department: (!r.department.is_empty()).then_some(r.department),
            share_type: match r.share_type {
                0 => None,
                v => Some(share_type_from(v, "share_type")?),
            },
            library: match r.library.as_str() {
                "" => None,
                l => Some(l.parse().map_err(|e: citybrain_types::Error| {
                    Error::invalid("library", e.to_string())
                })?),
            },
            text: (!r.text.trim().is_empty()).then(|| r.text.trim().to_owned()),
            include_deprecated: r.include_deprecated,
        };
        let size = if r.page_size == 0 {
            DEFAULT_PAGE
        } else {
            r.page_size
        };
        let token = (!r.page_token.is_empty()).then_some(r.page_token);
        let catalog = self.hub.catalog.clone();
        let page = self
            .hub
            .blocking(move || catalog.list(&filter, size, token.as_deref()))
            .await?;
        let mut tables = Vec::with_capacity(page.tables.len());
        for e in &page.tables {
            tables.push(self.view(e).await);
        }
        ctx.rows(tables.len() as u64);
        Ok(pb::ListTablesResponse {
            tables,
            next_page_token: page.next_page_token.unwrap_or_default(),
            total: page.total,
        })
    }

    async fn table_data(
        &self,
        req: Request<pb::GetTableDataRequest>,
        ctx: &CallContext,
    ) -> Result<pb::GetTableDataResponse> {
        self.hub.principal(&req)?;
        let entry = self.entry(req.into_inner().name, ctx).await?;
        let info = self.hub.engine.table_data(&entry.manifest).await?;
        ctx.rows(1);
        Ok(pb::GetTableDataResponse {
            name: entry.manifest.name,
            records: info.records,
            files: info.files,
            bytes: info.bytes,
            row_groups: info.row_groups,
        })
    }

    async fn stats(
        &self,
        req: Request<pb::GetStatsRequest>,
        ctx: &CallContext,
    ) -> Result<pb::GetStatsResponse> {
        self.hub.principal(&req)?;
        let catalog = self.hub.catalog.clone();
        let (counts, tables) = self
            .hub
            .blocking(move || Ok::<_, Error>((catalog.counts()?, catalog.all()?)))
            .await?;
        let mut stats = pb::Stats {
            source_departments: counts.source_departments,
            tables: counts.tables,
            data_items: counts.data_items,
            calls: self.hub.audit.totals().calls,
            calls_shed: self.hub.counters.shed.load(Ordering::Relaxed),
            ..Default::default()
        };
        let mut shareable = 0u64;
        for e in tables.iter().filter(|e| e.status == TableStatus::Active) {
            match self.data_view(&e.manifest).await {
                DataView::None => {}
                DataView::Unavailable => stats.tables_unavailable += 1,
                DataView::Available(info) => {
                    stats.tables_with_data += 1;
                    stats.records += info.records;
                    if e.manifest.share_type.is_shareable() {
                        shareable += info.records;
                    }
                }
            }
        }
        if stats.records > 0 {
            stats.share_rate = shareable as f64 / stats.records as f64;
        }
        ctx.rows(1);
        Ok(pb::GetStatsResponse { stats: Some(stats) })
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn register_table(
        &self,
        req: Request<pb::RegisterTableRequest>,
    ) -> Result<Response<pb::RegisterTableResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.register(req, &ctx).await)
    }

    async fn update_table(
        &self,
        req: Request<pb::UpdateTableRequest>,
    ) -> Result<Response<pb::UpdateTableResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.update(req, &ctx).await)
    }

    async fn deprecate_table(
        &self,
        req: Request<pb::DeprecateTableRequest>,
    ) -> Result<Response<pb::DeprecateTableResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.deprecate(req, &ctx).await)
    }

    async fn get_table(
        &self,
        req: Request<pb::GetTableRequest>,
    ) -> Result<Response<pb::GetTableResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.get(req, &ctx).await)
    }

    async fn list_tables(
        &self,
        req: Request<pb::ListTablesRequest>,
    ) -> Result<Response<pb::ListTablesResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.list(req, &ctx).await)
    }

    async fn get_table_data(
        &self,
        req: Request<pb::GetTableDataRequest>,
    ) -> Result<Response<pb::GetTableDataResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.table_data(req, &ctx).await)
    }

    async fn get_stats(
        &self,
        req: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let ctx = CallContext::of(&req);
        respond(&ctx, self.stats(req, &ctx).await)
    }
}
