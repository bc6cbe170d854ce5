//! The HTTP routes. Every `/api/...` route also answers under `/api/v1/...`.
//!
//! Each module declares its routes with [`routes!`], which writes both its `configure` function and
//! its `ROUTES` list from one table, so the list of (method, path) that the OpenAPI document is tested
//! against ([`table`]) is the list the router registers.

use actix_web::body::MessageBody;
use std::sync::OnceLock;

use actix_web::dev::{ResourceDef, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::error::ApiError;
use crate::state::AppState;

/// One registered route: its method (`GET`, `POST`, `PUT`) and its path pattern, relative to the
/// scope of its [`Module`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// Declares a module's routes once: `fn configure` registers them, `const ROUTES` lists them.
///
/// ```ignore
/// routes! {
///     pub fn configure, pub const ROUTES;
///     get "/stocks/{skuId}" => get;
/// }
/// ```
#[macro_export]
macro_rules! routes {
    ($vis:vis fn $configure:ident, $cvis:vis const $list:ident; $($method:ident $path:literal => $handler:path;)*) => {
        /// Registers this table's routes.
        $vis fn $configure(cfg: &mut actix_web::web::ServiceConfig) {
            $(cfg.route($path, actix_web::web::$method().to($handler));)*
        }

        /// The routes of this table, in the order they are registered.
        $cvis const $list: &[$crate::routes::Route] = &[$(
            $crate::routes::Route { method: $crate::routes::method_name(stringify!($method)), path: $path },
        )*];
    };
}

/// `get` → `GET`, for [`routes!`].
pub const fn method_name(ident: &'static str) -> &'static str {
    match ident.as_bytes() {
        b"get" => "GET",
        b"post" => "POST",
        b"put" => "PUT",
        b"delete" => "DELETE",
        b"patch" => "PATCH",
        _ => ident,
    }
}

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod docs;
pub mod health;
pub mod notifications;
pub mod orders;
pub mod paging;
pub mod release_events;
pub mod sagas;
pub mod stocks;

/// A group of routes registered together under `prefix`.
pub struct Module {
    pub prefix: &'static str,
    pub configure: fn(&mut web::ServiceConfig),
    pub routes: &'static [Route],
}

/// The prefix of the API routes.
pub const API_PREFIX: &str = "/api";
/// The alias prefix: every API route answers under it too.
pub const API_ALIAS_PREFIX: &str = "/api/v1";

/// The routes outside `/api`.
const TOP: [Module; 4] = [
    Module {
        prefix: "",
        configure: health::configure,
        routes: health::ROUTES,
    },
    Module {
        prefix: "",
        configure: auth::configure_well_known,
        routes: auth::WELL_KNOWN_ROUTES,
    },
    Module {
        prefix: "",
        configure: docs::configure,
        routes: docs::ROUTES,
    },
    Module {
        prefix: crate::dashboard::PREFIX,
        configure: crate::dashboard::configure,
        routes: crate::dashboard::ROUTES,
    },
];

/// The routes under `/api` (and `/api/v1`), in the order they are matched.
const API: [Module; 9] = [
    Module {
        prefix: API_PREFIX,
        configure: docs::configure_api,
        routes: docs::API_ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: auth::configure,
        routes: auth::ROUTES,
    },
    // Before the stock routes, so that `/stocks/release-events` is not read as a SKU.
    Module {
        prefix: API_PREFIX,
        configure: release_events::configure,
        routes: release_events::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: stocks::configure,
        routes: stocks::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: catalog::configure,
        routes: catalog::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: orders::configure,
        routes: orders::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: notifications::configure,
        routes: notifications::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: sagas::configure,
        routes: sagas::ROUTES,
    },
    Module {
        prefix: API_PREFIX,
        configure: admin::configure,
        routes: admin::ROUTES,
    },
];

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for module in &TOP {
        cfg.configure(module.configure);
    }
    cfg.service(web::scope(API_ALIAS_PREFIX).configure(api))
        .service(web::scope(API_PREFIX).configure(api));
}

/// The routes under `/api` (and `/api/v1`).
fn api(cfg: &mut web::ServiceConfig) {
    for module in &API {
        cfg.configure(module.configure);
    }
}

/// Every route the router registers, as (method, full path), without the `/api/v1` aliases.
pub fn table() -> Vec<(&'static str, String)> {
    TOP.iter()
        .chain(API.iter())
        .flat_map(|module| {
            module
                .routes
                .iter()
                .map(move |route| (route.method, format!("{}{}", module.prefix, route.path)))
        })
        .collect()
}

/// Middleware: while the engine has not started (a node waiting for its database), and once the node
/// has begun to shut down, every route but the health routes (`/health/*`, `/actuator/*`) and
/// `/metrics` answers `503` with `Retry-After`.
pub async fn starting_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>();
    let (waiting, draining) = state.map_or((false, false), |state| (!state.started(), state.draining()));
    let path = req.path();
    let health = path.starts_with("/health/") || path.starts_with("/actuator/") || path == "/metrics";
    if (waiting || draining) && !health {
        let refusal = if draining {
            AppState::shutting_down()
        } else {
            AppState::not_started()
        };
        return Ok(req.into_response(refusal.error_response()).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// `405` with `Allow` for a path that a route has with other methods, else `404` as a problem document
/// for any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(no_route(&req))
}

/// What a request that no route takes is answered: `405` with the methods the path has, or `404`.
pub fn no_route(req: &HttpRequest) -> ApiError {
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() {
        ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))
    } else {
        let allow = allowed.join(", ");
        ApiError::MethodNotAllowed(
            format!(
                "{} {} is not a route; this path takes {allow}",
                req.method(),
                req.path()
            ),
            allow,
        )
    }
}

/// The methods the routes have for `path` (under `/api/v1` as under `/api`), in registration order.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    static PATTERNS: OnceLock<Vec<(&'static str, ResourceDef)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        table()
            .into_iter()
            .map(|(method, pattern)| (method, ResourceDef::new(pattern)))
            .collect()
    });
    let canonical = match path.strip_prefix(API_ALIAS_PREFIX) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{API_PREFIX}{rest}"),
        _ => path.to_owned(),
    };
    let mut methods = Vec::new();
    for (method, pattern) in patterns {
        if pattern.is_match(&canonical) && !methods.contains(method) {
            methods.push(*method);
        }
    }
    methods
}
