//! Arrow Flight: governed SQL (Flight SQL) and batch matching (DoExchange).
//!
//! Every call signs in with the same bearer token as the gRPC API (`authorization` header) and
//! states its purpose in the `x-citybrain-purpose` header. Grants decide what is visible:
//!
//! - Flight SQL: the catalog `citybrain` lists, as `schema.table`, the tables the department holds
//!   live `read` or `aggregate` grants for (for the stated purpose when one is given); a
//!   statement or prepared statement runs one governed query (see `citybrain_query`). The
//!   statement handle and ticket carry the SQL text only; every step signs in and plans again.
//! - DoExchange batch match: the first message's descriptor is a command with JSON
//!   `{"table": "...", "purpose": "..."}` (purpose may come from the header instead); the client
//!   then streams record batches with one text column `key` (at most 100,000 keys in all) and
//!   receives, for the keys that match a visible row, the column `key` followed by the granted
//!   columns, masked. Keys with no visible row are simply absent from the answer.

use crate::call::CallContext;
use crate::data_svc::check_key;
use crate::hub::Hub;
use crate::status::to_status;
use crate::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc,
    Ticket, decode::FlightRecordBatchStream,
};
use citybrain_auth::Principal;
use citybrain_governance::Mode;
use citybrain_query::{CATALOG, Source};
use citybrain_types::Role;
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Header carrying the purpose of a Flight call (ASCII; percent-encode other text).
pub const PURPOSE_HEADER: &str = "x-citybrain-purpose";
/// Binary header carrying the purpose as UTF-8.
pub const PURPOSE_HEADER_BIN: &str = "x-citybrain-purpose-bin";
/// Most keys one batch match may send.
pub const MAX_MATCH_KEYS: usize = 100_000;

pub(crate) struct FlightApi {
    hub: Arc<Hub>,
    info: SqlInfoData,
}

type FlightStream = Pin<Box<dyn futures::Stream<Item = Result<FlightData, Status>> + Send>>;

/// The purpose stated in the call's headers ("" when none): `x-citybrain-purpose-bin` (UTF-8,
/// gRPC binary metadata) or `x-citybrain-purpose` (ASCII, percent-encoded UTF-8 allowed).
fn header_purpose<T>(req: &Request<T>) -> Result<String> {
    let bad = || Error::invalid(PURPOSE_HEADER, "must be UTF-8 text");
    if let Some(v) = req.metadata().get_bin(PURPOSE_HEADER_BIN) {
        let bytes = v.to_bytes().map_err(|_| bad())?;
        return String::from_utf8(bytes.to_vec())
            .map(|s| s.trim().to_owned())
            .map_err(|_| bad());
    }
    match req.metadata().get(PURPOSE_HEADER) {
        None => Ok(String::new()),
        Some(v) => {
            let text = v.to_str().map_err(|_| bad())?;
            percent_decode(text)
                .map(|s| s.trim().to_owned())
                .ok_or_else(bad)
        }
    }
}

/// `%E6%B0%91` → `民`; text without `%` is returned as is.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn consumer(p: &Principal) -> Result<()> {
    if p.role != Role::Consumer {
        return Err(Error::Denied(
            "Flight calls require the consumer role".into(),
        ));
    }
    Ok(())
}

/// Batches as a Flight answer stream.
fn answer(schema: SchemaRef, batches: Vec<RecordBatch>) -> FlightStream {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Box::pin(stream)
}

/// Finishes a call: the record's outcome and size, then the status for the client.
fn finish<T>(ctx: &CallContext, r: Result<(T, u64)>) -> Result<Response<T>, Status> {
    match r {
        Ok((v, bytes)) => {
            ctx.answered(tonic::Code::Ok, bytes);
            Ok(Response::new(v))
        }
        Err(e) => {
            let status = to_status(&e);
            ctx.answered(status.code(), 0);
            Err(status)
        }
    }
}

/// A one-batch answer (metadata listings).
fn one_batch(ctx: &CallContext, r: Result<RecordBatch>) -> Result<Response<FlightStream>, Status> {
    let r = r.map(|b| {
        let bytes = b.get_array_memory_size() as u64;
        (answer(b.schema(), vec![b]), bytes)
    });
    finish(ctx, r)
}

