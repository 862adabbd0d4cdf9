//! What a governed query may be, checked on its logical plan before anything runs.
//!
//! Every query: a query only (no EXPLAIN, DDL, DML, COPY or statements anywhere in the plan).
//!
//! A query that reads a table through an `aggregate` grant must be one aggregation: optional
//! projection, HAVING, ORDER BY, DISTINCT and LIMIT over one GROUP BY of plain columns whose input
//! reads tables directly (joins, WHERE, plain column lists); no subqueries, window functions,
//! grouping sets or nested aggregations; only COUNT, SUM and AVG of plain columns, without FILTER;
//! conditions only of the kinds that cannot fail on a value (so no error depends on one row).
//! The hub then adds, for every aggregate-granted table in the input, a count of the distinct
//! people (keys) behind each group, and drops every group in which any of those counts is below
//! the grant's minimum group size. One query therefore cannot return a group narrowed to fewer
//! people than that. Differencing two allowed answers (all, and all but one person) is not
//! prevented: the minimum group size is a control, not a proof of anonymity.

use crate::scan::{GROUP_KEY, GovernedTable};
use crate::{Error, Result};
use arrow::datatypes::DataType;
use citybrain_governance::Mode;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef};
use datafusion::datasource::source_as_provider;
use datafusion::functions_aggregate::expr_fn::count_distinct;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableSource, col, lit};
use std::sync::Arc;

/// A granted table a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedTable {
    /// Catalog table name.
    pub table: String,
    /// The grant it is read under.
    pub grant_id: String,
    /// The grant's mode.
    pub mode: Mode,
    /// The grant's minimum group size (aggregate grants).
    pub min_group_size: u64,
}

/// Checks a planned query and returns the plan to run (rewritten for aggregate grants) and the
/// granted tables it reads.
pub(crate) fn govern(plan: LogicalPlan) -> Result<(LogicalPlan, Vec<UsedTable>)> {
    let mut used = Vec::new();
    let mut refused = None;
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => {
                refused = Some("EXPLAIN is not available; send the query itself");
            }
            LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::Extension(_) => {
                refused = Some("only queries (SELECT) are allowed");
            }
            LogicalPlan::TableScan(scan) => {
                used.extend(governed(&scan.source));
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(reason) = refused {
        return Err(Error::NotAQuery(reason.into()));
    }
    let aggregate: Vec<&UsedTable> = used.iter().filter(|u| u.mode == Mode::Aggregate).collect();
    if aggregate.is_empty() {
        return Ok((plan, used));
    }
    let k = aggregate
        .iter()
        .map(|u| u.min_group_size)
        .max()
        .unwrap_or(1);
    let names: Vec<String> = aggregate.iter().map(|u| u.table.clone()).collect();
    let plan = suppress_small_groups(plan, k, aggregate.len(), &names.join(", "))?;
    Ok((plan, used))
}

/// The granted table behind a scan, if it is one.
fn governed(source: &Arc<dyn TableSource>) -> Option<UsedTable> {
    let provider = source_as_provider(source).ok()?;
    let t = provider.downcast_ref::<GovernedTable>()?;
    Some(UsedTable {
        table: t.name.clone(),
        grant_id: t.policy.grant.id.clone(),
        mode: t.mode(),
        min_group_size: t.policy.grant.terms.min_group_size.max(1),
    })
}

fn refuse(tables: &str, what: &str) -> Error {
    Error::Refused(format!(
        "{tables} may only be read through aggregate queries: {what}"
    ))
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

fn no_subqueries(node: &LogicalPlan, tables: &str) -> Result<()> {
    if node.expressions().iter().any(has_subquery) {
        return Err(refuse(tables, "subqueries are not allowed"));
    }
    Ok(())
}

/// Only COUNT, SUM and AVG of a plain column (or `*`), without FILTER: MIN, MAX, string and
/// array aggregates would show single values, and a computed argument or a FILTER clause could
/// aggregate one person inside a large group.
fn allowed_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Alias(a) => allowed_aggregate(&a.expr),
        Expr::AggregateFunction(f) => {
            matches!(f.func.name(), "count" | "sum" | "avg" | "mean")
                && f.params.order_by.is_empty()
                && f.params.filter.is_none()
                && f.params
                    .args
                    .iter()
                    .all(|a| matches!(a, Expr::Column(_) | Expr::Literal(..)))
        }
        _ => false,
    }
}

