//! A Gitea API *contract server*: an HTTP server that answers the part of Gitea's REST
//! API claimd uses, driven by Gitea's published Swagger 2.0 document
//! (`../shared/contracts/gitea/swagger-subset.json`, read at test time). Gitea cannot
//! run here, so claimd's Gitea client is tested against this instead, and this refuses
//! (and records as a violation) anything the published API does not define: unknown
//! paths and methods, undeclared query parameters, the deprecated query-string token,
//! request bodies invalid under their definition, unknown body fields. Its own answers
//! are validated against the operation's response schema too.
//!
//! Deliberate choices where the swagger and Gitea's behaviour part ways (see the
//! module's tests in `tests/it/gitea_contract.rs`):
//! - a declared `404` (`#/responses/notFound`, "APINotFound is a not found empty
//!   response") has an empty body; errors (`400`, `401`, `405`, `409`, `422`, `501`,
//!   an unknown path's `404`) carry Gitea's APIError JSON `{"message", "url"}`;
//! - `401`, `409` and `422` may be answered by operations that do not declare them
//!   (Gitea's auth middleware, "already exists" and request binding do so);
//! - fields a definition does not declare are a violation (Gitea would silently ignore
//!   them: a typo would go unnoticed), but the request is still served.

use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use warp::Filter;

/// The login of the user the token belongs to.
const LOGIN: &str = "claimd-bot";
/// Gitea's default and maximum page sizes (`[api] DEFAULT_PAGING_NUM`, `MAX_RESPONSE_ITEMS`).
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 50;
/// The commit status states the `CommitStatusState` definition lists.
const STATES: [&str; 4] = ["pending", "success", "error", "failure"];

pub struct GiteaApi {
    /// `http://127.0.0.1:PORT`, no trailing slash; the API is under `/api/v1`.
    pub url: String,
    /// The token `Authorization: token <token>` must carry.
    pub token: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<std::sync::mpsc::Receiver<()>>,
}

impl GiteaApi {
    /// `None` (test skipped) when the contracts folder is absent.
    pub fn start(test: &str) -> Option<GiteaApi> {
        let dir = crate::support::contracts::dir_or_skip("gitea", test)?;
        let path = dir.join("swagger-subset.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let swagger: Json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
        let contract = Contract::load(&swagger);

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let token = random_token();
        let shared = Arc::new(Shared {
            contract,
            url: url.clone(),
            token: token.clone(),
            state: Mutex::new(State::new()),
        });

        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = std::sync::mpsc::channel::<()>();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("gitea-contract".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let route = warp::method()
                        .and(warp::path::full())
                        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
                        .and(warp::header::headers_cloned())
                        .and(warp::body::bytes())
                        .map(
                            move |method: warp::http::Method,
                                  path: warp::path::FullPath,
                                  query: String,
                                  headers: warp::http::HeaderMap,
                                  body: bytes::Bytes| {
                                let request = Request {
                                    method: method.as_str().to_string(),
                                    path: path.as_str().to_string(),
                                    query: parse_query(&query),
                                    authorization: header(&headers, "authorization"),
                                    content_type: header(&headers, "content-type"),
                                    body: body.to_vec(),
                                };
                                s.handle(&request).into_response()
                            },
                        );
                    warp::serve(route)
                        .incoming(listener)
                        .graceful(async {
                            let _ = shutdown_rx.await;
                        })
                        .run()
                        .await;
                });
                let _ = stopped_tx.send(());
            })
            .expect("spawn the contract server thread");
        Some(GiteaApi {
            url,
            token,
            shared,
            shutdown: Some(shutdown),
            stopped: Some(stopped),
        })
    }

    /// Adds an organization / user `owner` (if missing) and repository `owner/name`
    /// (default branch `main`) to the state.
    pub fn add_repo(&self, owner: &str, name: &str) {
        let mut st = self.shared.lock();
        st.ensure_owner(owner);
        st.add_repo(owner, name, "main", "", false);
    }

    /// Every request received so far: (METHOD, path without the query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.lock().requests.clone()
    }

    /// The hooks of a repository as the API would return them.
    pub fn hooks(&self, owner: &str, repo: &str) -> Vec<Json> {
        let st = self.shared.lock();
        st.hooks
            .get(&key(owner, repo))
            .map(|hooks| hooks.iter().map(Hook::to_json).collect())
            .unwrap_or_default()
    }

    /// The secret of hook `id` as last set by POST/PATCH (`config.secret`; Gitea does
    /// not return it).
    pub fn hook_secret(&self, owner: &str, repo: &str, id: i64) -> Option<String> {
        let st = self.shared.lock();
        st.hooks
            .get(&key(owner, repo))?
            .iter()
            .find(|h| h.id == id)?
            .config
            .get("secret")
            .cloned()
    }

    /// Statuses posted for a commit, oldest first.
    pub fn statuses(&self, owner: &str, repo: &str, sha: &str) -> Vec<Json> {
        let st = self.shared.lock();
        st.statuses_of(owner, repo, sha)
            .iter()
            .map(|s| s.to_json(&self.shared.url))
            .collect()
    }

    /// The latest status per context: context -> (state, description, target_url).
    pub fn latest_statuses(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> BTreeMap<String, (String, String, String)> {
        let st = self.shared.lock();
        st.statuses_of(owner, repo, sha)
            .iter()
            .map(|s| {
                (
                    s.context.clone(),
                    (s.state.clone(), s.description.clone(), s.target_url.clone()),
                )
            })
            .collect()
    }

    /// Every contract violation seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Panics listing the violations, if any.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "{} Gitea API contract violation(s):\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }
}

