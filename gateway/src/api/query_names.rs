//! No query parameter is silently ignored: a request naming one its route does not take is
//! refused with 400 `validation_error` naming it, on every route, before its handler runs.
//!
//! The parameters a route takes are the ones its OpenAPI operation declares `in: query`,
//! so the document and the gateway cannot disagree: a parameter missing from the document
//! is refused, and one the document lists but the handler's query struct lacks is refused
//! by the struct (`deny_unknown_fields` on every query struct).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::{IntoResponse, Response},
};
use utoipa::openapi::{
    OpenApi,
    path::{Operation, ParameterIn},
};

use super::error::ApiError;
use crate::model::problems::FieldError;

/// Per method and route template (`/{tenant}/v1/webhooks`), the query parameters it takes.
#[derive(Default)]
pub struct QueryNames {
    routes: HashMap<(Method, String), BTreeSet<String>>,
}

impl QueryNames {
    pub fn from_document(document: &OpenApi) -> QueryNames {
        let mut routes = HashMap::new();
        for (path, item) in &document.paths.paths {
            let shared = item.parameters.iter().flatten();
            let operations: [(Method, &Option<Operation>); 5] = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = shared
                    .clone()
                    .chain(operation.parameters.iter().flatten())
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                routes.insert((method, path.clone()), names);
            }
        }
        QueryNames { routes }
    }

    /// The first parameter of `query` the route does not take, with what it takes.
    /// `None` when every one is known, or the route is not in the document (nothing to
    /// judge by; every route is, see `tests`).
    fn unknown(&self, method: &Method, route: &str, query: &str) -> Option<FieldError> {
        let takes = self.routes.get(&(method.clone(), route.to_owned()))?;
        let (name, _) = url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| !takes.contains(name.as_ref()))?;
        let message = if takes.is_empty() {
            "unknown query parameter: this route takes none".to_owned()
        } else {
            let names: Vec<&str> = takes.iter().map(String::as_str).collect();
            format!(
                "unknown query parameter: this route takes {}",
                names.join(", ")
            )
        };
        Some(FieldError {
            field: name.into_owned(),
            message,
        })
    }
}

/// The middleware (a route layer, so the route is known).
pub async fn refuse_unknown(
    State(names): State<Arc<QueryNames>>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    if let (Some(route), Some(query)) = (&route, request.uri().query())
        && let Some(unknown) = names.unknown(request.method(), route.as_str(), query)
    {
        return ApiError::validation(vec![unknown]).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_document_is_known_and_names_are_judged() {
        let (_, document) = super::super::parts(1 << 20);
        let names = QueryNames::from_document(&document);
        let list = "/{tenant}/v1/webhooks";
        assert!(
            names
                .unknown(&Method::GET, list, "limit=5&iterator=x")
                .is_none()
        );
        let refused = names
            .unknown(&Method::GET, list, "limit=5&colour=red")
            .unwrap();
        assert_eq!(refused.field, "colour");
        assert!(
            refused.message.contains("iterator, limit"),
            "{}",
            refused.message
        );
        let none = names
            .unknown(&Method::POST, "/{tenant}/v1/events", "dry_run=1")
            .unwrap();
        assert_eq!(
            none.message,
            "unknown query parameter: this route takes none"
        );
        // Percent-encoded names are decoded before they are judged.
        assert!(names.unknown(&Method::GET, list, "lim%69t=5").is_none());
    }

    #[test]
    fn query_parameters_are_declared_in_the_query() {
        let (_, document) = super::super::parts(1 << 20);
        let names = QueryNames::from_document(&document);
        let messages = names
            .routes
            .get(&(Method::GET, "/{tenant}/v1/webhooks/{id}/messages".into()))
            .expect("the message listing is in the document");
        for name in [
            "from",
            "to",
            "success",
            "include_payload",
            "include_runs",
            "limit",
            "iterator",
        ] {
            assert!(messages.contains(name), "{name} missing: {messages:?}");
        }
    }
}
