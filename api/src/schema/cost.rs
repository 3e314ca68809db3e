//! What one query may ask for: its cost, its depth and its root fields.
//!
//! Cost: every field costs 1 plus what it selects; a list multiplies what it selects by the
//! number of items it can return: `first` of a page (default 20, at most 100), `first` of a
//! job's log (default 1,000, at most 5,000; a line costs 1 whatever fields are asked for), and
//! an estimate for lists without a size (a build's jobs, a repo's webhooks…). So `repos(first: 100) { builds(first: 100) { … } }`
//! costs 10,000 times its builds' fields, not 2 plus them.
//!
//! async-graphql computes cost and depth while it validates; [`QueryCost`] compares them with
//! the limits itself so that a refusal says both numbers. Introspection is exempt from cost and
//! depth (the standard introspection query of graphql-js is 13 levels deep) and bounded instead
//! by how many of its lists may nest: `types { fields { args } }` is the deepest nesting a
//! schema needs, `fields { type { fields { type { fields … } } } }` multiplies without end.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation};
use async_graphql::parser::types::{ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet};
use async_graphql::{Name, ServerError, ServerResult, ValidationResult, Variables};

use super::{DEFAULT_PAGE, MAX_PAGE};

/// The items a list without a size is counted as: labels, parameters, artifacts, webhooks,
/// schedules, parameter sets, ssh keys, tokens, a job's dependencies.
pub(crate) const SMALL_LIST: usize = 10;
/// The jobs a build is counted as having.
pub(crate) const JOBS: usize = 20;
/// Log lines a job's `log` returns without `first`, and the most it returns.
pub(crate) const DEFAULT_LOG_LINES: i32 = 1000;
pub(crate) const MAX_LOG_LINES: i32 = 5000;

/// Matches a log search returns at most, and the longest text it searches for.
pub(crate) const MAX_LOG_SEARCH_LINES: i32 = 1000;
pub(crate) const MAX_LOG_SEARCH_TEXT: usize = 200;
/// What a log search costs besides its lines: it may read the whole log.
const LOG_SEARCH: usize = 5000;

/// No cost is counted above this, so that sums of many costs cannot overflow.
const CEILING: usize = 1 << 40;

/// The cost of a field that returns `items` times what it selects.
pub(crate) fn list(items: usize, child_complexity: usize) -> usize {
    items.saturating_mul(child_complexity).saturating_add(1).min(CEILING)
}

/// The cost of a page of at most `first` items (the default page when not given).
pub(crate) fn page(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.map_or(DEFAULT_PAGE, |n| usize::try_from(n).unwrap_or(0).min(MAX_PAGE));
    list(items, child_complexity)
}

/// The cost of `first` lines of a job's log: 1 per line (its fields cost nothing more).
pub(crate) fn log_lines(first: Option<i32>, child_complexity: usize) -> usize {
    let lines = first.unwrap_or(DEFAULT_LOG_LINES).clamp(0, MAX_LOG_LINES);
    list(usize::try_from(lines).unwrap_or(0), child_complexity.max(1))
}

/// The cost of a search of a job's log: [`LOG_SEARCH`] plus 1 per line it can return.
pub(crate) fn log_search(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let lines = first.or(last).unwrap_or(0).clamp(0, MAX_LOG_SEARCH_LINES);
    list(usize::try_from(lines).unwrap_or(0), child_complexity.max(1)).saturating_add(LOG_SEARCH)
}

/// Limits on what one query may ask for.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// How deeply fields may nest (introspection excepted).
    pub max_depth: usize,
    /// The largest cost (introspection excepted).
    pub max_complexity: usize,
    /// Fields (aliases included) at the root of one operation.
    pub max_root_fields: usize,
}

/// How many introspection lists (`types`, `fields`, `args`, …) may nest in one another.
const INTROSPECTION_LIST_NESTING: usize = 3;
/// How deep an introspection query may be (`ofType` chains are long but cheap).
const INTROSPECTION_DEPTH: usize = 24;
const INTROSPECTION_ROOTS: [&str; 3] = ["__schema", "__type", "__typename"];
const INTROSPECTION_LISTS: [&str; 8] = [
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

/// The extension that enforces [`QueryLimits`].
pub(crate) struct QueryCost(pub QueryLimits);

impl ExtensionFactory for QueryCost {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(CostCheck {
            limits: self.0,
            introspection: AtomicBool::new(false),
            root_fields: AtomicUsize::new(0),
        })
    }
}

