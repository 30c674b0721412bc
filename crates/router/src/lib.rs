//! dbmesh's router: a statement and the sharding rules → a [`Plan`] (targets,
//! physical SQL, how results combine). Pure: no I/O, no clock, no globals.
//!
//! ```text
//! SQL text ──fingerprint──▶ plan cache ──hit──────────────────────┐
//!                              │ miss                              ▼
//!                              └─▶ parse, analyse, render ─▶ template ─▶ instantiate ─▶ Plan
//! ```
//!
//! [`Router::route`] fingerprints the text (literals → `?`, no parser) and
//! looks the fingerprint up in a bounded plan cache. A template records how
//! the statement routes in terms of literal *slots*: which slots are sharding
//! values of which table, the rendered physical statement with table and
//! literal slots, or "pass through unchanged to the default data source".
//! On a hit the plan is derived from the new literal values without parsing;
//! on a miss the statement is parsed (sqlparser, via the `sql` crate), the
//! template built and cached, and then instantiated the same way — so both
//! paths give the same plan by construction.
//!
//! Routing rules: statements that touch no table of the rules (and no
//! table at all) go to the default data source with their text unchanged;
//! sharded tables route by the sharding values in WHERE (`=`, `IN`, ranges,
//! AND/OR, `?` parameters), binding tables joined on their key route together,
//! broadcast tables are read from one copy and written to all, single tables
//! go to their data source, and anything the router cannot place with
//! certainty is refused with a MySQL error ([`RouteError`]) naming the
//! construct — never sent to a default shard. An INSERT into a table whose
//! column a sequence fills gets its ids from the caller before routing
//! ([`Router::route_filled`]), so an id can itself be the sharding key. An
//! INSERT without a column list is routed with the table's column list, which
//! the caller reads when [`RouteError::ColumnsNeeded`] asks for it and gives
//! with [`Router::learn_columns`]. Queries on `information_schema` are answered
//! with logical names: each data source runs a copy that shows its part of the
//! logical view, merged like a scatter read.
//! Modules, each using only those after it: `instantiate` (template and values
//! → plan) → `template` (the miss path) → `logical_view` (`information_schema`)
//! → `merged_select` (SELECTs merged across shards) → `splice` (physical
//! statement text) → `sequence_ids` (ids a sequence fills) → `key_nodes` (the
//! nodes a key condition selects) → `stored` (values as a column stores them)
//! → `input` (the statement's values); beside them `placement`, `columns`,
//! `cache`, `plan`, `error`.

mod cache;
mod columns;
mod error;
mod input;
mod instantiate;
mod key_nodes;
mod logical_view;
mod maintenance;
mod merged_select;
mod placement;
mod plan;
mod sequence_ids;
mod splice;
mod stored;
mod template;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rules::Rules;

pub use columns::{representative, ColumnSource};
pub use error::RouteError;
pub use input::IdStyle;
pub use plan::{
    Combine, MergeSpec, MoveFrom, Param, Plan, PrepareRoute, RowMove, SessionStatement,
    StatementKind, Target,
};
pub use sql::{
    Aggregation, BinOp, BitFn, Col, Constant, DistinctFn, GroupConcat, LimitOperands, MergeExpr,
    MergeShape, Operand, Role, SetOp, SortKey,
};

use cache::ClockCache;
use columns::KnownColumns;
use input::{Ids, Input};
use instantiate::instantiate;
use template::Template;

/// Fingerprints longer than this are not cached (bulk INSERTs would fill the
/// cache with huge keys used once).
pub const MAX_CACHED_FINGERPRINT: usize = 16 * 1024;

/// Router settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterOptions {
    /// Plan-cache entries; 0 disables the cache.
    pub cache_capacity: usize,
    /// Allow UPDATE/DELETE without WHERE on sharded tables (they change every shard).
    pub allow_full_scatter_write: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 4096,
            allow_full_scatter_write: false,
        }
    }
}

/// Plan-cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Statements routed from a cached template.
    pub hits: u64,
    /// Statements that were parsed.
    pub misses: u64,
    /// Templates held.
    pub entries: usize,
}