fn bytes_of(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum()
}

fn query_text(handle: &[u8]) -> Result<String> {
    String::from_utf8(handle.to_vec()).map_err(|_| Error::invalid("statement", "not UTF-8 text"))
}

fn flight_internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("flight: {e}"))
}

impl FlightApi {
    pub(crate) fn new(hub: Arc<Hub>) -> Result<Self> {
        // Server facts a generic client asks for first.
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "CityBrain Exchange");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, false);
        let info = b.build().map_err(flight_internal)?;
        Ok(Self { hub, info })
    }

    /// The caller's granted tables for SQL, compiled. With `purpose` empty (browsing), every live
    /// read or aggregate grant is listed; queries always need a purpose.
    async fn sources(&self, p: &Principal, purpose: &str, browsing: bool) -> Result<Vec<Source>> {
        let gov = self.hub.governance.clone();
        let dept = p.department.clone();
        let purpose_owned = purpose.to_owned();
        // One trip for the grants and their tables. A table deprecated or removed since its
        // grant is left out, so it cannot take the caller's other tables down with it.
        let granted = self
            .hub
            .blocking(move || {
                let grants = if browsing && purpose_owned.is_empty() {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let mut seen = std::collections::HashSet::new();
                    gov.grants_of(&dept)?
                        .into_iter()
                        .filter(|g| {
                            g.revoked_at.is_none()
                                && g.expires_at > now
                                && g.terms.mode != Mode::Verify
                                && seen.insert(g.table.clone())
                        })
                        .collect()
                } else {
                    gov.sql_grants(&dept, &purpose_owned)?
                };
                let mut granted = Vec::with_capacity(grants.len());
                for g in grants {
                    match gov.table(&g.table) {
                        Ok(m) => granted.push((g, m)),
                        Err(citybrain_governance::Error::Conflict(_))
                        | Err(citybrain_governance::Error::Catalog(
                            citybrain_catalog::Error::TableNotFound { .. },
                        )) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok::<_, citybrain_governance::Error>(granted)
            })
            .await?;
        let mut sources = Vec::new();
        for (g, manifest) in granted {
            if manifest.dataset.is_none() {
                continue;
            }
            let policy = self.hub.policy(g, &manifest)?;
            sources.push(Source { manifest, policy });
        }
        Ok(sources)
    }

    /// Signs in a SQL call and gathers its granted tables.
    async fn sql_sources<T>(&self, req: &Request<T>, ctx: &CallContext) -> Result<Vec<Source>> {
        let p = self.hub.principal(req)?;
        consumer(&p)?;
        let purpose = header_purpose(req)?;
        ctx.purpose(&purpose);
        self.sources(&p, &purpose, false).await
    }

    /// FlightInfo of a query: its columns and one endpoint whose ticket is `ticket`.
    async fn query_info(
        &self,
        req: &Request<FlightDescriptor>,
        sql: &str,
        ticket: Vec<u8>,
        ctx: &CallContext,
    ) -> Result<(FlightInfo, u64)> {
        let sources = self.sql_sources(req, ctx).await?;
        let schema = self.hub.analytics.schema(&sources, sql).await?;
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(flight_internal)?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(req.get_ref().clone());
        Ok((info, 0))
    }

    /// Runs a query and records what it read and returned.
    async fn run_query<T>(
        &self,
        req: &Request<T>,
        sql: &str,
        ctx: &CallContext,
    ) -> Result<(FlightStream, u64)> {
        let sources = self.sql_sources(req, ctx).await?;
        let prepared = self.hub.analytics.prepare(&sources, sql).await?;
        let mut tables: Vec<String> = prepared.used().iter().map(|u| u.table.clone()).collect();
        tables.sort();
        tables.dedup();
        ctx.tables(tables);
        let mut grants: Vec<String> = prepared.used().iter().map(|u| u.grant_id.clone()).collect();
        grants.sort();
        grants.dedup();
        if !grants.is_empty() {
            ctx.grant(&grants.join(","), &header_purpose(req)?);
        }
        // Quotas before any data is read.
        for id in &grants {
            if let Some(s) = sources.iter().find(|s| &s.policy.grant.id == id) {
                crate::data_svc::check_quota(&self.hub, &s.policy.grant)?;
            }
        }
        let a = prepared.run().await?;
        ctx.columns(a.schema.fields().iter().map(|f| f.name().clone()));
        ctx.rows(a.rows);
        let bytes = bytes_of(&a.batches);
        Ok((answer(a.schema, a.batches), bytes))
    }

    /// Metadata answers (catalogs, schemas, tables) need only sign-in.
    async fn browse<T>(&self, req: &Request<T>, ctx: &CallContext) -> Result<Vec<Source>> {
        let p = self.hub.principal(req)?;
        consumer(&p)?;
        let purpose = header_purpose(req)?;
        ctx.purpose(&purpose);
        self.sources(&p, &purpose, true).await
    }

    /// FlightInfo of a metadata command (catalogs, schemas, tables, …): signed-in callers only.
    fn metadata_info(
        &self,
        req: &Request<FlightDescriptor>,
        ticket: Vec<u8>,
        schema: &Schema,
    ) -> Result<Response<FlightInfo>, Status> {
        let ctx = CallContext::of(req);
        let r = self.hub.principal(req).and_then(|_| {
            let info = FlightInfo::new()
                .try_with_schema(schema)
                .map_err(flight_internal)?
                .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
                .with_descriptor(req.get_ref().clone());
            Ok((info, 0))
        });
        finish(&ctx, r)
    }

    async fn tables_batch(
        &self,
        req: &Request<Ticket>,
        q: CommandGetTables,
        ctx: &CallContext,
    ) -> Result<RecordBatch> {
        let sources = self.browse(req, ctx).await?;
        let mut b = q.into_builder();
        for s in &sources {
            let (schema, table) = split_name(&s.manifest.name);
            b.append(CATALOG, schema, table, "TABLE", s.policy.output_schema())
                .map_err(flight_internal)?;
        }
        b.build().map_err(flight_internal)
    }

    async fn schemas_batch(
        &self,
        req: &Request<Ticket>,
        q: CommandGetDbSchemas,
        ctx: &CallContext,
    ) -> Result<RecordBatch> {
        let sources = self.browse(req, ctx).await?;
        let mut names: Vec<&str> = sources
            .iter()
            .map(|s| split_name(&s.manifest.name).0)
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut b = q.into_builder();
        for n in names {
            b.append(CATALOG, n);
        }
        b.build().map_err(flight_internal)
    }

    async fn catalogs_batch(
        &self,
        req: &Request<Ticket>,
        q: CommandGetCatalogs,
        ctx: &CallContext,
    ) -> Result<RecordBatch> {
        self.browse(req, ctx).await?;
        let mut b = q.into_builder();
        b.append(CATALOG);
        b.build().map_err(flight_internal)
    }

    /// DoExchange: match a list of keys against a granted table.
    async fn exchange(
        &self,
        req: Request<Streaming<FlightData>>,
        ctx: &CallContext,
    ) -> Result<(FlightStream, u64)> {
        let p = self.hub.principal(&req)?;
        consumer(&p)?;
        let header = header_purpose(&req)?;
        let mut input = req.into_inner();
        let first = input
            .message()
            .await
            .map_err(|s| Error::invalid("stream", s.message().to_owned()))?
            .ok_or_else(|| Error::invalid("stream", "empty exchange"))?;
        let command = first
            .flight_descriptor
            .as_ref()
            .map(|d| d.cmd.clone())
            .ok_or_else(|| {
                Error::invalid(
                    "descriptor",
                    "the first message must carry a command descriptor",
                )
            })?;
        let spec: MatchSpec = serde_json::from_slice(&command).map_err(|e| {
            Error::invalid(
                "descriptor",
                format!("expected JSON {{\"table\": ..., \"purpose\": ...}}: {e}"),
            )
        })?;
        let purpose = if spec.purpose.trim().is_empty() {
            header
        } else {
            spec.purpose.trim().to_owned()
        };
        citybrain_types::validate_table_name(&spec.table)
            .map_err(|e| Error::invalid("table", e.to_string()))?;
        ctx.tables([spec.table.clone()]);
        ctx.purpose(&purpose);
        // Keys: all of them, before any data is read.
        // The descriptor may come alone (pyarrow) or with the schema (arrow-rs).
        let head = (!first.data_header.is_empty()).then_some(Ok(first));
        let rest = stream::iter(head).chain(input);
        let mut decoded =
            FlightRecordBatchStream::new_from_flight_data(rest.map_err(FlightError::from));
        let mut raw_keys: Vec<ArrayRef> = Vec::new();
        let mut count = 0usize;
        while let Some(batch) = decoded.next().await {
            let batch = batch.map_err(|e| Error::invalid("batches", e.to_string()))?;
            let col = batch
                .column_by_name("key")
                .ok_or_else(|| Error::invalid("batches", "each batch needs a text column 'key'"))?;
            count += col.len();
            if count > MAX_MATCH_KEYS {
                return Err(Error::invalid(
                    "batches",
                    format!("at most {MAX_MATCH_KEYS} keys per call"),
                ));
            }
            let text = cast(col, &DataType::Utf8)
                .map_err(|_| Error::invalid("batches", "column 'key' must be text"))?;
            raw_keys.push(text);
        }
        let (manifest, grant) = self
            .hub
            .table_and_grant(&p.department, &spec.table, &purpose)
            .await?;
        let mut keys = Vec::with_capacity(count);
        let mut position = 0usize;
        for a in &raw_keys {
            let s = a.as_string::<i32>();
            for i in 0..s.len() {
                if s.is_null(i) {
                    return Err(Error::invalid(format!("key[{position}]"), "null key"));
                }
                let k = check_key(&manifest, s.value(i)).map_err(|e| match e {
                    Error::Invalid { reason, .. } => {
                        Error::invalid(format!("key[{position}]"), reason)
                    }
                    other => other,
                })?;
                keys.push(k);
                position += 1;
            }
        }
        keys.sort_unstable();
        keys.dedup();
        ctx.key_hashes(keys.iter().map(|k| self.hub.audit.hash_key(k)).collect());
        let grant = grant?;
        ctx.grant(&grant.id, &purpose);
        if grant.terms.mode != Mode::Read {
            return Err(Error::Denied(format!(
                "grant '{}' is a {} grant; batch matching needs a read grant",
                grant.id,
                grant.terms.mode.as_str()
            )));
        }
        crate::data_svc::check_quota(&self.hub, &grant)?;
        let policy = self.hub.policy(grant, &manifest)?;
        let key_index = manifest
            .key_column
            .as_deref()
            .and_then(|k| policy.table_schema().index_of(k).ok())
            .ok_or_else(|| {
                Error::invalid(
                    "table",
                    format!("table '{}' has no key column", manifest.name),
                )
            })?;
        let rows = if keys.is_empty() {
            Vec::new()
        } else {
            self.hub
                .engine
                .lookup_reading(&manifest, &keys, policy.columns_read())
                .await?
        };
        let mut fields = vec![Field::new("key", DataType::Utf8, false)];
        fields.extend(
            policy
                .output_schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        let schema = Arc::new(Schema::new(fields));
        let mut out = Vec::new();
        let mut matched = 0u64;
        for b in &rows {
            let b = RecordBatch::try_new(policy.table_schema().clone(), b.columns().to_vec())
                .map_err(citybrain_governance::Error::from)?;
            let visible = policy.filter(&b)?;
            if visible.num_rows() == 0 {
                continue;
            }
            let key = cast(visible.column(key_index), &DataType::Utf8)
                .map_err(citybrain_governance::Error::from)?;
            let key: ArrayRef = Arc::new(StringArray::from(
                key.as_string::<i32>().iter().collect::<Vec<_>>(),
            ));
            let mut columns = vec![key];
            columns.extend(policy.project(&visible)?.columns().iter().cloned());
            matched += visible.num_rows() as u64;
            out.push(
                RecordBatch::try_new(schema.clone(), columns)
                    .map_err(citybrain_governance::Error::from)?,
            );
        }
        ctx.columns(schema.fields().iter().map(|f| f.name().clone()));
        ctx.rows(matched);
        let bytes = bytes_of(&out);
        Ok((answer(schema, out), bytes))
    }
}

/// The DoExchange command of a batch match.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    table: String,
    #[serde(default)]
    purpose: String,
}

/// `population.residents` → (`population`, `residents`).
fn split_name(name: &str) -> (&str, &str) {
    name.split_once('.').unwrap_or(("public", name))
}

#[tonic::async_trait]
impl FlightSqlService for FlightApi {
    type FlightService = FlightApi;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ctx = CallContext::of(&request);
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        let r = self
            .query_info(
                &request,
                &query.query,
                ticket.as_any().encode_to_vec(),
                &ctx,
            )
            .await;
        finish(&ctx, r)
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ctx = CallContext::of(&request);
        let r = match query_text(&cmd.prepared_statement_handle) {
            Ok(sql) => {
                self.query_info(&request, &sql, cmd.as_any().encode_to_vec(), &ctx)
                    .await
            }
            Err(e) => Err(e),
        };
        finish(&ctx, r)
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = match query_text(&ticket.statement_handle) {
            Ok(sql) => self.run_query(&request, &sql, &ctx).await,
            Err(e) => Err(e),
        };
        finish(&ctx, r)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = match query_text(&cmd.prepared_statement_handle) {
            Ok(sql) => self.run_query(&request, &sql, &ctx).await,
            Err(e) => Err(e),
        };
        finish(&ctx, r)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let ctx = CallContext::of(&request);
        let r = async {
            let sources = self.sql_sources(&request, &ctx).await?;
            let schema = self.hub.analytics.schema(&sources, &query.query).await?;
            let options = arrow::ipc::writer::IpcWriteOptions::default();
            let IpcMessage(schema_bytes) = SchemaAsIpc::new(&schema, &options)
                .try_into()
                .map_err(flight_internal)?;
            Ok((
                ActionCreatePreparedStatementResult {
                    prepared_statement_handle: query.query.clone().into_bytes().into(),
                    dataset_schema: schema_bytes,
                    parameter_schema: Default::default(),
                },
                0,
            ))
        }
        .await;
        finish(&ctx, r).map(Response::into_inner)
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles hold no server state; closing only needs a signed-in caller.
        let ctx = CallContext::of(&request);
        let r = self.hub.principal(&request).map(|_| ((), 0));
        finish(&ctx, r).map(Response::into_inner)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.metadata_info(&request, ticket, &query.into_builder().schema())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.catalogs_batch(&request, query, &ctx).await;
        one_batch(&ctx, r)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.metadata_info(&request, ticket, &query.into_builder().schema())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.schemas_batch(&request, query, &ctx).await;
        one_batch(&ctx, r)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.metadata_info(&request, ticket, &query.into_builder().schema())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.tables_batch(&request, query, &ctx).await;
        one_batch(&ctx, r)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.metadata_info(&request, ticket, &query.into_builder().schema())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.hub.principal(&request).and_then(|_| {
            let mut b = query.into_builder();
            b.append("TABLE");
            b.build().map_err(flight_internal)
        });
        one_batch(&ctx, r)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = query.as_any().encode_to_vec();
        self.metadata_info(&request, ticket, &query.into_builder(&self.info).schema())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.hub.principal(&request).and_then(|_| {
            query
                .into_builder(&self.info)
                .build()
                .map_err(flight_internal)
        });
        one_batch(&ctx, r)
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let ctx = CallContext::of(&request);
        let r: Result<(FlightStream, u64)> = Err(Error::invalid(
            "ticket",
            format!("unsupported ticket type {}", message.type_url),
        ));
        finish(&ctx, r)
    }

    async fn do_exchange_fallback(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<<Self as FlightService>::DoExchangeStream>, Status> {
        let ctx = CallContext::of(&request);
        let r = self.exchange(request, &ctx).await;
        finish(&ctx, r)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%E6%B0%91").as_deref(), Some("民"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("%E6%B0").as_deref(), None);
        assert_eq!(percent_decode("%zz").as_deref(), None);
        assert_eq!(percent_decode("%4").as_deref(), None);
    }
}