impl Drop for GiteaApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Graceful shutdown waits for open connections; a client still holding an idle
        // keep-alive connection must not hang the test, so wait a bounded time only.
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

// ---------------------------------------------------------------------------------------
// The contract: the swagger's operations, with compiled schemas.

enum Seg {
    Lit(String),
    Param(String),
    /// `{filepath}`: one or more segments.
    Rest(String),
}

struct PathSpec {
    template: String,
    segs: Vec<Seg>,
    ops: Vec<Op>,
}

struct Op {
    method: String,
    id: String,
    query: Vec<Json>,
    body: Option<BodySpec>,
    responses: BTreeMap<u16, Option<Arc<jsonschema::Validator>>>,
}

struct BodySpec {
    /// The definition name (`CreateHookOption`), or the inline schema as text.
    name: String,
    /// The schema as published.
    lax: Arc<jsonschema::Validator>,
    /// The same, with `additionalProperties: false` wherever properties are listed.
    strict: Arc<jsonschema::Validator>,
}

struct Contract {
    base_path: String,
    paths: Vec<PathSpec>,
}

impl Contract {
    fn load(swagger: &Json) -> Contract {
        let base_path = swagger["basePath"]
            .as_str()
            .expect("swagger basePath")
            .trim_end_matches('/')
            .to_string();
        let definitions = swagger["definitions"].clone();
        let mut strict_definitions = definitions.clone();
        strictify(&mut strict_definitions);
        let mut cache: BTreeMap<String, Arc<jsonschema::Validator>> = BTreeMap::new();
        let mut compile = |schema: &Json, defs: &Json, tag: &str| -> Arc<jsonschema::Validator> {
            let cache_key = format!("{tag}{schema}");
            cache
                .entry(cache_key)
                .or_insert_with(|| Arc::new(compile_schema(schema, defs)))
                .clone()
        };
        let mut paths = Vec::new();
        for (template, item) in swagger["paths"].as_object().expect("swagger paths") {
            let segs = template
                .split('/')
                .skip(1)
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some("filepath") => Seg::Rest("filepath".into()),
                        Some(p) => Seg::Param(p.into()),
                        None => Seg::Lit(s.into()),
                    },
                )
                .collect();
            let mut ops = Vec::new();
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" || method.starts_with("x-") {
                    continue;
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let query = params
                    .iter()
                    .filter(|p| p["in"] == "query")
                    .cloned()
                    .collect();
                let body = params.iter().find(|p| p["in"] == "body").map(|p| {
                    let schema = &p["schema"];
                    let name = schema["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/definitions/"))
                        .map(str::to_string)
                        .unwrap_or_else(|| schema.to_string());
                    BodySpec {
                        name,
                        lax: compile(schema, &definitions, "lax"),
                        strict: compile(schema, &strict_definitions, "strict"),
                    }
                });
                let mut responses = BTreeMap::new();
                for (code, response) in op["responses"].as_object().expect("responses") {
                    let Ok(code) = code.parse::<u16>() else {
                        continue; // "default"
                    };
                    let response = match response["$ref"].as_str() {
                        Some(r) => {
                            let name = r.strip_prefix("#/responses/").expect("#/responses/ ref");
                            &swagger["responses"][name]
                        }
                        None => response,
                    };
                    let schema = response
                        .get("schema")
                        .map(|s| compile(s, &definitions, "lax"));
                    responses.insert(code, schema);
                }
                ops.push(Op {
                    method: method.to_uppercase(),
                    id: op["operationId"].as_str().unwrap_or_default().to_string(),
                    query,
                    body,
                    responses,
                });
            }
            paths.push(PathSpec {
                template: template.clone(),
                segs,
                ops,
            });
        }
        Contract { base_path, paths }
    }

    /// The best-matching path template (most literal segments) and its parameters.
    fn route(&self, rest: &str) -> Option<(&PathSpec, BTreeMap<String, String>)> {
        let parts: Vec<&str> = rest.split('/').skip(1).collect();
        let mut best: Option<(usize, &PathSpec, BTreeMap<String, String>)> = None;
        'paths: for spec in &self.paths {
            let mut params = BTreeMap::new();
            let mut literals = 0;
            let mut i = 0;
            for seg in &spec.segs {
                match seg {
                    Seg::Lit(l) => {
                        if parts.get(i) != Some(&l.as_str()) {
                            continue 'paths;
                        }
                        literals += 1;
                    }
                    Seg::Param(p) => match parts.get(i) {
                        Some(v) if !v.is_empty() => {
                            params.insert(p.clone(), percent_decode(v, false));
                        }
                        _ => continue 'paths,
                    },
                    Seg::Rest(p) => {
                        let rest = &parts[i.min(parts.len())..];
                        if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
                            continue 'paths;
                        }
                        let joined: Vec<String> =
                            rest.iter().map(|s| percent_decode(s, false)).collect();
                        params.insert(p.clone(), joined.join("/"));
                        i = parts.len();
                        continue;
                    }
                }
                i += 1;
            }
            if i != parts.len() {
                continue;
            }
            if best.as_ref().is_none_or(|(n, _, _)| literals > *n) {
                best = Some((literals, spec, params));
            }
        }
        best.map(|(_, spec, params)| (spec, params))
    }
}

