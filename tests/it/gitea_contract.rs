//! The Gitea API contract server (`support::gitea_api`) itself: it serves what Gitea's
//! published swagger defines, with answers valid under it, and refuses (records as a
//! violation) what the swagger does not define. Raw HTTP/1.1 over `std::net`, so the
//! checks do not depend on any client library.

use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::contracts;
use crate::support::gitea_api::GiteaApi;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One request, `Connection: close`. `auth`: the whole `Authorization` header value.
fn call(
    api: &GiteaApi,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&Json>,
) -> Response {
    let addr = api.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to the contract server");
    let body = body.map(Json::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "unexpected chunked response"
    );
    Response {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// With the right token.
fn authed(api: &GiteaApi, method: &str, path: &str, body: Option<&Json>) -> Response {
    call(
        api,
        method,
        path,
        Some(&format!("token {}", api.token)),
        body,
    )
}

/// A validator for `#/responses/<name>`'s schema, compiled here independently of the
/// server.
fn response_schema(name: &str) -> jsonschema::Validator {
    let dir = contracts::dir("gitea").expect("the server started, so the folder exists");
    let swagger: Json =
        serde_json::from_slice(&std::fs::read(dir.join("swagger-subset.json")).expect("read"))
            .expect("swagger JSON");
    let root = json!({
        "allOf": [swagger["responses"][name]["schema"]],
        "definitions": swagger["definitions"],
    });
    jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&root)
        .expect("compile")
}

fn assert_valid(name: &str, value: &Json) {
    let schema = response_schema(name);
    let errors: Vec<String> = schema.iter_errors(value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "not a valid {name}: {errors:?}\n{value:#}"
    );
}

fn assert_violation(api: &GiteaApi, needle: &str) {
    let violations = api.violations();
    assert!(
        violations.iter().any(|v| v.contains(needle)),
        "no violation containing {needle:?} in {violations:#?}"
    );
}

fn hook_body() -> Json {
    json!({
        "type": "gitea",
        "config": {
            "url": "http://127.0.0.1:9/hooks/gitea",
            "content_type": "json",
            "secret": "a-webhook-secret",
        },
        "events": ["push"],
        "active": true,
        "branch_filter": "main",
    })
}

#[test]
fn hooks_are_created_listed_edited_and_deleted_within_the_contract() {
    let Some(api) = GiteaApi::start("gitea_contract_hooks") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let hooks = "/api/v1/repos/platform/voltran/hooks";

    let created = authed(&api, "POST", hooks, Some(&hook_body()));
    assert_eq!(created.status, 201, "{}", created.body);
    let hook = created.json();
    assert_valid("Hook", &hook);
    assert_eq!(hook["id"], 1);
    assert_eq!(hook["config"]["url"], "http://127.0.0.1:9/hooks/gitea");
    assert!(
        hook["config"].get("secret").is_none(),
        "Gitea does not return the secret"
    );
    assert!(hook.get("authorization_header").is_none());
    assert_eq!(api.hooks("platform", "voltran"), vec![hook.clone()]);
    assert_eq!(
        api.hook_secret("platform", "voltran", 1).as_deref(),
        Some("a-webhook-secret")
    );

    let listed = authed(&api, "GET", hooks, None);
    assert_eq!(listed.status, 200);
    assert_valid("HookList", &listed.json());
    assert_eq!(listed.json(), json!([hook]));
    assert!(listed.headers.contains("x-total-count: 1"));
    let paged = authed(&api, "GET", &format!("{hooks}?page=2&limit=10"), None);
    assert_eq!(paged.json(), json!([]));

    let one = authed(&api, "GET", &format!("{hooks}/1"), None);
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), hook);

    let edit =
        json!({"config": {"secret": "rotated"}, "active": false, "events": ["push", "create"]});
    let edited = authed(&api, "PATCH", &format!("{hooks}/1"), Some(&edit));
    assert_eq!(edited.status, 200, "{}", edited.body);
    let edited = edited.json();
    assert_valid("Hook", &edited);
    assert_eq!(edited["active"], false);
    assert_eq!(edited["events"], json!(["push", "create"]));
    assert_eq!(
        edited["config"]["content_type"], "json",
        "config keys are merged"
    );
    assert_eq!(
        api.hook_secret("platform", "voltran", 1).as_deref(),
        Some("rotated")
    );

    let deleted = authed(&api, "DELETE", &format!("{hooks}/1"), None);
    assert_eq!(deleted.status, 204);
    assert!(api.hooks("platform", "voltran").is_empty());
    let gone = authed(&api, "GET", &format!("{hooks}/1"), None);
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.body, "",
        "notFound is an empty response in the swagger"
    );
    let second = authed(&api, "POST", hooks, Some(&hook_body())).json();
    assert_eq!(second["id"], 2, "ids are not reused");

    let missing = authed(&api, "GET", "/api/v1/repos/platform/nope/hooks", None);
    assert_eq!(missing.status, 404);
    let missing = authed(
        &api,
        "POST",
        "/api/v1/repos/nobody/nope/hooks",
        Some(&hook_body()),
    );
    assert_eq!(missing.status, 404);

    assert_eq!(
        api.requests()[..2],
        [
            ("POST".to_string(), hooks.to_string()),
            ("GET".to_string(), hooks.to_string())
        ]
    );
    api.assert_clean();
}

