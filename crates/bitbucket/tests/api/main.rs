//! The client against a scripted Bitbucket Data Center on 127.0.0.1: each test starts a small
//! HTTP server on a free port with the answers it needs, then checks what the client asked and
//! what it made of the answers. Every server refuses a request without the right bearer token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hubsync_bitbucket::{BitbucketClient, ClientOptions};
use hubsync_core::fetch_budget::{Admission, FetchBudget};
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::ports::{
    ChangeSet, DefaultBranch, FileChange, FileChangeKind, GitHost, GitHostErrorKind, Oversize, RawFile,
};
use secrecy::SecretString;
use serde_json::{Value, json};

mod admin;

const TOKEN: &str = "BBDC-dGhpcyBpcyBhIHRlc3QgdG9rZW4";
const HEAD: &str = "8d51122def5632836d1cb1026e879069e10a1e13";
const BASE: &str = "62a0505e8204115b8b9c8a95bfa264a8c0896a93";
const API: &str = "/rest/api/latest/projects/DATA/repos/models";
/// The size cap the sync asks raw files with by default.
const LIMIT: u64 = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The scripted server
// ---------------------------------------------------------------------------------------------

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Seen {
    /// The path as sent, still percent-encoded.
    path: String,
    query: Vec<(String, String)>,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn start(&self) -> usize {
        self.param("start").and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    fn limit(&self) -> usize {
        self.param("limit").and_then(|s| s.parse().ok()).unwrap_or(25)
    }
}

/// What the script answers: a response, or never (to make the client time out).
enum Answer {
    Send(Response),
    Hang,
}

impl<T: IntoResponse> From<T> for Answer {
    fn from(response: T) -> Self {
        Self::Send(response.into_response())
    }
}

type Script = dyn Fn(&Seen, usize) -> Answer + Send + Sync;

struct ServerState {
    script: Box<Script>,
    seen: Mutex<Vec<Seen>>,
}

struct FakeBitbucket {
    /// `http://127.0.0.1:{port}`.
    origin: String,
    state: Arc<ServerState>,
}

impl FakeBitbucket {
    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    fn client(&self, options: ClientOptions) -> BitbucketClient {
        self.client_with(&self.origin, TOKEN, options)
    }

    fn client_with(&self, base_url: &str, token: &str, options: ClientOptions) -> BitbucketClient {
        BitbucketClient::new(base_url, SecretString::from(token), options).expect("client")
    }
}

/// Starts a server on 127.0.0.1 (a free port) that answers with `script(request, index)`, after
/// refusing any request without `Authorization: Bearer TOKEN` as Bitbucket does.
async fn spawn_bitbucket(script: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> FakeBitbucket {
    let state = Arc::new(ServerState {
        script: Box::new(script),
        seen: Mutex::new(Vec::new()),
    });
    let app = Router::new().fallback(handle).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    FakeBitbucket { origin, state }
}

async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let seen = Seen {
        path: request.uri().path().to_owned(),
        query: url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
    };
    let index = {
        let mut all = state.seen.lock().expect("lock");
        all.push(seen.clone());
        all.len() - 1
    };
    let bearer = format!("Bearer {TOKEN}");
    if request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes) != Some(bearer.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
            "Authentication failed. Please check your credentials and try again.",
        );
    }
    match (state.script)(&seen, index) {
        Answer::Send(response) => response,
        Answer::Hang => std::future::pending().await,
    }
}

fn error(status: StatusCode, exception: &str, message: &str) -> Response {
    let body = json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]});
    (status, axum::Json(body)).into_response()
}