/// Conditions an aggregate query may use in WHERE, JOIN and HAVING: columns, literals,
/// comparisons of equal types, boolean logic, IN lists, BETWEEN, LIKE and null tests. None of
/// them can fail on a value, so neither an answer nor an error can depend on one person's row.
/// (A comparison of unequal types would make the planner cast the column, which can fail.)
pub(crate) fn safe(e: &Expr, schema: &DFSchema) -> bool {
    use datafusion::logical_expr::Operator as Op;
    let ty = |e: &Expr| e.get_type(schema).ok();
    let same = |a: &Expr, b: &Expr| ty(a).is_some_and(|t| ty(b).is_some_and(|u| alike(&t, &u)));
    match e {
        Expr::Column(_) | Expr::Literal(..) => true,
        Expr::Alias(a) => safe(&a.expr, schema),
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Literal(..)),
        Expr::TryCast(c) => matches!(c.expr.as_ref(), Expr::Literal(..)),
        Expr::BinaryExpr(b) => match b.op {
            Op::And | Op::Or => safe(&b.left, schema) && safe(&b.right, schema),
            op if citybrain_governance::compares_without_failing(&op) => {
                safe(&b.left, schema) && safe(&b.right, schema) && same(&b.left, &b.right)
            }
            _ => false,
        },
        Expr::Not(x)
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotTrue(x)
        | Expr::IsNotFalse(x) => safe(x, schema),
        Expr::Between(b) => {
            [&b.expr, &b.low, &b.high].iter().all(|x| safe(x, schema))
                && same(&b.expr, &b.low)
                && same(&b.expr, &b.high)
        }
        Expr::InList(l) => {
            safe(&l.expr, schema) && l.list.iter().all(|x| safe(x, schema) && same(&l.expr, x))
        }
        Expr::Like(l) => {
            safe(&l.expr, schema) && safe(&l.pattern, schema) && same(&l.expr, &l.pattern)
        }
        _ => false,
    }
}

/// Types that compare without a cast that could fail: equal ones, and text as strings or
/// string views (tables are read as views, literals are strings).
fn alike(a: &DataType, b: &DataType) -> bool {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8);
    a == b || (text(a) && text(b))
}

/// Every expression of `node` is [`safe`] over its input.
fn safe_node(node: &LogicalPlan, tables: &str) -> Result<()> {
    let inputs = node.inputs();
    let schema = match node {
        LogicalPlan::Join(_) => node.schema().clone(),
        _ => match inputs.first() {
            Some(i) => i.schema().clone(),
            None => node.schema().clone(),
        },
    };
    if let LogicalPlan::Join(j) = node {
        // Join keys are compared for equality; their types must already agree.
        for (l, r) in &j.on {
            if !(safe(l, j.left.schema()) && safe(r, j.right.schema())) {
                return Err(refuse(tables, "join on columns, not on computed values"));
            }
            let (lt, rt) = (l.get_type(j.left.schema()), r.get_type(j.right.schema()));
            if !matches!((lt, rt), (Ok(a), Ok(b)) if alike(&a, &b)) {
                return Err(refuse(tables, "join on columns of the same type"));
            }
        }
        if let Some(f) = &j.filter
            && !safe(f, &schema)
        {
            return Err(refuse(tables, CONDITIONS));
        }
        return Ok(());
    }
    if node.expressions().iter().all(|e| safe(e, &schema)) {
        Ok(())
    } else {
        Err(refuse(tables, CONDITIONS))
    }
}

const CONDITIONS: &str = "conditions may only compare columns with values of the same type \
     (=, <>, <, >, BETWEEN, IN, LIKE, IS NULL, AND, OR, NOT)";

