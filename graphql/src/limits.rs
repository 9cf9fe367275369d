//! Every limit of the GraphQL API, and the extension that enforces the ones async-graphql does
//! not: page sizes are checked on the parsed document, before validation and before any
//! resolver; every error leaves with an `extensions.code`.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned, Response, ServerError, ServerResult, Value, Variables};

use crate::Code;

/// Largest request body (a query and its variables), bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Deepest nesting of fields.
pub const MAX_DEPTH: usize = 15;
/// Most complexity points: each field costs one, and a page costs its size times its items.
pub const MAX_COMPLEXITY: usize = 50_000;
/// Most directives on one field.
pub const MAX_DIRECTIVES: usize = 8;
/// Largest page (`first`, `last`).
pub const MAX_PAGE: usize = 500;
/// The page size when none is given.
pub const DEFAULT_PAGE: usize = 50;
/// Most moments of the past (`asOf`, `diff`'s ends) one request reads: each is a whole state
/// computed and held for the request (up to ~130 MB at 10M events:
/// `cairn bench projections` peaks at 134 MiB folding them in memory).
pub const MAX_AS_OF_STATES: usize = 8;
/// Most records one filtered `events` page examines.
pub const MAX_SCAN: usize = 100_000;
/// Most points of one `timeline`.
pub const MAX_TIMELINE_POINTS: usize = 1000;
/// Most bytes of a task's output one `Task.output` returns (the agent's own limit is larger).
pub const MAX_OUTPUT: usize = 64 * 1024;
/// Longest a master waits for an agent to answer `Task.output`, seconds.
pub const OUTPUT_TIMEOUT_SECS: u64 = 5;
/// Longest a query may run, seconds.
pub const QUERY_TIMEOUT_SECS: u64 = 30;

/// The checked size of a page.
pub fn page_size(first: Option<i32>) -> async_graphql::Result<usize> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_PAGE)
            .ok_or_else(|| {
                crate::error(
                    Code::Validation,
                    format!("first: {n} is not in 0..={MAX_PAGE}"),
                )
            }),
    }
}

/// The complexity of a page: its items times what each costs.
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| usize::try_from(n).unwrap_or(MAX_PAGE));
    items.max(1).saturating_mul(child_complexity)
}

/// Page-size checks and error codes.
#[derive(Debug, Clone, Copy)]
pub struct Limits;

impl ExtensionFactory for Limits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Limits)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Limits {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        for e in &mut response.errors {
            with_code(e);
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        check_pages(&document, variables)?;
        Ok(document)
    }
}

/// Gives an error without a code one: async-graphql's own (parse, validation, depth,
/// complexity) are all about the request's shape.
pub fn with_code(e: &mut ServerError) {
    let has_code = e
        .extensions
        .as_ref()
        .is_some_and(|x| x.get("code").is_some());
    if !has_code {
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", Code::Validation.as_str());
    }
}

/// Rejects any `first` or `last` argument over [`MAX_PAGE`], literal or variable.
fn check_pages(document: &ExecutableDocument, variables: &Variables) -> ServerResult<()> {
    let mut defaults = Variables::default();
    for (_, operation) in document.operations.iter() {
        for definition in &operation.node.variable_definitions {
            if let Some(default) = &definition.node.default_value {
                defaults.insert(definition.node.name.node.clone(), default.node.clone());
            }
        }
        check_selection(&operation.node.selection_set, variables, &defaults)?;
    }
    for fragment in document.fragments.values() {
        check_selection(&fragment.node.selection_set, variables, &defaults)?;
    }
    Ok(())
}

fn check_selection(
    set: &Positioned<SelectionSet>,
    variables: &Variables,
    defaults: &Variables,
) -> ServerResult<()> {
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    if !matches!(name.node.as_str(), "first" | "last") {
                        continue;
                    }
                    let value = value.node.clone().into_const_with(|name| {
                        variables
                            .get(&name)
                            .or_else(|| defaults.get(&name))
                            .cloned()
                            .ok_or(())
                    });
                    if let Ok(Value::Number(n)) = &value {
                        let n = n.as_i64().unwrap_or(i64::MAX);
                        if n < 0 || n > MAX_PAGE as i64 {
                            return Err(page_error(&name.node, n, name.pos));
                        }
                    }
                }
                check_selection(&field.node.selection_set, variables, defaults)?;
            }
            Selection::InlineFragment(fragment) => {
                check_selection(&fragment.node.selection_set, variables, defaults)?;
            }
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

fn page_error(argument: &str, n: i64, pos: Pos) -> ServerError {
    let mut e = ServerError::new(
        format!("{argument}: {n} is not in 0..={MAX_PAGE}: pages hold at most {MAX_PAGE} items"),
        Some(pos),
    );
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", Code::Validation.as_str());
    e
}