#[test]
fn statuses_are_posted_listed_and_combined_within_the_contract() {
    let Some(api) = GiteaApi::start("gitea_contract_statuses") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let statuses = format!("/api/v1/repos/platform/voltran/statuses/{SHA}");
    let post = |state: &str, context: &str, description: &str| {
        let body = json!({
            "state": state,
            "context": context,
            "description": description,
            "target_url": "http://claimd.example/runs/1",
        });
        let r = authed(&api, "POST", &statuses, Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        assert_valid("CommitStatus", &r.json());
        r.json()
    };
    let first = post("pending", "claimd/validate", "validating");
    assert_eq!(first["status"], "pending");
    post("success", "claimd/validate", "3 claims valid");
    post("failure", "claimd/render", "render failed");

    let stored = api.statuses("platform", "voltran", SHA);
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0], first, "oldest first");
    let latest = api.latest_statuses("platform", "voltran", SHA);
    assert_eq!(
        latest["claimd/validate"],
        (
            "success".to_string(),
            "3 claims valid".to_string(),
            "http://claimd.example/runs/1".to_string()
        )
    );
    assert_eq!(latest["claimd/render"].0, "failure");

    let listed = authed(
        &api,
        "GET",
        &format!("{statuses}?sort=oldest&state=success"),
        None,
    );
    assert_eq!(listed.status, 200);
    assert_valid("CommitStatusList", &listed.json());
    assert_eq!(listed.json().as_array().map(Vec::len), Some(1));

    let combined = authed(
        &api,
        "GET",
        &format!("/api/v1/repos/platform/voltran/commits/{SHA}/status"),
        None,
    );
    assert_eq!(combined.status, 200);
    let combined = combined.json();
    assert_valid("CombinedStatus", &combined);
    assert_eq!(combined["state"], "failure");
    assert_eq!(combined["total_count"], 2);

    let missing = authed(
        &api,
        "POST",
        &format!("/api/v1/repos/platform/nope/statuses/{SHA}"),
        Some(&json!({"state": "success"})),
    );
    assert_eq!(missing.status, 404);
    api.assert_clean();
}