/// The input of the one aggregation: tables read directly.
fn check_input(node: &LogicalPlan, tables: &str) -> Result<()> {
    match node {
        LogicalPlan::TableScan(_) => Ok(()),
        LogicalPlan::Filter(_) | LogicalPlan::Join(_) | LogicalPlan::SubqueryAlias(_) => {
            no_subqueries(node, tables)?;
            safe_node(node, tables)?;
            node.inputs()
                .into_iter()
                .try_for_each(|i| check_input(i, tables))
        }
        LogicalPlan::Projection(p) => {
            if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) {
                check_input(&p.input, tables)
            } else {
                Err(refuse(
                    tables,
                    "compute values in the GROUP BY, not in a derived table",
                ))
            }
        }
        LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => Err(refuse(
            tables,
            "one aggregation only, without window functions",
        )),
        _ => Err(refuse(
            tables,
            "read the tables directly (joins and WHERE only) under the GROUP BY",
        )),
    }
}

fn suppress_small_groups(
    plan: LogicalPlan,
    k: u64,
    scans: usize,
    tables: &str,
) -> Result<LogicalPlan> {
    // Peel what may stand above the aggregation.
    let mut above = Vec::new();
    let mut node = plan;
    loop {
        match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::SubqueryAlias(_) => {
                no_subqueries(&node, tables)?;
                if matches!(node, LogicalPlan::Filter(_)) {
                    // HAVING may be evaluated on groups that are then dropped.
                    safe_node(&node, tables)?;
                }
                let inputs = node.inputs();
                let [input] = inputs.as_slice() else {
                    return Err(refuse(tables, "one aggregation only"));
                };
                let input = (*input).clone();
                above.push(node);
                node = input;
            }
            LogicalPlan::Aggregate(_) => break,
            _ => {
                return Err(refuse(
                    tables,
                    "the query must end in a GROUP BY or COUNT/SUM/AVG",
                ));
            }
        }
    }
    let LogicalPlan::Aggregate(agg) = node else {
        return Err(Error::Internal("aggregate expected".into()));
    };
    if !agg.group_expr.iter().all(|e| matches!(e, Expr::Column(_))) {
        return Err(refuse(
            tables,
            "GROUP BY plain columns (no expressions, GROUPING SETS, ROLLUP or CUBE)",
        ));
    }
    if !agg.aggr_expr.iter().all(allowed_aggregate) {
        return Err(refuse(tables, "only COUNT, SUM and AVG are allowed"));
    }
    check_input(&agg.input, tables)?;
    let keys = group_keys(agg.input.schema());
    if keys.len() != scans {
        return Err(refuse(
            tables,
            "each aggregate-granted table must be read directly so its groups can be counted",
        ));
    }
    // The original aggregation plus one distinct-people count per aggregate-granted table.
    let original: DFSchemaRef = agg.schema.clone();
    let mut aggr = agg.aggr_expr.clone();
    let mut checks = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let name = format!("__cb_people_{i}");
        aggr.push(count_distinct(Expr::Column(key)).alias(&name));
        checks.push(col(Column::new_unqualified(name)).gt_eq(lit(k as i64)));
    }
    let condition = checks
        .into_iter()
        .reduce(|a, b| a.and(b))
        .ok_or_else(|| Error::Internal("no group checks".into()))?;
    let restore: Vec<Expr> = original
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let df = |e: datafusion::error::DataFusionError| Error::Internal(e.to_string());
    let mut rebuilt = LogicalPlanBuilder::from(agg.input.as_ref().clone())
        .aggregate(agg.group_expr.clone(), aggr)
        .map_err(df)?
        .filter(condition)
        .map_err(df)?
        .project(restore)
        .map_err(df)?
        .build()
        .map_err(df)?;
    for node in above.into_iter().rev() {
        rebuilt = node
            .with_new_exprs(node.expressions(), vec![rebuilt])
            .map_err(df)?;
    }
    Ok(rebuilt)
}

/// The group-key columns (one per aggregate-granted table read) in an aggregation's input.
fn group_keys(schema: &DFSchemaRef) -> Vec<Column> {
    schema
        .iter()
        .filter(|(_, f)| f.name() == GROUP_KEY)
        .map(|(q, f)| Column::new(q.cloned(), f.name()))
        .collect()
}
