//! `spawn_sim`: a simulator on a free port plus an HTTP client that talks to it like hubsync's
//! Bitbucket adapter would (bearer token, per-segment percent-encoded paths).

use hubsync_bitbucket_sim::{Repo, SimConfig, Simulator};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

pub const TOKEN: &str = "test-token-4f1c";

pub struct TestSim {
    pub sim: Simulator,
    pub client: reqwest::Client,
}

/// Starts a simulator with `TOKEN` and the given page size and change cap.
pub async fn spawn_sim(max_page_size: u32, max_changes: u32) -> TestSim {
    spawn_with(SimConfig {
        max_page_size,
        max_changes,
        ..SimConfig::with_token(TOKEN)
    })
    .await
}

pub async fn spawn_with(config: SimConfig) -> TestSim {
    let sim = Simulator::start(config).await.expect("simulator starts");
    let client = reqwest::Client::builder().no_proxy().build().expect("client builds");
    TestSim { sim, client }
}

/// Characters escaped in one path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `a b/ü.json` → `a%20b/%C3%BC.json`.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

impl TestSim {
    /// `/rest/api/1.0/projects/<KEY>/repos/<slug>`.
    pub fn repo_path(&self, repo: &Repo) -> String {
        format!("/rest/api/1.0/projects/{}/repos/{}", repo.project_key(), repo.slug())
    }

    /// The configured token, in full.
    pub fn sim_token(&self) -> String {
        self.sim.token().expose_secret().to_owned()
    }

    /// GET `path` (relative to the base URL) with the right token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with_token(path, Some(self.sim.token().expose_secret())).await
    }

    pub async fn get_with_token(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.sim.base_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request is answered")
    }

    /// GET `path` and parse the body as JSON.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    /// Follows `nextPageStart` from `start=0` and returns every value and every page.
    pub async fn get_all_pages(&self, path: &str) -> (Vec<Value>, Vec<Value>) {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut start = 0;
        let mut values = Vec::new();
        let mut pages = Vec::new();
        for _ in 0..1000 {
            let (status, page) = self
                .get_json(&format!("{path}{separator}start={start}&limit=100"))
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            values.extend(page["values"].as_array().expect("values").iter().cloned());
            let last = page["isLastPage"].as_bool().expect("isLastPage");
            let next = page.get("nextPageStart").and_then(Value::as_u64);
            pages.push(page);
            match (last, next) {
                (true, _) => return (values, pages),
                (false, Some(next)) => start = next,
                (false, None) => panic!("a page that is not the last must give nextPageStart"),
            }
        }
        panic!("paging did not end");
    }
}

/// The single error of an errors body: (exceptionName, message).
pub fn error_of(body: &Value) -> (String, String) {
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert!(errors[0].get("context").is_some(), "context is always present: {body}");
    (
        errors[0]["exceptionName"].as_str().unwrap_or("null").to_owned(),
        errors[0]["message"].as_str().expect("message").to_owned(),
    )
}

/// The blob id of `path` at `rev`, asked of git directly.
pub fn blob_id(repo: &Repo, rev: &str, path: &str) -> String {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo.git_dir())
        .args(["rev-parse", &format!("{rev}:{path}")])
        .output()
        .expect("git runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}