/// One request's check.
struct CostCheck {
    limits: QueryLimits,
    /// Whether the request only introspects the schema.
    introspection: AtomicBool,
    /// The most root fields of one of its operations.
    root_fields: AtomicUsize,
}

fn refusal(message: String, measured: usize, limit: usize) -> ServerError {
    let mut error = ServerError::new(message, None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", crate::errors::Code::BadUserInput.as_str());
    extensions.set("measured", measured);
    extensions.set("limit", limit);
    error
}

#[async_trait::async_trait]
impl Extension for CostCheck {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let shape = Shape::of(&document);
        self.root_fields.store(shape.root_fields, Ordering::Relaxed);
        if shape.introspection_only {
            let checks = [
                (
                    shape.list_nesting,
                    INTROSPECTION_LIST_NESTING,
                    "nests {measured} lists of the schema (types, fields, args, …); at most {limit} are allowed",
                ),
                (
                    shape.depth,
                    INTROSPECTION_DEPTH,
                    "is nested {measured} deep; at most {limit} is allowed",
                ),
            ];
            if let Some((measured, limit, text)) = checks.into_iter().find(|(measured, limit, _)| measured > limit) {
                let text = text
                    .replace("{measured}", &measured.to_string())
                    .replace("{limit}", &limit.to_string());
                return Err(refusal(format!("the introspection query {text}"), measured, limit));
            }
            self.introspection.store(true, Ordering::Relaxed);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let limits = self.limits;
        let root_fields = self.root_fields.load(Ordering::Relaxed);
        if self.introspection.load(Ordering::Relaxed) {
            return match too_wide(root_fields, limits) {
                Some(error) => Err(vec![error]),
                None => Ok(result),
            };
        }
        if result.depth > limits.max_depth {
            return Err(vec![refusal(
                format!(
                    "the query is nested {} deep; at most {} is allowed",
                    result.depth, limits.max_depth
                ),
                result.depth,
                limits.max_depth,
            )]);
        }
        if result.complexity > limits.max_complexity {
            return Err(vec![refusal(
                format!(
                    "the query costs {}; at most {} is allowed (each field costs 1, lists count as \
                     many items as `first` asks for: ask for fewer items or fewer fields)",
                    result.complexity, limits.max_complexity
                ),
                result.complexity,
                limits.max_complexity,
            )]);
        }
        // After the cost, so that a query both too costly and too wide is told its cost.
        match too_wide(root_fields, limits) {
            Some(error) => Err(vec![error]),
            None => Ok(result),
        }
    }
}

/// The refusal of an operation with more than `max_root_fields` root fields.
fn too_wide(root_fields: usize, limits: QueryLimits) -> Option<ServerError> {
    (root_fields > limits.max_root_fields).then(|| {
        refusal(
            format!(
                "the query asks for {root_fields} root fields (aliases included); at most {} are allowed in one operation",
                limits.max_root_fields
            ),
            root_fields,
            limits.max_root_fields,
        )
    })
}

/// What [`CostCheck`] measures of a document before async-graphql validates it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    /// The most root fields of any one operation, fragments included.
    root_fields: usize,
    /// Whether every operation is a query of introspection fields only.
    introspection_only: bool,
    /// The most introspection lists nested along one path.
    list_nesting: usize,
    /// The deepest path.
    depth: usize,
}

impl Shape {
    fn of(document: &ExecutableDocument) -> Self {
        let walker = Walker {
            fragments: &document.fragments,
        };
        let mut shape = Self {
            introspection_only: true,
            ..Self::default()
        };
        for (_, operation) in document.operations.iter() {
            let operation = &operation.node;
            let mut roots = Vec::new();
            walker.fields(&operation.selection_set.node, &mut HashSet::new(), &mut |name| {
                roots.push(name.to_owned());
            });
            shape.root_fields = shape.root_fields.max(roots.len());
            shape.introspection_only &=
                operation.ty == OperationType::Query && roots.iter().all(|r| INTROSPECTION_ROOTS.contains(&r.as_str()));
            let (depth, nesting) = walker.measure(&operation.selection_set.node, &mut HashSet::new());
            shape.depth = shape.depth.max(depth);
            shape.list_nesting = shape.list_nesting.max(nesting);
        }
        shape
    }
}