/// The page of `all` that a request asks for, as Bitbucket pages.
fn page_of(all: &[Value], seen: &Seen) -> Response {
    let start = seen.start().min(all.len());
    let end = (start + seen.limit()).min(all.len());
    let last = end == all.len();
    let mut page = json!({
        "size": end - start, "limit": seen.limit(), "isLastPage": last, "start": start,
        "values": &all[start..end],
    });
    if !last {
        page["nextPageStart"] = json!(end);
    }
    axum::Json(page).into_response()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn repo() -> RepoRef {
    RepoRef::parse("DATA/models").expect("repo")
}

fn commit(id: &str) -> CommitId {
    CommitId::parse(id).expect("commit")
}

/// Tiny backoffs so retries take no time.
/// The bytes of a raw file that was read whole.
fn content(read: Option<RawFile>) -> Option<Vec<u8>> {
    match read {
        Some(RawFile::Content(bytes)) => Some(bytes.to_vec()),
        Some(RawFile::TooLarge(size)) => panic!("expected content, got {size}"),
        None => None,
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        page_limit: 2,
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        request_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

fn change(ty: &str, node: &str, path: &str, src: Option<&str>) -> Value {
    let rest_path = |p: &str| {
        let components: Vec<&str> = p.split('/').collect();
        json!({"components": components, "name": components.last(), "toString": p})
    };
    let mut change = json!({
        "contentId": "abcdef0123abcdef4567abcdef8987abcdef6543",
        "type": ty, "nodeType": node, "path": rest_path(path), "executable": false,
    });
    if let Some(src) = src {
        change["srcPath"] = rest_path(src);
    }
    change
}

fn file_change(path: &str, kind: FileChangeKind) -> FileChange {
    FileChange {
        path: path.into(),
        kind,
    }
}

// ---------------------------------------------------------------------------------------------
// Default branch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_default_branch_is_read_with_its_head_commit() {
    let server = spawn_bitbucket(|seen, _| match seen.path.strip_prefix(API) {
        Some("/default-branch") => {
            axum::Json(json!({"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"})).into()
        }
        Some("/commits") if seen.param("until") == Some("refs/heads/main") && seen.param("limit") == Some("1") => {
            axum::Json(
                json!({"size": 1, "limit": 1, "isLastPage": false, "start": 0, "nextPageStart": 1,
                "values": [{"id": HEAD, "displayId": &HEAD[..11], "message": "Add model"}]}),
            )
            .into()
        }
        _ => StatusCode::IM_A_TEAPOT.into(),
    })
    .await;

    let branch = server
        .client(options())
        .default_branch(&repo())
        .await
        .expect("default branch");

    assert_eq!(
        branch,
        Some(DefaultBranch {
            ref_id: "refs/heads/main".into(),
            head: commit(HEAD)
        })
    );
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, [format!("{API}/default-branch"), format!("{API}/commits")]);
}

#[tokio::test]
async fn an_empty_repository_has_no_default_branch() {
    let server = spawn_bitbucket(|seen, _| {
        let main = || axum::Json(json!({"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}));
        let empty_page = || axum::Json(json!({"size": 0, "limit": 1, "isLastPage": true, "start": 0, "values": []}));
        let path = seen.path.as_str();
        match (path.split('/').nth(5), path.rsplit('/').next()) {
            (Some("A"), _) => StatusCode::NO_CONTENT.into(),
            (Some("B"), _) => error(
                StatusCode::NOT_FOUND,
                "com.atlassian.bitbucket.repository.NoDefaultBranchException",
                "Repository B/x has no default branch.",
            )
            .into(),
            (Some("C"), Some("default-branch")) | (Some("D"), Some("default-branch")) => main().into(),
            (Some("C"), Some("commits")) => error(
                StatusCode::NOT_FOUND,
                "com.atlassian.bitbucket.commit.NoSuchCommitException",
                "Commit 'refs/heads/main' does not exist in repository 'x'.",
            )
            .into(),
            (Some("D"), Some("commits")) => empty_page().into(),
            _ => StatusCode::IM_A_TEAPOT.into(),
        }
    })
    .await;
    let client = server.client(options());

    for project in ["A", "B", "C", "D"] {
        let repo = RepoRef::new(project, "x").unwrap();
        assert_eq!(client.default_branch(&repo).await.expect(project), None, "{project}");
    }
}

#[tokio::test]
async fn a_missing_repository_is_not_found_rather_than_empty() {
    let server = spawn_bitbucket(|_, _| {
        error(
            StatusCode::NOT_FOUND,
            "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
            "Repository DATA/models does not exist.",
        )
        .into()
    })
    .await;

    let error = server.client(options()).default_branch(&repo()).await.unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::NotFound);
    assert_eq!(error.status, Some(404));
    assert!(
        error.to_string().contains("Repository DATA/models does not exist."),
        "{error}"
    );
    assert!(!error.is_retryable());
}

// ---------------------------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_page_of_files_is_followed_with_next_page_start() {
    // Starts that are not contiguous: the client must use nextPageStart, not start + size.
    let server = spawn_bitbucket(|seen, _| {
        if seen.path != "/rest/api/latest/projects/~jdoe/repos/sandbox/files" || seen.param("at") != Some(HEAD) {
            return StatusCode::IM_A_TEAPOT.into();
        }
        let page = match seen.param("start") {
            Some("0") => json!({"size": 2, "limit": 2, "isLastPage": false, "start": 0, "nextPageStart": 7,
                                "values": ["a.hck.json", "dir/b c.json"]}),
            Some("7") => json!({"size": 2, "limit": 2, "isLastPage": false, "start": 7, "nextPageStart": 20,
                                "values": ["dir/sub/c.json", "é/d.json"]}),
            Some("20") => json!({"size": 1, "limit": 2, "isLastPage": true, "start": 20, "values": [".hubignore"]}),
            _ => return StatusCode::IM_A_TEAPOT.into(),
        };
        axum::Json(page).into()
    })
    .await;
    let repo = RepoRef::parse("~jdoe/sandbox").unwrap();

    let files = server
        .client(options())
        .list_files(&repo, &commit(HEAD))
        .await
        .expect("files");

    assert_eq!(
        files,
        ["a.hck.json", "dir/b c.json", "dir/sub/c.json", "é/d.json", ".hubignore"]
    );
    let asked: Vec<(Option<String>, Option<String>)> = server
        .seen()
        .iter()
        .map(|s| (s.param("start").map(Into::into), s.param("limit").map(Into::into)))
        .collect();
    let expected = ["0", "7", "20"].map(|start| (Some(start.to_owned()), Some("2".to_owned())));
    assert_eq!(asked, expected);
}

#[tokio::test]
async fn a_file_list_without_a_next_start_is_an_error_not_a_short_list() {
    let server = spawn_bitbucket(|_, _| {
        axum::Json(json!({"size": 1, "limit": 2, "isLastPage": false, "start": 0, "values": ["a.json"]})).into()
    })
    .await;

    let error = server
        .client(options())
        .list_files(&repo(), &commit(HEAD))
        .await
        .unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Protocol);
}

#[tokio::test]
async fn changes_are_listed_across_pages_and_mapped_to_file_changes() {
    let all = vec![
        change("ADD", "FILE", "models/new.hck.json", None),
        change("MODIFY", "FILE", "models/a.json", None),
        change("ADD", "DIRECTORY", "models/dir", None),
        change("DELETE", "FILE", "old.json", None),
        change("MOVE", "FILE", "moved/b.json", Some("b.json")),
        change("ADD", "SUBMODULE", "lib", None),
        change("COPY", "FILE", "c2.json", Some("c.json")),
        change("UNKNOWN", "FILE", "u.json", None),
    ];
    let server = spawn_bitbucket(move |seen, _| {
        if seen.path != format!("{API}/changes")
            || seen.param("since") != Some(BASE)
            || seen.param("until") != Some(HEAD)
        {
            return StatusCode::IM_A_TEAPOT.into();
        }
        page_of(&all, seen).into()
    })
    .await;

    let set = server
        .client(options())
        .changes(&repo(), &commit(BASE), &commit(HEAD))
        .await
        .expect("changes");

    let expected = ChangeSet {
        changes: vec![
            file_change("models/new.hck.json", FileChangeKind::Add),
            file_change("models/a.json", FileChangeKind::Modify),
            file_change("old.json", FileChangeKind::Delete),
            file_change("moved/b.json", FileChangeKind::Move { from: "b.json".into() }),
            file_change("c2.json", FileChangeKind::Copy { from: "c.json".into() }),
            file_change("u.json", FileChangeKind::Modify),
        ],
        truncated: false,
    };
    assert_eq!(set, expected);
    let starts: Vec<usize> = server.seen().iter().map(Seen::start).collect();
    assert_eq!(starts, [0, 2, 4, 6]);
    assert!(server.seen().iter().all(|s| s.limit() == 2));
}

#[tokio::test]
async fn changes_that_reach_the_server_cap_are_truncated() {
    // Like Bitbucket with page.max.changes = 3: the diff has 10 changes, the server lists 3 and
    // calls that the last page.
    let all: Vec<Value> = (0..10)
        .map(|i| change("MODIFY", "FILE", &format!("m{i}.json"), None))
        .collect();
    let server = spawn_bitbucket(move |seen, _| page_of(&all[..3], seen).into()).await;
    let client = server.client(ClientOptions {
        max_changes: 3,
        page_limit: 1000,
        ..options()
    });

    let set = client
        .changes(&repo(), &commit(BASE), &commit(HEAD))
        .await
        .expect("changes");

    assert!(set.truncated);
    assert_eq!(set.changes.len(), 3);
    assert_eq!(
        server.seen()[0].limit(),
        3,
        "a page never asks for more than max_changes"
    );
}

#[tokio::test]
async fn changes_stop_at_max_changes_even_when_more_pages_remain() {
    let all: Vec<Value> = (0..10)
        .map(|i| change("ADD", "FILE", &format!("m{i}.json"), None))
        .collect();
    let server = spawn_bitbucket(move |seen, _| page_of(&all, seen).into()).await;
    let client = server.client(ClientOptions {
        max_changes: 3,
        ..options()
    });

    let set = client
        .changes(&repo(), &commit(BASE), &commit(HEAD))
        .await
        .expect("changes");

    assert!(set.truncated);
    assert_eq!(
        server.seen().len(),
        2,
        "pages of 2: the cap of 3 is reached on the second"
    );
}

#[tokio::test]
async fn changes_are_truncated_when_the_server_stops_paging_early() {
    let server = spawn_bitbucket(|_, _| {
        axum::Json(json!({"size": 1, "limit": 2, "isLastPage": false, "start": 0,
                          "values": [change("ADD", "FILE", "a.json", None)]}))
        .into()
    })
    .await;

    let set = server
        .client(options())
        .changes(&repo(), &commit(BASE), &commit(HEAD))
        .await
        .expect("changes");

    assert!(set.truncated);
    assert_eq!(set.changes, [file_change("a.json", FileChangeKind::Add)]);
}

#[tokio::test]
async fn a_complete_short_change_list_is_not_truncated() {
    let server = spawn_bitbucket(|_, _| {
        axum::Json(json!({"size": 0, "limit": 2, "isLastPage": true, "start": 0, "values": []})).into()
    })
    .await;

    let set = server
        .client(options())
        .changes(&repo(), &commit(BASE), &commit(HEAD))
        .await
        .expect("changes");

    assert_eq!(set, ChangeSet::default());
}

// ---------------------------------------------------------------------------------------------
// Raw files and URLs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_large_file_is_read_whole_from_its_encoded_path() {
    let content: Arc<Vec<u8>> = Arc::new((0..24 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect());
    let served = content.clone();
    let server = spawn_bitbucket(move |seen, _| {
        let expected = format!("{API}/raw/models/Mod%C3%A8le%20client/a%3Bb%23c.hck.json");
        if seen.path == expected && seen.param("at") == Some(HEAD) {
            served.as_ref().clone().into()
        } else {
            StatusCode::IM_A_TEAPOT.into()
        }
    })
    .await;

    let read = server
        .client(options())
        .raw_file(
            &repo(),
            "models/Modèle client/a;b#c.hck.json",
            &commit(HEAD),
            LIMIT,
            &mut Admission::unbounded(),
        )
        .await
        .expect("raw file");

    assert!(
        self::content(read).as_deref() == Some(content.as_slice()),
        "the content differs"
    );
}

/// A body of `total` bytes streamed in 64 KiB chunks, announced in `Content-Length` or not;
/// `pulled` counts the bytes handed to the connection.
fn streamed_body(total: u64, announce: bool, pulled: Arc<std::sync::atomic::AtomicU64>) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let pulled = pulled.clone();
        async move {
            if sent >= total {
                return None;
            }
            let n = CHUNK.min(total - sent);
            pulled.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(vec![b' '; n as usize]), sent + n))
        }
    });
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    if announce {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    response
}