#[test]
fn orgs_repos_user_and_version_within_the_contract() {
    let Some(api) = GiteaApi::start("gitea_contract_orgs_repos") else {
        return;
    };
    let version = authed(&api, "GET", "/api/v1/version", None);
    assert_valid("ServerVersion", &version.json());
    let user = authed(&api, "GET", "/api/v1/user", None);
    assert_eq!(user.status, 200);
    assert_valid("User", &user.json());

    assert_eq!(
        authed(&api, "GET", "/api/v1/orgs/platform", None).status,
        404
    );
    let org = authed(
        &api,
        "POST",
        "/api/v1/orgs",
        Some(&json!({"username": "platform"})),
    );
    assert_eq!(org.status, 201, "{}", org.body);
    assert_valid("Organization", &org.json());
    let again = authed(
        &api,
        "POST",
        "/api/v1/orgs",
        Some(&json!({"username": "platform"})),
    );
    assert_eq!(again.status, 422);
    let org = authed(&api, "GET", "/api/v1/orgs/platform", None);
    assert_eq!(org.status, 200);
    assert_eq!(org.json()["name"], "platform");

    let body = json!({"name": "voltran", "default_branch": "main", "private": true});
    let repo = authed(&api, "POST", "/api/v1/orgs/platform/repos", Some(&body));
    assert_eq!(repo.status, 201, "{}", repo.body);
    assert_valid("Repository", &repo.json());
    assert_eq!(
        authed(&api, "POST", "/api/v1/orgs/platform/repos", Some(&body)).status,
        409
    );
    let repo = authed(&api, "GET", "/api/v1/repos/platform/voltran", None);
    assert_eq!(repo.status, 200);
    let repo = repo.json();
    assert_valid("Repository", &repo);
    assert_eq!(repo["full_name"], "platform/voltran");
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(
        authed(&api, "GET", "/api/v1/repos/platform/nope", None).status,
        404
    );
    api.assert_clean();
}

#[test]
fn missing_or_wrong_token_is_401_and_not_a_violation() {
    let Some(api) = GiteaApi::start("gitea_contract_auth") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let hooks = "/api/v1/repos/platform/voltran/hooks";
    for auth in [
        None,
        Some("token wrong"),
        Some("Basic Zm9vOmJhcg=="),
        Some("tokenx"),
    ] {
        let r = call(&api, "GET", hooks, auth, None);
        assert_eq!(r.status, 401, "{auth:?}");
        let error = r.json();
        assert!(
            error["message"].is_string() && error["url"].is_string(),
            "{error}"
        );
    }
    let bearer = call(
        &api,
        "GET",
        hooks,
        Some(&format!("Bearer {}", api.token)),
        None,
    );
    assert_eq!(bearer.status, 200, "Gitea accepts Bearer too");
    assert_eq!(api.requests().len(), 5, "401s are in the request log");
    api.assert_clean();
}