/// Routes statements against one rules snapshot. Share it (`Arc`) between
/// sessions; build a new one when the rules are reloaded.
pub struct Router {
    rules: Arc<Rules>,
    options: RouterOptions,
    cache: ClockCache<Arc<Template>>,
    columns: KnownColumns,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Router {
    /// A router over `rules` with a plan cache of `cache_capacity` entries (0: no cache).
    pub fn new(rules: Arc<Rules>, cache_capacity: usize) -> Router {
        Router::with_options(
            rules,
            RouterOptions {
                cache_capacity,
                ..RouterOptions::default()
            },
        )
    }

    /// A router with explicit options.
    pub fn with_options(rules: Arc<Rules>, options: RouterOptions) -> Router {
        Router {
            cache: ClockCache::new(options.cache_capacity),
            columns: KnownColumns::default(),
            rules,
            options,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The rules this router routes by.
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }

    /// The options this router was built with.
    pub fn options(&self) -> &RouterOptions {
        &self.options
    }

    /// Routes one statement. `params` are the values bound to its `?`
    /// placeholders (prepared statements, at EXECUTE); empty for COM_QUERY
    /// text, in which case placeholders route like unknown values.
    /// Text holding several statements is refused; see [`Router::route_multi`].
    /// An INSERT that needs ids from a sequence (it omits the column the
    /// sequence fills, or gives NULL or 0) fails with [`RouteError::IdsNeeded`]:
    /// take the ids and call [`Router::route_filled`].
    pub fn route(&self, sql: &str, params: &[Param]) -> Result<Plan, RouteError> {
        self.route_with(sql, params, Ids::None)
            .map(|(plan, _)| plan)
    }

    /// Routes an INSERT with the ids a sequence fills into it: one per row
    /// that needs one, in row order — as many as [`RouteError::IdsNeeded`]
    /// asked for — written into the physical statements as `style` says.
    /// When the filled column is the sharding key, each row goes to the shard
    /// of its id.
    pub fn route_filled(
        &self,
        sql: &str,
        params: &[Param],
        ids: &[u64],
        style: IdStyle,
    ) -> Result<Plan, RouteError> {
        self.route_with(sql, params, Ids::Given(ids, style))
            .map(|(plan, _)| plan)
    }

    /// Where COM_STMT_PREPARE prepares a statement: see [`PrepareRoute`].
    pub fn route_for_prepare(&self, sql: &str) -> Result<PrepareRoute, RouteError> {
        let (plan, per_execution) = self.route_with(sql, &[], Ids::Prepare)?;
        Ok(PrepareRoute {
            plan,
            per_execution,
        })
    }

    /// Routes a statement; also says whether each execution must be routed with its values
    /// ([`PrepareRoute::per_execution`]).
    fn route_with(
        &self,
        sql: &str,
        params: &[Param],
        ids: Ids<'_>,
    ) -> Result<(Plan, bool), RouteError> {
        if let Some(inner) = sql::strip_leading_words(sql, &["EXPLAIN", "ROUTE"]) {
            let plan = Plan::session(SessionStatement::ExplainRoute(inner.to_owned()));
            return Ok((plan, false));
        }
        if let Some(plan) = maintenance::plan(&self.rules, sql) {
            return plan.map(|p| (p, false));
        }
        let fp = sql::fingerprint(sql);
        let input = Input {
            sql,
            fp: &fp,
            params,
            ids,
            inline_params: false,
        };
        if !params.is_empty() && params.len() != input.placeholders() {
            return Err(RouteError::ParamCount {
                expected: input.placeholders(),
                got: params.len(),
            });
        }
        let cacheable = self.options.cache_capacity > 0 && fp.text.len() <= MAX_CACHED_FINGERPRINT;
        if cacheable {
            if let Some(t) = self.cache.get(&fp.text).filter(|t| t.fits(sql, &fp)) {
                // A template built with a column list that has changed since is rebuilt.
                if self.columns.still_fit(t.columns())? {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    let plan = instantiate(&self.rules, &t, &input)?;
                    return Ok((plan, t.per_execution()));
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let (template, complete) =
            template::build(&self.rules, &self.options, &self.columns, sql, &fp)?;
        let plan = instantiate(&self.rules, &template, &input);
        let per_execution = template.per_execution();
        if cacheable && complete {
            self.cache.insert(fp.text.clone(), Arc::new(template));
        }
        plan.map(|plan| (plan, per_execution))
    }

    /// Routes each statement of a multi-statement text (split at `;` outside
    /// quotes and comments) on its own, in order.
    pub fn route_multi(&self, sql: &str) -> Result<Vec<Plan>, RouteError> {
        let pieces = sql::split(sql);
        if pieces.is_empty() {
            return Err(RouteError::Empty);
        }
        pieces.into_iter().map(|s| self.route(s, &[])).collect()
    }

    /// Gives the router the column list of a table, as [`RouteError::ColumnsNeeded`] asked
    /// for: the columns of `source` in order (see [`ColumnSource`]). Kept until
    /// [`Router::forget_columns`].
    pub fn learn_columns(&self, source: ColumnSource, columns: Vec<String>) {
        self.columns.learn(source, columns);
    }

    /// Forgets every column list learned (a table's definition may have changed: call it
    /// after DDL). Plans built with a list are not reused until it is learned again.
    pub fn forget_columns(&self) {
        self.columns.forget();
    }

    /// Cache hits, misses and entries.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_shared_between_sessions() {
        fn shared<T: Send + Sync>() {}
        shared::<Router>();
        shared::<Plan>();
    }
}