#[tokio::test]
async fn a_file_announced_over_the_limit_is_too_large_and_its_body_is_not_read() {
    // Arrange
    let pulled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = pulled.clone();
    let announced: u64 = 3 << 29; // 1.5 GiB
    let server = spawn_bitbucket(move |_, _| streamed_body(announced, true, counter.clone()).into()).await;

    // Act
    let read = server
        .client(options())
        .raw_file(&repo(), "huge.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await
        .expect("an answer");

    // Assert
    assert_eq!(read, Some(RawFile::TooLarge(Oversize::Announced(announced))));
    assert_eq!(
        Oversize::Announced(announced).to_string(),
        "too large (1610612736 bytes)"
    );
    assert_eq!(server.seen().len(), 1, "not retried");
    let pulled = pulled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pulled < LIMIT, "{pulled} bytes were pulled from the server");
}

#[tokio::test]
async fn a_body_without_a_length_is_read_no_further_than_the_limit() {
    // Arrange
    let limit: u64 = 1024 * 1024;
    let total: u64 = 64 * 1024 * 1024;
    let pulled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = pulled.clone();
    let server = spawn_bitbucket(move |_, _| streamed_body(total, false, counter.clone()).into()).await;

    // Act
    let read = server
        .client(options())
        .raw_file(&repo(), "big.json", &commit(HEAD), limit, &mut Admission::unbounded())
        .await
        .expect("an answer");

    // Assert
    assert_eq!(read, Some(RawFile::TooLarge(Oversize::Exceeded { limit })));
    let pulled = pulled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pulled < total / 4, "{pulled} bytes were pulled from the server");
}

