// Catalyst claims and kubeconfigs for the Kubernetes tests.

/// A Project `shop` of `team` whose image repository is `image` (`""`: none).
pub fn project(team: &str, image: &str) -> String {
    format!(
        r#"apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Project
metadata:
  name: shop
  namespace: {team}
spec:
  source:
    repositoryUrl: "https://git.example.com/org/shop.git"
  deployment:
    type: helm
    path: ./chart
    values:
      image:
        repository: {image}
  resources:
    defaultQuota:
      cpu: "2"
      memory: 3Gi
"#
    )
}

/// An Environment `name` of the Project `shop` at commit `sha`, from `branch`.
pub fn environment(name: &str, sha: &str, branch: &str) -> String {
    format!(
        r#"apiVersion: catalyst.catalyst.dev/v1alpha1
kind: Environment
metadata:
  name: {name}
spec:
  projectRef:
    name: shop
  type: development
  source:
    commitSha: "{sha}"
    branch: "{branch}"
"#
    )
}

/// An ApplicationClaim with one application in `namespace` (environment dev).
pub fn apps(namespace: &str) -> String {
    format!(
        r#"apiVersion: platform.infraforge.io/v1
kind: ApplicationClaim
metadata:
  name: services
spec:
  environment: dev
  clusterType: nonprod
  namespace: {namespace}
  applications:
    - name: api
      chart: {{name: microservice, version: "1.0.0"}}
      image: {{repository: ghcr.io/org/api, tag: v1}}
"#
    )
}

/// A kubeconfig for `server` with a bearer `token`, impersonating `user` if given.
pub fn kubeconfig(server: &str, token: &str, user: Option<&str>) -> String {
    let impersonate = user.map(|u| format!("    as: {u}\n")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n{impersonate}"
    )
}