#[test]
fn what_the_swagger_does_not_define_is_a_violation() {
    let Some(api) = GiteaApi::start("gitea_contract_violations") else {
        return;
    };
    api.add_repo("platform", "voltran");
    let hooks = "/api/v1/repos/platform/voltran/hooks";
    let statuses = format!("/api/v1/repos/platform/voltran/statuses/{SHA}");

    let r = authed(&api, "GET", "/api/v1/repos/platform/voltran/webhooks", None);
    assert_eq!(r.status, 404);
    assert_violation(
        &api,
        "unknown path: GET /api/v1/repos/platform/voltran/webhooks (not in the Gitea API)",
    );
    let r = authed(&api, "GET", "/repos/platform/voltran/hooks", None);
    assert_eq!(r.status, 404);
    assert_violation(
        &api,
        "unknown path: GET /repos/platform/voltran/hooks (not under",
    );

    let r = authed(&api, "PUT", hooks, Some(&hook_body()));
    assert_eq!(r.status, 405);
    assert_violation(
        &api,
        "method not allowed: PUT /api/v1/repos/platform/voltran/hooks (the Gitea API defines \
         GET, POST for /repos/{owner}/{repo}/hooks)",
    );

    let mut no_type = hook_body();
    no_type.as_object_mut().unwrap().remove("type");
    let r = authed(&api, "POST", hooks, Some(&no_type));
    assert_eq!(r.status, 422);
    assert!(r.json()["message"].is_string());
    assert_violation(
        &api,
        "invalid body for POST /api/v1/repos/platform/voltran/hooks (repoCreateHook, \
         CreateHookOption): /: \"type\" is a required property",
    );
    let mut no_content_type = hook_body();
    no_content_type["config"]
        .as_object_mut()
        .unwrap()
        .remove("content_type");
    assert_eq!(
        authed(&api, "POST", hooks, Some(&no_content_type)).status,
        422
    );
    assert_violation(
        &api,
        "invalid hook options: config.content_type is required",
    );
    let mut bad_type = hook_body();
    bad_type["type"] = json!("github");
    assert_eq!(authed(&api, "POST", hooks, Some(&bad_type)).status, 422);
    assert_violation(&api, "/type: \"github\" is not one of");
    assert!(
        api.hooks("platform", "voltran").is_empty(),
        "nothing refused was stored"
    );

    for state in ["warning", "bogus"] {
        let r = authed(
            &api,
            "POST",
            &statuses,
            Some(&json!({"state": state, "context": "c"})),
        );
        assert_eq!(r.status, 422);
        assert_violation(
            &api,
            &format!(
                "invalid commit status state \"{state}\" (CommitStatusState is one of pending, \
                 success, error, failure): POST {statuses}"
            ),
        );
    }
    assert!(api.statuses("platform", "voltran", SHA).is_empty());

    let r = call(
        &api,
        "GET",
        &format!("{hooks}?token={}", api.token),
        None,
        None,
    );
    assert_eq!(r.status, 200, "Gitea still accepts it");
    assert_violation(&api, &format!("token in the query string (token=, deprecated for removal in Gitea 1.23; use the Authorization header): GET {hooks}"));
    call(&api, "GET", &format!("{hooks}?access_token=x"), None, None);
    assert_violation(&api, "token in the query string (access_token=");

    authed(&api, "GET", &format!("{hooks}?per_page=5"), None);
    assert_violation(&api, "undeclared query parameter `per_page` for GET");
    authed(&api, "GET", &format!("{statuses}?state=done"), None);
    assert_violation(&api, "query parameter `state=done`");

    let mut extra = hook_body();
    extra["content_type"] = json!("json");
    assert_eq!(authed(&api, "POST", hooks, Some(&extra)).status, 201);
    assert_violation(&api, "fields not in the definition in the body for POST");

    let r = authed(&api, "DELETE", "/api/v1/repos/platform/voltran", None);
    assert_eq!(r.status, 501);
    assert_violation(
        &api,
        "not implemented by the contract server: DELETE /api/v1/repos/platform/voltran",
    );

    assert_eq!(api.violations().len(), 14, "{:#?}", api.violations());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.assert_clean()));
    let message = panic.expect_err("assert_clean panics");
    let message = message.downcast_ref::<String>().expect("a formatted panic");
    assert!(
        message.starts_with("14 Gitea API contract violation(s):"),
        "{message}"
    );
}

#[test]
fn the_response_checks_do_reject_invalid_answers() {
    let Some(_api) = GiteaApi::start("gitea_contract_schema_checks") else {
        return;
    };
    let schema = response_schema("HookList");
    assert!(schema.is_valid(&json!([{"id": 1, "config": {"url": "u"}}])));
    for bad in [
        json!({"id": 1}),
        json!([{"id": "1"}]),
        json!([{"config": {"port": 8080}}]),
        json!([{"created_at": "yesterday"}]),
    ] {
        assert!(!schema.is_valid(&bad), "{bad} passed");
    }
}

#[test]
fn dropping_the_server_does_not_wait_for_idle_keep_alive_connections() {
    let Some(api) = GiteaApi::start("gitea_contract_drop") else {
        return;
    };
    let addr = api.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).expect("connect");
    let request = format!(
        "GET /api/v1/version HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {}\r\n\r\n",
        api.token
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = std::time::Instant::now();
    drop(api);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "drop took {:?}",
        started.elapsed()
    );
}