fn compile_schema(schema: &Json, definitions: &Json) -> jsonschema::Validator {
    let root = json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "allOf": [schema],
        "definitions": definitions,
    });
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&root)
        .unwrap_or_else(|e| panic!("compiling the swagger schema {schema}: {e}"))
}

/// `additionalProperties: false` on every schema that lists `properties` and says
/// nothing about others.
fn strictify(v: &mut Json) {
    match v {
        Json::Object(map) => {
            if map.get("properties").is_some_and(Json::is_object)
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Json::Bool(false));
            }
            map.values_mut().for_each(strictify);
        }
        Json::Array(items) => items.iter_mut().for_each(strictify),
        _ => {}
    }
}

fn schema_errors(validator: &jsonschema::Validator, value: &Json) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Requests and replies.

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

struct Reply {
    status: u16,
    body: Option<Json>,
    total_count: Option<usize>,
    allow: Option<String>,
}

impl Reply {
    fn json(status: u16, body: Json) -> Reply {
        Reply {
            status,
            body: Some(body),
            total_count: None,
            allow: None,
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            total_count: None,
            allow: None,
        }
    }

    fn into_response(self) -> warp::http::Response<String> {
        let mut builder = warp::http::Response::builder().status(self.status);
        if let Some(n) = self.total_count {
            builder = builder.header("x-total-count", n.to_string());
        }
        if let Some(allow) = &self.allow {
            builder = builder.header("allow", allow);
        }
        match self.body {
            Some(body) => builder
                .header("content-type", "application/json;charset=utf-8")
                .body(body.to_string()),
            None => builder.body(String::new()),
        }
        .expect("a valid response")
    }
}