#[tokio::test]
async fn a_raw_file_is_charged_its_announced_size_or_without_one_the_budgets_largest_size_then_what_it_read() {
    let total: u64 = 300 * 1024;
    for announce in [true, false] {
        // Arrange: room for one file of 1 MiB beside one allowance of 64 KiB.
        let server = spawn_bitbucket(move |_, _| {
            streamed_body(total, announce, Arc::new(std::sync::atomic::AtomicU64::new(0))).into()
        })
        .await;
        let budget = FetchBudget::with_bytes(2, 1024 * 1024, 64 * 1024);
        let mut admission = budget.admit().await;

        // Act
        let read = server
            .client(options())
            .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut admission)
            .await
            .expect("an answer");
        let charged = admission.reserved();
        admission.settle(total);

        // Assert
        assert_eq!(
            content(read).map(|c| c.len() as u64),
            Some(total),
            "announced: {announce}"
        );
        let expected = if announce { total } else { budget.largest() };
        assert_eq!(charged, expected, "announced: {announce}");
        assert_eq!(admission.reserved(), total, "announced: {announce}");
    }
}

#[tokio::test]
async fn the_request_timeout_stops_while_a_file_waits_for_the_budget() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let total: u64 = 300 * 1024;
    for announce in [true, false] {
        // Arrange: another file holds every byte the budget has beyond one allowance, and the
        // request timeout is shorter than this file will wait for it.
        let answered = Arc::new(tokio::sync::Notify::new());
        let server = spawn_bitbucket({
            let answered = answered.clone();
            move |_, _| {
                answered.notify_one();
                streamed_body(total, announce, Arc::new(std::sync::atomic::AtomicU64::new(0))).into()
            }
        })
        .await;
        let budget = FetchBudget::with_bytes(2, 1024 * 1024, 64 * 1024);
        let mut other = budget.admit().await;
        other.announce(budget.largest()).await;
        let mut admission = budget.admit().await;
        let client = server.client(ClientOptions {
            max_attempts: 1,
            request_timeout: TIMEOUT,
            ..options()
        });

        // Act: the server answers at once; the body waits three timeouts for the budget (the
        // wait itself is what is tested), then the other file gives its bytes back.
        let fetch = tokio::spawn(async move {
            let read = client
                .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut admission)
                .await;
            (read, admission.reserved())
        });
        answered.notified().await;
        tokio::time::sleep(TIMEOUT * 3).await;
        drop(other);
        let (read, charged) = fetch.await.expect("the fetch task");

        // Assert: read whole, in its one attempt.
        let read = read.expect("no timeout while waiting for the budget");
        assert_eq!(
            content(read).map(|c| c.len() as u64),
            Some(total),
            "announced: {announce}"
        );
        assert!(charged >= total, "announced: {announce}: {charged} bytes charged");
        assert_eq!(server.seen().len(), 1, "announced: {announce}");
    }
}

