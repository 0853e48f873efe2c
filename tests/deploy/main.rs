//! Deployment checks: the template lints clean, both functions build for arm64 where the template
//! expects them, and the template and the code agree (a contract test):
//!
//! - every environment variable a function reads is set for it by the template, and every
//!   variable the template sets is read;
//! - every AWS action the function's code calls is allowed by its policy, and the policy allows
//!   nothing else (except the SQS actions Lambda's event source mapping performs for the sync
//!   function); no statement uses a `*` resource.
//!
//! The code side is read from the sources: the adapters a function's `main.rs` constructs, and
//! the SDK operations those adapter modules call (matched against each SDK crate's list of
//! operations, so a new call shows up here without anyone updating a list).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn root() -> PathBuf {
    hubsync_tests::workspace_root()
}

fn template_path() -> PathBuf {
    root().join("infra").join("template.yaml")
}

/// The template as JSON, read by cfn-lint's own loader (which knows CloudFormation's tags).
fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let python = hubsync_tests::python::tool("python");
        let script = "import json,sys\nfrom cfnlint.decode import decode\ntpl, errs = decode(sys.argv[1])\n\
                      assert not errs, errs\nprint(json.dumps(tpl, default=str))";
        let out = Command::new(python)
            .args(["-c", script])
            .arg(template_path())
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("the template as JSON")
    })
}

fn metadata() -> &'static Value {
    static META: OnceLock<Value> = OnceLock::new();
    META.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1"])
            .current_dir(root())
            .output()
            .expect("cargo metadata runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
    })
}

#[test]
fn cfn_lint_reports_nothing() {
    let out = Command::new(hubsync_tests::python::tool("cfn-lint"))
        .arg(template_path())
        .output()
        .expect("cfn-lint runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "cfn-lint found problems:\n{report}"
    );
}

/// The function resources of the template, with the binary each is built from.
fn functions() -> BTreeMap<String, &'static Value> {
    template()["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, r)| (name.clone(), r))
        .collect()
}

fn binary_of(function: &Value) -> &str {
    function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .expect("BuildProperties.Binary")
}

/// The package directory whose `[[bin]]` is `binary`.
fn package_dir_of_binary(binary: &str) -> PathBuf {
    metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["name"] == binary && t["kind"][0] == "bin")
        })
        .map(|p| {
            Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf()
        })
        .unwrap_or_else(|| panic!("no package builds a binary named {binary}"))
}

#[test]
fn the_template_builds_both_functions_with_cargo_lambda_for_arm64_by_default() {
    let fns = functions();
    assert_eq!(fns.keys().collect::<Vec<_>>(), ["SyncFunction", "WebhookFunction"]);
    assert_eq!(template()["Parameters"]["Architecture"]["Default"], "arm64");
    for (name, f) in &fns {
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        assert_eq!(f["Properties"]["Runtime"], "provided.al2023", "{name}");
        assert_eq!(f["Properties"]["Handler"], "bootstrap", "{name}");
        let code_uri = root().join("infra").join(f["Properties"]["CodeUri"].as_str().unwrap());
        assert!(
            code_uri.join("Cargo.toml").exists(),
            "{name}: CodeUri points at the workspace"
        );
        package_dir_of_binary(binary_of(f));
    }
}

#[test]
fn both_functions_are_built_as_arm64_bootstrap_binaries() {
    let target = PathBuf::from(metadata()["target_directory"].as_str().unwrap());
    for (name, f) in functions() {
        let bootstrap = target.join("lambda").join(binary_of(f)).join("bootstrap");
        let bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| {
            panic!(
                "{name}: {} is missing ({e}); `cargo xtask test` builds it with cargo lambda build --release --arm64",
                bootstrap.display()
            )
        });
        assert_eq!(&bytes[..4], b"\x7fELF", "{name}: an ELF executable");
        assert_eq!(bytes[4], 2, "{name}: 64-bit");
        assert_eq!(
            u16::from_le_bytes([bytes[18], bytes[19]]),
            0xB7,
            "{name}: machine is AArch64"
        );
    }
}

/// `pub const NAME: &str = "VALUE";` constants of a source file.
fn string_constants(source: &str) -> BTreeMap<String, String> {
    source
        .lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("pub const ")?;
            let (name, rest) = l.split_once(": &str = \"")?;
            Some((name.to_owned(), rest.split_once('"')?.0.to_owned()))
        })
        .collect()
}

/// Environment variables a function's `main.rs` reads.
fn env_read_by(main_rs: &str) -> BTreeSet<String> {
    let constants = string_constants(&std::fs::read_to_string(root().join("crates/aws/src/config.rs")).unwrap());
    let mut vars: BTreeSet<String> = main_rs
        .split("required_env(")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|name| {
            constants
                .get(name.trim())
                .cloned()
                .unwrap_or_else(|| panic!("unknown variable constant {name}"))
        })
        .collect();
    if main_rs.contains("init_lambda_logs()") {
        let lib = std::fs::read_to_string(root().join("crates/aws/src/lib.rs")).unwrap();
        assert!(
            lib.contains("EnvFilter::try_from_default_env"),
            "init_lambda_logs reads RUST_LOG"
        );
        vars.insert("RUST_LOG".into());
    }
    vars
}