fn header(headers: &warp::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let hex = |i: usize| bytes.get(i).and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) if plus_is_space => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Shared {
    contract: Contract,
    url: String,
    token: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, status: u16, message: impl Into<String>) -> Reply {
        Reply::json(
            status,
            json!({"message": message.into(), "url": format!("{}/api/swagger", self.url)}),
        )
    }

    fn handle(&self, req: &Request) -> Reply {
        let mut st = self.lock();
        st.requests.push((req.method.clone(), req.path.clone()));
        let what = format!("{} {}", req.method, req.path);

        // Path and method.
        let rest = match req.path.strip_prefix(&self.contract.base_path) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => {
                st.violation(format!(
                    "unknown path: {what} (not under the API's basePath {})",
                    self.contract.base_path
                ));
                return self.error(404, "Not Found");
            }
        };
        let Some((spec, params)) = self.contract.route(rest) else {
            st.violation(format!("unknown path: {what} (not in the Gitea API)"));
            return self.error(404, "Not Found");
        };
        let Some(op) = spec.ops.iter().find(|o| o.method == req.method) else {
            let allowed: Vec<&str> = spec.ops.iter().map(|o| o.method.as_str()).collect();
            st.violation(format!(
                "method not allowed: {what} (the Gitea API defines {} for {})",
                allowed.join(", "),
                spec.template
            ));
            let mut reply = self.error(405, "Method Not Allowed");
            reply.allow = Some(allowed.join(", "));
            return reply;
        };

        // Query parameters.
        let mut query_token = None;
        for (k, v) in &req.query {
            if k == "token" || k == "access_token" {
                st.violation(format!(
                    "token in the query string ({k}=, deprecated for removal in Gitea 1.23; \
                     use the Authorization header): {what}"
                ));
                query_token = Some(v.clone());
                continue;
            }
            let Some(param) = op.query.iter().find(|p| p["name"] == k.as_str()) else {
                st.violation(format!(
                    "undeclared query parameter `{k}` for {what} ({})",
                    op.id
                ));
                continue;
            };
            if let Some(problem) = check_query_value(param, v) {
                st.violation(format!("query parameter `{k}={v}` for {what}: {problem}"));
            }
        }

        // Authentication.
        let header_token = req.authorization.as_deref().and_then(|a| {
            a.strip_prefix("token ").map(str::to_string).or_else(|| {
                let (scheme, t) = a.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| t.to_string())
            })
        });
        match header_token.or(query_token) {
            Some(t) if t.trim() == self.token => {}
            Some(_) => return self.error(401, "invalid token"),
            None => {
                return self.error(401, "token is required (Authorization: token <token>)");
            }
        }

        // Request body.
        let mut body = Json::Null;
        if let Some(spec) = &op.body {
            let is_json = req.content_type.as_deref().is_some_and(|c| {
                c.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
            if req.body.is_empty() {
                st.violation(format!(
                    "invalid body for {what} ({}, {}): no JSON body",
                    op.id, spec.name
                ));
                return self.error(422, "a JSON body is required");
            }
            if !is_json {
                st.violation(format!(
                    "invalid body for {what} ({}, {}): Content-Type is {:?}, not application/json \
                     (Gitea binds other bodies as forms)",
                    op.id, spec.name, req.content_type
                ));
                return self.error(422, "Content-Type must be application/json");
            }
            body = match serde_json::from_slice(&req.body) {
                Ok(body) => body,
                Err(e) => {
                    st.violation(format!(
                        "invalid body for {what} ({}, {}): not JSON: {e}",
                        op.id, spec.name
                    ));
                    return self.error(422, format!("invalid JSON: {e}"));
                }
            };
            let errors = schema_errors(&spec.lax, &body);
            if !errors.is_empty() {
                let errors = errors.join("; ");
                st.violation(format!(
                    "invalid body for {what} ({}, {}): {errors}",
                    op.id, spec.name
                ));
                return self.error(422, errors);
            }
            let unknown = schema_errors(&spec.strict, &body);
            if !unknown.is_empty() {
                st.violation(format!(
                    "fields not in the definition in the body for {what} ({}, {}; Gitea ignores \
                     them): {}",
                    op.id,
                    spec.name,
                    unknown.join("; ")
                ));
            }
        } else if !req.body.is_empty() {
            st.violation(format!(
                "a body sent to {what} ({}), which takes none",
                op.id
            ));
        }

        let ctx = Ctx {
            shared: self,
            what: &what,
            params: &params,
            query: &req.query,
            body: &body,
        };
        let reply = match op.id.as_str() {
            "getVersion" => Reply::json(200, json!({"version": "1.22.0"})),
            "userGetCurrent" => {
                let user = st.owners[&LOGIN.to_lowercase()].user_json(&self.url);
                Reply::json(200, user)
            }
            "orgGet" => ctx.org_get(&st),
            "orgCreate" => ctx.org_create(&mut st),
            "repoGet" => ctx.repo_get(&st),
            "createOrgRepo" => ctx.org_repo_create(&mut st),
            "repoListHooks" => ctx.hooks_list(&st),
            "repoCreateHook" => ctx.hook_create(&mut st),
            "repoGetHook" => ctx.hook_get(&st),
            "repoEditHook" => ctx.hook_edit(&mut st),
            "repoDeleteHook" => ctx.hook_delete(&mut st),
            "repoCreateStatus" => ctx.status_create(&mut st),
            "repoListStatuses" => ctx.statuses_list(&st),
            "repoGetCombinedStatusByRef" => ctx.combined_status(&st),
            _ => {
                st.violation(format!("not implemented by the contract server: {what}"));
                self.error(
                    501,
                    format!("not implemented by the contract server: {what}"),
                )
            }
        };

        // The server's own answer must follow the contract too.
        match op.responses.get(&reply.status) {
            None if ![401, 409, 422, 501].contains(&reply.status) => {
                st.violation(format!(
                    "contract server bug: {what} ({}) answered {}, which the operation does not \
                     declare",
                    op.id, reply.status
                ));
            }
            Some(Some(schema)) => {
                let errors = schema_errors(schema, reply.body.as_ref().unwrap_or(&Json::Null));
                if !errors.is_empty() {
                    st.violation(format!(
                        "contract server bug: the {} answer to {what} ({}) is invalid: {}",
                        reply.status,
                        op.id,
                        errors.join("; ")
                    ));
                }
            }
            _ => {}
        }
        reply
    }
}