#[tokio::test]
async fn a_file_announced_over_the_limit_is_charged_nothing() {
    // Arrange
    let server =
        spawn_bitbucket(|_, _| streamed_body(3 << 29, true, Arc::new(std::sync::atomic::AtomicU64::new(0))).into())
            .await;
    let budget = FetchBudget::with_bytes(2, 1024 * 1024, 64 * 1024);
    let mut admission = budget.admit().await;

    // Act
    let read = server
        .client(options())
        .raw_file(&repo(), "huge.json", &commit(HEAD), LIMIT, &mut admission)
        .await
        .expect("an answer");

    // Assert
    assert!(
        matches!(read, Some(RawFile::TooLarge(Oversize::Announced(_)))),
        "{read:?}"
    );
    assert_eq!(admission.reserved(), 0);
}

#[tokio::test]
async fn a_file_of_exactly_the_limit_is_read_whole_with_or_without_a_length() {
    let limit: u64 = 1024 * 1024 + 5;
    for announce in [true, false] {
        let server = spawn_bitbucket(move |_, _| {
            streamed_body(limit, announce, Arc::new(std::sync::atomic::AtomicU64::new(0))).into()
        })
        .await;
        let client = server.client(options());

        let exact = client
            .raw_file(&repo(), "a.json", &commit(HEAD), limit, &mut Admission::unbounded())
            .await
            .expect("an answer");
        let over = client
            .raw_file(&repo(), "a.json", &commit(HEAD), limit - 1, &mut Admission::unbounded())
            .await
            .expect("an answer");

        assert_eq!(
            content(exact).map(|c| c.len() as u64),
            Some(limit),
            "announced: {announce}"
        );
        assert!(matches!(over, Some(RawFile::TooLarge(_))), "announced: {announce}");
    }
}