/// The SDK operations (snake_case) of an AWS SDK crate, from its `operation` modules.
fn sdk_operations(crate_name: &str) -> BTreeSet<String> {
    let manifest = metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == crate_name)
        .and_then(|p| p["manifest_path"].as_str())
        .unwrap_or_else(|| panic!("{crate_name} is a dependency"));
    let dir = Path::new(manifest).parent().unwrap().join("src").join("operation");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_owned))
        .collect()
}

fn pascal(snake: &str) -> String {
    snake.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

/// IAM actions the code of a function calls: the adapters its `main.rs` constructs, and the SDK
/// operations their modules invoke.
fn actions_called_by(main_rs: &str) -> BTreeSet<String> {
    let adapters = [
        ("SqsPushQueue::new", "crates/aws/src/sqs.rs", "aws-sdk-sqs", "sqs"),
        (
            "SecretsManagerSource::new",
            "crates/aws/src/secretsmanager.rs",
            "aws-sdk-secretsmanager",
            "secretsmanager",
        ),
        (
            "DynamoStore::new",
            "crates/aws/src/dynamodb.rs",
            "aws-sdk-dynamodb",
            "dynamodb",
        ),
    ];
    let mut actions = BTreeSet::new();
    for (constructor, module, sdk, prefix) in adapters {
        if !main_rs.contains(constructor) {
            continue;
        }
        let source = std::fs::read_to_string(root().join(module)).unwrap();
        for op in sdk_operations(sdk) {
            if source.contains(&format!(".{op}()")) {
                actions.insert(format!("{prefix}:{}", pascal(&op)));
            }
        }
    }
    actions
}

/// What Lambda's SQS event source mapping does with the function's role.
const EVENT_SOURCE_ACTIONS: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
];

fn policy_statements(function: &Value) -> Vec<&Value> {
    function["Properties"]["Policies"]
        .as_array()
        .expect("inline Policies")
        .iter()
        .flat_map(|p| p["Statement"].as_array().expect("a policy document").iter())
        .collect()
}

fn has_event_source_mapping(function_name: &str) -> bool {
    template()["Resources"].as_object().unwrap().values().any(|r| {
        r["Type"] == "AWS::Lambda::EventSourceMapping" && r["Properties"]["FunctionName"]["Ref"] == function_name
    })
}

#[test]
fn the_environment_each_function_reads_is_exactly_what_the_template_sets() {
    for (name, f) in functions() {
        let main_rs = std::fs::read_to_string(package_dir_of_binary(binary_of(f)).join("src/main.rs")).unwrap();
        let read = env_read_by(&main_rs);
        let set: BTreeSet<String> = f["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(read, set, "{name}: variables read by the code vs set by the template");
        assert!(
            template()["Globals"]["Function"]["Environment"].is_null(),
            "no global environment"
        );
    }
}

#[test]
fn each_function_may_call_exactly_the_aws_actions_its_code_calls() {
    for (name, f) in functions() {
        let main_rs = std::fs::read_to_string(package_dir_of_binary(binary_of(f)).join("src/main.rs")).unwrap();
        let called = actions_called_by(&main_rs);
        assert!(!called.is_empty(), "{name}: the code calls AWS");
        let mut allowed = BTreeSet::new();
        for statement in policy_statements(f) {
            assert_eq!(statement["Effect"], "Allow", "{name}");
            let resources: Vec<&Value> = match &statement["Resource"] {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for r in resources {
                assert!(
                    r.as_str().is_none_or(|s| !s.contains('*')),
                    "{name}: no wildcard resources: {r}"
                );
            }
            for action in statement["Action"].as_array().expect("Action is a list") {
                let action = action.as_str().unwrap();
                assert!(!action.contains('*'), "{name}: no wildcard actions");
                allowed.insert(action.to_owned());
            }
        }
        let mut expected = called.clone();
        if has_event_source_mapping(&name) {
            expected.extend(EVENT_SOURCE_ACTIONS.map(String::from));
        }
        assert_eq!(allowed, expected, "{name}: allowed actions vs actions the code calls");
    }
}

#[test]
fn the_contract_reader_sees_the_calls_it_should() {
    // Guards the source reading itself: the webhook sends to SQS and reads the secret.
    let webhook = actions_called_by(&std::fs::read_to_string(root().join("functions/webhook/src/main.rs")).unwrap());
    assert_eq!(
        webhook,
        BTreeSet::from(["sqs:SendMessage".to_owned(), "secretsmanager:GetSecretValue".to_owned()])
    );
    assert_eq!(pascal("batch_write_item"), "BatchWriteItem");
}

#[test]
fn the_queue_gives_the_sync_six_times_its_timeout_and_a_dead_letter_queue() {
    let resources = &template()["Resources"];
    let timeout = resources["SyncFunction"]["Properties"]["Timeout"]
        .as_u64()
        .expect("a Timeout");
    let queue = &resources["SyncQueue"]["Properties"];
    assert_eq!(queue["FifoQueue"], true);
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout);
    assert!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64().is_some());
    let mapping = resources
        .as_object()
        .unwrap()
        .values()
        .find(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
        .unwrap();
    assert_eq!(
        mapping["Properties"]["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    let table = &resources["Table"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["DeletionProtectionEnabled"], true);
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"], "expiresAt");
}