struct Walker<'a> {
    fragments: &'a std::collections::HashMap<Name, async_graphql::Positioned<FragmentDefinition>>,
}

impl Walker<'_> {
    /// Calls `found` with the name of every field of `set`, through fragments; a fragment that
    /// spreads itself is followed once per path (validation refuses it later).
    fn fields<'a>(&'a self, set: &'a SelectionSet, seen: &mut HashSet<&'a str>, found: &mut impl FnMut(&str)) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => found(field.node.name.node.as_str()),
                Selection::InlineFragment(inline) => self.fields(&inline.node.selection_set.node, seen, found),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    if let Some(fragment) = self.fragments.get(name) {
                        if seen.insert(name) {
                            self.fields(&fragment.node.selection_set.node, seen, found);
                            seen.remove(name);
                        }
                    }
                }
            }
        }
    }

    /// The depth of `set` and the most introspection lists nested along one of its paths.
    fn measure<'a>(&'a self, set: &'a SelectionSet, seen: &mut HashSet<&'a str>) -> (usize, usize) {
        let mut deepest = (0, 0);
        for selection in &set.items {
            let (depth, nesting) = match &selection.node {
                Selection::Field(field) => {
                    let (depth, nesting) = self.measure(&field.node.selection_set.node, seen);
                    let list = INTROSPECTION_LISTS.contains(&field.node.name.node.as_str());
                    (depth + 1, nesting + usize::from(list))
                }
                Selection::InlineFragment(inline) => self.measure(&inline.node.selection_set.node, seen),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    match self.fragments.get(name) {
                        Some(fragment) if seen.insert(name) => {
                            let measured = self.measure(&fragment.node.selection_set.node, seen);
                            seen.remove(name);
                            measured
                        }
                        _ => (0, 0),
                    }
                }
            };
            deepest = (deepest.0.max(depth), deepest.1.max(nesting));
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(query: &str) -> Shape {
        Shape::of(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn root_fields_count_aliases_and_fragments() {
        let measured = shape("query { a: orgs { id } b: orgs { id } ...F } fragment F on QueryRoot { c: orgs { id } }");
        assert_eq!(measured.root_fields, 3);
        assert!(!measured.introspection_only);
    }

    #[test]
    fn introspection_lists_are_counted_along_each_path() {
        let standard =
            shape("{ __schema { types { name fields { name args { name type { name ofType { name } } } } } } }");
        let runaway = shape(
            "{ __type(name: \"Org\") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }",
        );
        let mixed = shape("{ __schema { types { name } } orgs { edges { node { id } } } }");
        let subscription = shape("subscription { __typename }");

        assert!(standard.introspection_only);
        assert_eq!(standard.list_nesting, 3);
        assert_eq!(standard.depth, 7);
        assert!(runaway.introspection_only);
        assert_eq!(runaway.list_nesting, 4);
        assert!(!mixed.introspection_only);
        assert!(!subscription.introspection_only);
    }

    #[test]
    fn a_fragment_that_spreads_itself_is_followed_once() {
        let measured = shape("{ __schema { ...F } } fragment F on __Schema { types { name } ...F }");
        assert_eq!(measured.list_nesting, 1);
    }

    #[test]
    fn lists_multiply_what_they_select_and_never_overflow() {
        assert_eq!(page(None, 3), 1 + DEFAULT_PAGE * 3);
        assert_eq!(page(Some(1000), 3), 1 + MAX_PAGE * 3);
        assert_eq!(page(Some(-5), 3), 1);
        assert_eq!(log_lines(None, 0), 1001);
        assert_eq!(log_lines(Some(9999), 0), 5001);
        assert_eq!(list(usize::MAX, usize::MAX), CEILING);
    }
}