#[tokio::test]
async fn a_missing_file_is_none_but_a_missing_repository_is_an_error() {
    let server = spawn_bitbucket(|seen, _| {
        if seen.path.starts_with("/rest/api/latest/projects/GONE/") {
            error(
                StatusCode::NOT_FOUND,
                "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
                "Repository GONE/models does not exist.",
            )
            .into()
        } else {
            error(
                StatusCode::NOT_FOUND,
                "com.atlassian.bitbucket.content.NoSuchPathException",
                "The path \"x.json\" does not exist at revision \"8d51122def5\"",
            )
            .into()
        }
    })
    .await;
    let client = server.client(options());

    let missing_file = client
        .raw_file(&repo(), "x.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await;
    let gone = RepoRef::parse("GONE/models").unwrap();
    let missing_repo = client
        .raw_file(&gone, "x.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await;

    assert_eq!(missing_file.expect("missing file"), None);
    assert_eq!(missing_repo.expect_err("missing repo").kind, GitHostErrorKind::NotFound);
    assert_eq!(server.seen().len(), 2, "404 is not retried");
}

#[tokio::test]
async fn a_base_url_with_a_context_path_keeps_it() {
    let server = spawn_bitbucket(|seen, _| {
        if seen.path == "/bitbucket/rest/api/latest/projects/DATA/repos/models/raw/a.json" {
            "{}".into()
        } else {
            StatusCode::IM_A_TEAPOT.into()
        }
    })
    .await;
    let client = server.client_with(&format!("{}/bitbucket/", server.origin), TOKEN, options());

    let read = client
        .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await
        .expect("raw file");

    assert_eq!(content(read).as_deref(), Some(&b"{}"[..]));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = spawn_bitbucket(|seen, _| {
        if seen.path == "/elsewhere" {
            return "followed".into();
        }
        (StatusCode::FOUND, [(header::LOCATION, "/elsewhere")]).into()
    })
    .await;

    let error = server
        .client(options())
        .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await
        .unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Protocol);
    assert_eq!(error.status, Some(302));
    assert_eq!(server.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Errors and retries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rate_limit_is_retried_as_soon_as_retry_after_allows() {
    let server = spawn_bitbucket(|_, index| match index {
        0 => (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")]).into(),
        _ => axum::Json(json!({"size": 1, "limit": 2, "isLastPage": true, "start": 0, "values": ["a.json"]})).into(),
    })
    .await;
    // Without Retry-After the client would wait about a minute: the timeout below would fail.
    let client = server.client(ClientOptions {
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(120),
        ..options()
    });

    let files = tokio::time::timeout(Duration::from_secs(20), client.list_files(&repo(), &commit(HEAD)))
        .await
        .expect("Retry-After: 0 was not honoured")
        .expect("files");

    assert_eq!(files, ["a.json"]);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_that_lasts_is_reported_as_rate_limited() {
    let server = spawn_bitbucket(|_, _| (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")]).into()).await;

    let error = server
        .client(options())
        .list_files(&repo(), &commit(HEAD))
        .await
        .unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::RateLimited);
    assert!(error.is_retryable());
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_server_error_is_retried_up_to_max_attempts_then_reported() {
    let server = spawn_bitbucket(|_, _| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "java.lang.IllegalStateException",
            "Something broke.",
        )
        .into()
    })
    .await;

    let error = server.client(options()).default_branch(&repo()).await.unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Server);
    assert_eq!(error.status, Some(500));
    assert!(error.is_retryable());
    assert_eq!(server.seen().len(), 3, "max_attempts is 3");
    let message = error.to_string();
    assert!(
        message.contains("after 3 attempts") && message.contains("Something broke."),
        "{message}"
    );
}

#[tokio::test]
async fn a_rejected_token_is_unauthorized_names_the_repository_and_is_not_retried() {
    let server = spawn_bitbucket(|_, _| StatusCode::IM_A_TEAPOT.into()).await;
    let wrong_token = "BBDC-wrong-token-that-must-not-leak";
    let client = server.client_with(&server.origin, wrong_token, options());

    let error = client.list_files(&repo(), &commit(HEAD)).await.unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Unauthorized);
    assert_eq!(error.status, Some(401));
    assert!(!error.is_retryable());
    let printed = format!("{error} {error:?} {client:?}");
    assert!(printed.contains("DATA/models") && printed.contains("401"), "{printed}");
    assert!(printed.contains("Authentication failed."), "{printed}");
    assert!(!printed.contains(wrong_token), "{printed}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_missing_scope_is_forbidden_and_other_client_errors_are_protocol_errors() {
    let server = spawn_bitbucket(|seen, _| {
        if seen.path.ends_with("/files") {
            error(
                StatusCode::FORBIDDEN,
                "com.atlassian.bitbucket.AuthorisationException",
                "No REPO_READ.",
            )
            .into()
        } else {
            error(StatusCode::BAD_REQUEST, "", "The until parameter was not supplied.").into()
        }
    })
    .await;
    let client = server.client(options());

    let forbidden = client.list_files(&repo(), &commit(HEAD)).await.unwrap_err();
    let bad = client.changes(&repo(), &commit(BASE), &commit(HEAD)).await.unwrap_err();

    assert_eq!(forbidden.kind, GitHostErrorKind::Forbidden);
    assert_eq!(bad.kind, GitHostErrorKind::Protocol);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error_after_every_attempt() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let client = BitbucketClient::new(&origin, SecretString::from(TOKEN), options()).expect("client");

    let error = client.list_files(&repo(), &commit(HEAD)).await.unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Transport);
    assert!(error.is_retryable());
    assert!(error.message.contains("after 3 attempts"), "{}", error.message);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = spawn_bitbucket(|_, _| Answer::Hang).await;
    let client = server.client(ClientOptions {
        max_attempts: 2,
        request_timeout: Duration::from_millis(200),
        ..options()
    });

    let error = client
        .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await
        .unwrap_err();

    assert_eq!(error.kind, GitHostErrorKind::Transport);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_shared_http_client_serves_a_rotated_token() {
    let server = spawn_bitbucket(|_, _| "content".into()).await;
    let http = BitbucketClient::http_client(&options()).expect("http client");
    let old = BitbucketClient::with_http(http.clone(), &server.origin, SecretString::from("old"), options()).unwrap();
    let new = BitbucketClient::with_http(http, &server.origin, SecretString::from(TOKEN), options()).unwrap();

    let refused = old
        .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await;
    let read = new
        .raw_file(&repo(), "a.json", &commit(HEAD), LIMIT, &mut Admission::unbounded())
        .await;

    assert_eq!(refused.unwrap_err().kind, GitHostErrorKind::Unauthorized);
    assert_eq!(content(read.expect("raw")).as_deref(), Some(&b"content"[..]));
}