fn check_query_value(param: &Json, value: &str) -> Option<String> {
    if let Some(allowed) = param["enum"].as_array() {
        if !allowed.iter().any(|a| a == value) {
            return Some(format!("not one of {}", Json::Array(allowed.clone())));
        }
    }
    match param["type"].as_str() {
        Some("integer") if value.parse::<i64>().is_err() => Some("not an integer".into()),
        Some("boolean") if value != "true" && value != "false" => Some("not a boolean".into()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// State.

struct Owner {
    id: i64,
    name: String,
    is_org: bool,
    full_name: String,
    description: String,
    website: String,
    location: String,
    visibility: String,
    created: String,
}

impl Owner {
    fn avatar(&self, url: &str) -> String {
        format!("{url}/avatars/{}", self.id)
    }

    fn user_json(&self, url: &str) -> Json {
        json!({
            "id": self.id,
            "login": self.name,
            "login_name": "",
            "source_id": 0,
            "full_name": self.full_name,
            "email": format!("{}@noreply.localhost", self.name.to_lowercase()),
            "avatar_url": self.avatar(url),
            "language": "",
            "is_admin": !self.is_org,
            "last_login": self.created,
            "created": self.created,
            "restricted": false,
            "active": true,
            "prohibit_login": false,
            "location": self.location,
            "website": self.website,
            "description": self.description,
            "visibility": self.visibility,
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
        })
    }

    fn org_json(&self, url: &str) -> Json {
        json!({
            "id": self.id,
            "name": self.name,
            "full_name": self.full_name,
            "email": "",
            "avatar_url": self.avatar(url),
            "description": self.description,
            "website": self.website,
            "location": self.location,
            "visibility": self.visibility,
            "repo_admin_change_team_access": false,
            "username": self.name,
        })
    }
}

struct Repo {
    id: i64,
    owner: String,
    name: String,
    description: String,
    default_branch: String,
    private: bool,
    created: String,
}

struct Hook {
    id: i64,
    kind: String,
    config: BTreeMap<String, String>,
    events: Vec<String>,
    active: bool,
    branch_filter: String,
    created: String,
    updated: String,
}

impl Hook {
    fn to_json(&self) -> Json {
        let config: Map<String, Json> = self
            .config
            .iter()
            .filter(|(k, _)| k.as_str() != "secret")
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        json!({
            "id": self.id,
            "type": self.kind,
            "branch_filter": self.branch_filter,
            "config": config,
            "events": self.events,
            "active": self.active,
            "created_at": self.created,
            "updated_at": self.updated,
        })
    }
}

struct Status {
    id: i64,
    owner: String,
    repo: String,
    sha: String,
    state: String,
    target_url: String,
    description: String,
    context: String,
    creator: Json,
    created: String,
}

impl Status {
    fn to_json(&self, url: &str) -> Json {
        json!({
            "id": self.id,
            "status": self.state,
            "target_url": self.target_url,
            "description": self.description,
            "url": format!("{url}/api/v1/repos/{}/{}/statuses/{}", self.owner, self.repo, self.sha),
            "context": self.context,
            "creator": self.creator,
            "created_at": self.created,
            "updated_at": self.created,
        })
    }
}

type RepoKey = (String, String);

fn key(owner: &str, repo: &str) -> RepoKey {
    (owner.to_lowercase(), repo.to_lowercase())
}

struct State {
    next_id: i64,
    next_hook_id: i64,
    next_status_id: i64,
    owners: BTreeMap<String, Owner>,
    repos: BTreeMap<RepoKey, Repo>,
    hooks: BTreeMap<RepoKey, Vec<Hook>>,
    statuses: BTreeMap<(String, String, String), Vec<Status>>,
    requests: Vec<(String, String)>,
    violations: Vec<String>,
}

impl State {
    fn new() -> State {
        let mut st = State {
            next_id: 1,
            next_hook_id: 1,
            next_status_id: 1,
            owners: BTreeMap::new(),
            repos: BTreeMap::new(),
            hooks: BTreeMap::new(),
            statuses: BTreeMap::new(),
            requests: Vec::new(),
            violations: Vec::new(),
        };
        st.add_owner(LOGIN, false, "");
        st
    }

    fn violation(&mut self, v: String) {
        self.violations.push(v);
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn add_owner(&mut self, name: &str, is_org: bool, full_name: &str) -> &Owner {
        let id = self.id();
        self.owners.entry(name.to_lowercase()).or_insert(Owner {
            id,
            name: name.to_string(),
            is_org,
            full_name: full_name.to_string(),
            description: String::new(),
            website: String::new(),
            location: String::new(),
            visibility: "public".into(),
            created: now_rfc3339(),
        })
    }

    fn ensure_owner(&mut self, name: &str) {
        if !self.owners.contains_key(&name.to_lowercase()) {
            self.add_owner(name, true, "");
        }
    }

    fn add_repo(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        description: &str,
        private: bool,
    ) {
        let owner = self.owners[&owner.to_lowercase()].name.clone();
        let id = self.id();
        self.repos.entry(key(&owner, name)).or_insert(Repo {
            id,
            owner,
            name: name.to_string(),
            description: description.to_string(),
            default_branch: branch.to_string(),
            private,
            created: now_rfc3339(),
        });
    }

    fn repo_json(&self, repo: &Repo, url: &str) -> Json {
        let owner = &self.owners[&repo.owner.to_lowercase()];
        let full = format!("{}/{}", repo.owner, repo.name);
        let host = url.trim_start_matches("http://");
        let first = json!({
            "id": repo.id,
            "owner": owner.user_json(url),
            "name": repo.name,
            "full_name": full,
            "description": repo.description,
            "empty": false,
            "private": repo.private,
            "fork": false,
            "template": false,
            "mirror": false,
            "size": 0,
            "language": "",
            "languages_url": format!("{url}/api/v1/repos/{full}/languages"),
            "html_url": format!("{url}/{full}"),
            "url": format!("{url}/api/v1/repos/{full}"),
            "link": "",
            "ssh_url": format!("git@{host}:{full}.git"),
            "clone_url": format!("{url}/{full}.git"),
            "original_url": "",
            "website": "",
            "stars_count": 0,
            "forks_count": 0,
            "watchers_count": 0,
            "open_issues_count": 0,
            "open_pr_counter": 0,
            "release_counter": 0,
            "default_branch": repo.default_branch,
            "archived": false,
        });
        let more = json!({
            "created_at": repo.created,
            "updated_at": repo.created,
            "archived_at": "1970-01-01T00:00:00Z",
            "permissions": {"admin": true, "push": true, "pull": true},
            "has_issues": true,
            "internal_tracker": {
                "enable_time_tracker": true,
                "allow_only_contributors_to_track_time": true,
                "enable_issue_dependencies": true,
            },
            "has_wiki": true,
            "has_pull_requests": true,
            "has_projects": true,
            "has_releases": true,
            "has_packages": true,
            "has_actions": true,
            "ignore_whitespace_conflicts": false,
            "allow_merge_commits": true,
            "allow_rebase": true,
            "allow_rebase_explicit": true,
            "allow_squash_merge": true,
            "allow_fast_forward_only_merge": false,
            "allow_rebase_update": true,
            "default_delete_branch_after_merge": false,
            "default_merge_style": "merge",
            "default_allow_maintainer_edit": false,
            "avatar_url": "",
            "internal": false,
            "mirror_interval": "",
            "object_format_name": "sha1",
            "mirror_updated": "1970-01-01T00:00:00Z",
        });
        let mut repo_json = first;
        if let (Some(a), Json::Object(b)) = (repo_json.as_object_mut(), more) {
            a.extend(b);
        }
        repo_json
    }

    fn statuses_of(&self, owner: &str, repo: &str, sha: &str) -> &[Status] {
        let (o, r) = key(owner, repo);
        self.statuses
            .get(&(o, r, sha.to_lowercase()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// The operations.

struct Ctx<'a> {
    shared: &'a Shared,
    what: &'a str,
    params: &'a BTreeMap<String, String>,
    query: &'a [(String, String)],
    body: &'a Json,
}

impl Ctx<'_> {
    fn param(&self, name: &str) -> &str {
        self.params
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Json::as_str)
    }

    fn url(&self) -> &str {
        &self.shared.url
    }

    /// The repository named by the `{owner}`/`{repo}` path parameters.
    fn repo<'s>(&self, st: &'s State) -> Option<&'s Repo> {
        st.repos.get(&key(self.param("owner"), self.param("repo")))
    }

    fn invalid(&self, st: &mut State, status: u16, message: String) -> Reply {
        st.violation(format!("{message}: {}", self.what));
        self.shared.error(status, message)
    }

    /// `page`/`limit` as Gitea applies them; sets `X-Total-Count`.
    fn page(&self, items: Vec<Json>) -> Reply {
        let total = items.len();
        let limit = self
            .query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(DEFAULT_LIMIT)
            .min(MAX_LIMIT);
        let page = self
            .query("page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let items: Vec<Json> = items
            .into_iter()
            .skip((page - 1) * limit)
            .take(limit)
            .collect();
        let mut reply = Reply::json(200, Json::Array(items));
        reply.total_count = Some(total);
        reply
    }

    fn org_get(&self, st: &State) -> Reply {
        match st.owners.get(&self.param("org").to_lowercase()) {
            Some(o) if o.is_org => Reply::json(200, o.org_json(self.url())),
            _ => Reply::empty(404),
        }
    }

    fn org_create(&self, st: &mut State) -> Reply {
        let name = self.str("username").unwrap_or_default();
        if name.is_empty() {
            return self.invalid(st, 422, "organization username is empty".into());
        }
        if st.owners.contains_key(&name.to_lowercase()) {
            return self
                .shared
                .error(422, format!("user already exists [name: {name}]"));
        }
        let full_name = self.str("full_name").unwrap_or_default().to_string();
        let id = st.id();
        let owner = Owner {
            id,
            name: name.to_string(),
            is_org: true,
            full_name,
            description: self.str("description").unwrap_or_default().into(),
            website: self.str("website").unwrap_or_default().into(),
            location: self.str("location").unwrap_or_default().into(),
            visibility: self.str("visibility").unwrap_or("public").into(),
            created: now_rfc3339(),
        };
        let json = owner.org_json(self.url());
        st.owners.insert(name.to_lowercase(), owner);
        Reply::json(201, json)
    }

    fn repo_get(&self, st: &State) -> Reply {
        match self.repo(st) {
            Some(repo) => Reply::json(200, st.repo_json(repo, self.url())),
            None => Reply::empty(404),
        }
    }

    fn org_repo_create(&self, st: &mut State) -> Reply {
        let org = self.param("org");
        let Some(owner) = st.owners.get(&org.to_lowercase()).filter(|o| o.is_org) else {
            return Reply::empty(404);
        };
        let owner = owner.name.clone();
        let name = self.str("name").unwrap_or_default().to_string();
        if st.repos.contains_key(&key(&owner, &name)) {
            return self.shared.error(
                409,
                "The repository with the same name already exists.".to_string(),
            );
        }
        let branch = self
            .str("default_branch")
            .filter(|b| !b.is_empty())
            .unwrap_or("main")
            .to_string();
        let description = self.str("description").unwrap_or_default().to_string();
        let private = self.body["private"].as_bool().unwrap_or(false);
        st.add_repo(&owner, &name, &branch, &description, private);
        let repo = &st.repos[&key(&owner, &name)];
        Reply::json(201, st.repo_json(repo, self.url()))
    }

    fn hooks_list(&self, st: &State) -> Reply {
        if self.repo(st).is_none() {
            return Reply::empty(404);
        }
        let hooks = st
            .hooks
            .get(&key(self.param("owner"), self.param("repo")))
            .map(|hooks| hooks.iter().map(Hook::to_json).collect())
            .unwrap_or_default();
        self.page(hooks)
    }

    /// What Gitea's `checkCreateHookOption` / `editHook` refuse in a config.
    fn check_config(&self, config: &Map<String, Json>, creating: bool) -> Option<String> {
        let get = |k: &str| config.get(k).and_then(Json::as_str);
        if creating {
            for required in ["content_type", "url"] {
                if get(required).is_none() {
                    return Some(format!(
                        "invalid hook options: config.{required} is required \
                         (CreateHookOptionConfig: required are \"content_type\" and \"url\")"
                    ));
                }
            }
        }
        if let Some(ct) = get("content_type") {
            if ct != "json" && ct != "form" {
                return Some(format!(
                    "invalid hook options: config.content_type {ct:?} is neither \"json\" nor \"form\""
                ));
            }
        }
        if let Some(url) = get("url") {
            let host = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                return Some(format!(
                    "invalid hook options: config.url {url:?} is not an http(s) URL"
                ));
            }
        }
        None
    }

    fn hook_create(&self, st: &mut State) -> Reply {
        if self.repo(st).is_none() {
            return Reply::empty(404);
        }
        let config = self.body["config"].as_object().cloned().unwrap_or_default();
        if let Some(problem) = self.check_config(&config, true) {
            return self.invalid(st, 422, problem);
        }
        let mut events: Vec<String> = self.body["events"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter_map(|e| e.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if events.is_empty() {
            events = vec!["push".into()];
        }
        let now = now_rfc3339();
        let hook = Hook {
            id: st.next_hook_id,
            kind: self.str("type").unwrap_or_default().to_string(),
            config: config
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
            events,
            active: self.body["active"].as_bool().unwrap_or(false),
            branch_filter: self.str("branch_filter").unwrap_or_default().to_string(),
            created: now.clone(),
            updated: now,
        };
        st.next_hook_id += 1;
        let json = hook.to_json();
        st.hooks
            .entry(key(self.param("owner"), self.param("repo")))
            .or_default()
            .push(hook);
        Reply::json(201, json)
    }

    /// The index of hook `{id}` of the repository, if both exist.
    fn hook_index(&self, st: &State) -> Option<usize> {
        self.repo(st)?;
        let id = self.param("id").parse::<i64>().ok()?;
        st.hooks
            .get(&key(self.param("owner"), self.param("repo")))?
            .iter()
            .position(|h| h.id == id)
    }

    fn hooks_mut<'s>(&self, st: &'s mut State) -> &'s mut Vec<Hook> {
        st.hooks
            .entry(key(self.param("owner"), self.param("repo")))
            .or_default()
    }

    fn hook_get(&self, st: &State) -> Reply {
        match self.hook_index(st) {
            Some(i) => Reply::json(
                200,
                st.hooks[&key(self.param("owner"), self.param("repo"))][i].to_json(),
            ),
            None => Reply::empty(404),
        }
    }

    fn hook_edit(&self, st: &mut State) -> Reply {
        let Some(i) = self.hook_index(st) else {
            return Reply::empty(404);
        };
        let config = self.body["config"].as_object().cloned().unwrap_or_default();
        if let Some(problem) = self.check_config(&config, false) {
            return self.invalid(st, 422, problem);
        }
        let body = self.body;
        let hook = &mut self.hooks_mut(st)[i];
        for (k, v) in &config {
            if let Some(v) = v.as_str() {
                hook.config.insert(k.clone(), v.to_string());
            }
        }
        if let Some(events) = body["events"].as_array() {
            hook.events = events
                .iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect();
        }
        if let Some(active) = body["active"].as_bool() {
            hook.active = active;
        }
        if let Some(filter) = body["branch_filter"].as_str() {
            hook.branch_filter = filter.to_string();
        }
        hook.updated = now_rfc3339();
        Reply::json(200, hook.to_json())
    }

    fn hook_delete(&self, st: &mut State) -> Reply {
        let Some(i) = self.hook_index(st) else {
            return Reply::empty(404);
        };
        self.hooks_mut(st).remove(i);
        Reply::empty(204)
    }

    fn status_create(&self, st: &mut State) -> Reply {
        let Some(repo) = self.repo(st) else {
            return Reply::empty(404);
        };
        let (owner, name) = (repo.owner.clone(), repo.name.clone());
        let sha = self.param("sha").to_lowercase();
        if !(sha.len() == 40 || sha.len() == 64) || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.invalid(
                st,
                400,
                format!("the contract server takes statuses for full commit ids only, not {sha:?}"),
            );
        }
        let state = self.str("state").unwrap_or_default();
        if !STATES.contains(&state) {
            return self.invalid(
                st,
                422,
                format!(
                    "invalid commit status state {state:?} (CommitStatusState is one of {})",
                    STATES.join(", ")
                ),
            );
        }
        let creator = st.owners[&LOGIN.to_lowercase()].user_json(self.url());
        let status = Status {
            id: st.next_status_id,
            owner: owner.clone(),
            repo: name.clone(),
            sha: sha.clone(),
            state: state.to_string(),
            target_url: self.str("target_url").unwrap_or_default().to_string(),
            description: self.str("description").unwrap_or_default().to_string(),
            context: self.str("context").unwrap_or_default().to_string(),
            creator,
            created: now_rfc3339(),
        };
        st.next_status_id += 1;
        let json = status.to_json(self.url());
        let (o, r) = key(&owner, &name);
        st.statuses.entry((o, r, sha)).or_default().push(status);
        Reply::json(201, json)
    }

    fn statuses_list(&self, st: &State) -> Reply {
        if self.repo(st).is_none() {
            return Reply::empty(404);
        }
        let statuses = st.statuses_of(self.param("owner"), self.param("repo"), self.param("sha"));
        let mut list: Vec<&Status> = statuses
            .iter()
            .filter(|s| self.query("state").is_none_or(|want| s.state == want))
            .collect();
        match self.query("sort") {
            Some("oldest") | Some("leastupdate") | Some("leastindex") => {}
            _ => list.reverse(),
        }
        self.page(list.iter().map(|s| s.to_json(self.url())).collect())
    }

    fn combined_status(&self, st: &State) -> Reply {
        let Some(repo) = self.repo(st) else {
            return Reply::empty(404);
        };
        let reference = self.param("ref");
        let mut latest: BTreeMap<&str, &Status> = BTreeMap::new();
        for s in st.statuses_of(&repo.owner, &repo.name, reference) {
            latest.insert(&s.context, s);
        }
        let has = |state: &str| latest.values().any(|s| s.state == state);
        let state = if has("failure") {
            "failure"
        } else if has("error") {
            "error"
        } else if has("pending") || latest.is_empty() {
            "pending"
        } else {
            "success"
        };
        let full = format!("{}/api/v1/repos/{}/{}", self.url(), repo.owner, repo.name);
        let statuses: Vec<Json> = latest.values().map(|s| s.to_json(self.url())).collect();
        Reply::json(
            200,
            json!({
                "state": state,
                "sha": reference,
                "total_count": statuses.len(),
                "statuses": statuses,
                "repository": st.repo_json(repo, self.url()),
                "commit_url": format!("{full}/commits/{reference}"),
                "url": format!("{full}/commits/{reference}/status"),
            }),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers.

fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = RandomState::new().hash_one((nanos, std::process::id()));
    let b = RandomState::new().hash_one((a, nanos));
    format!("{a:016x}{b:016x}")
}

/// Now as RFC 3339 (UTC, seconds).
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    claimd::argocd::rfc3339(secs)
}
