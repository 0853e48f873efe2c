//! Deployment checks: the template lints clean, both functions build for the architecture the
//! template deploys (written in the template, so `sam build` and `sam deploy` cannot disagree),
//! `cargo lambda build` / `cargo lambda deploy` configure the functions as the template does
//! (tried against moto: the stack's function keeps its memory, timeout and environment), and the
//! template and the code agree (a contract test):
//!
//! - every environment variable a function reads is set for it by the template, and every
//!   variable the template sets is read;
//! - every AWS action the function's code calls is allowed by its policy, and the policy allows
//!   nothing else (except the SQS actions Lambda's event source mapping performs for the sync
//!   function); no statement uses a `*` resource.
//!
//! The code side is `hubsync_aws::functions::FUNCTIONS`: per function, the variables it reads and
//! the adapters it uses with the SDK operations each calls (that crate's unit tests check those
//! against its code; here each is checked to be an operation of its SDK and mapped to the IAM
//! actions it needs). No function
//! depends on the AWS SDK itself, so it can call AWS only through those adapters.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hubsync_aws::functions::{FUNCTIONS, FunctionContract};
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
fn the_template_builds_both_functions_with_cargo_lambda() {
    let fns = functions();
    assert_eq!(fns.keys().collect::<Vec<_>>(), ["SyncFunction", "WebhookFunction"]);
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

/// The contract `hubsync-aws` declares for the function built from `binary`.
fn contract_of(binary: &str) -> &'static FunctionContract {
    FUNCTIONS
        .iter()
        .find(|c| c.binary == binary)
        .unwrap_or_else(|| panic!("hubsync_aws::functions::FUNCTIONS has no contract for the binary {binary}"))
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

/// The IAM actions an SDK operation (`service:Operation`) needs. DynamoDB's `TransactWriteItems`
/// has no action of its own: each of its items is authorized as the single-item operation
/// (`ConditionCheck` as `ConditionCheckItem`), and the store's transactions use all four kinds.
fn iam_actions(operation: &str) -> Vec<String> {
    match operation {
        "dynamodb:TransactWriteItems" => ["ConditionCheckItem", "PutItem", "UpdateItem", "DeleteItem"]
            .map(|a| format!("dynamodb:{a}"))
            .to_vec(),
        other => vec![other.to_owned()],
    }
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
        let read: BTreeSet<String> = contract_of(binary_of(f)).env.iter().map(|v| v.to_string()).collect();
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
        let called: BTreeSet<String> = contract_of(binary_of(f))
            .operations()
            .into_iter()
            .flat_map(iam_actions)
            .collect();
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
fn every_function_of_the_template_has_a_contract_and_every_contract_a_function() {
    let built: BTreeSet<&str> = functions().values().map(|f| binary_of(f)).collect();

    let declared: BTreeSet<&str> = FUNCTIONS.iter().map(|c| c.binary).collect();

    assert_eq!(built, declared);
}

#[test]
fn every_declared_operation_is_an_operation_of_its_sdk() {
    for contract in FUNCTIONS {
        for adapter in contract.adapters {
            assert!(!adapter.operations.is_empty(), "{}: calls AWS", adapter.name);
            for declared in adapter.operations {
                let (service, operation) = declared
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{declared}: service:Operation"));
                let known: BTreeSet<String> = sdk_operations(&format!("aws-sdk-{service}"))
                    .iter()
                    .map(|op| pascal(op))
                    .collect();
                assert!(
                    known.contains(operation),
                    "{}: {declared} is not an operation of aws-sdk-{service}",
                    adapter.name
                );
            }
        }
    }
    assert_eq!(pascal("batch_write_item"), "BatchWriteItem");
    assert_eq!(iam_actions("sqs:SendMessage"), ["sqs:SendMessage"]);
}

#[test]
fn only_hubsync_aws_and_the_tests_depend_on_the_aws_sdk() {
    // The functions and the CLI get every AWS client from hubsync-aws, so the contracts above
    // are all the AWS calls they make.
    let members: BTreeSet<&str> = metadata()["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut users = BTreeSet::new();
    for package in metadata()["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        for dependency in package["dependencies"].as_array().unwrap() {
            let name = dependency["name"].as_str().unwrap();
            if dependency["kind"].is_null() && (name.starts_with("aws-sdk-") || name == "aws-config") {
                users.insert(package["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(
        users,
        BTreeSet::from(["hubsync-aws".to_owned(), "hubsync-tests".to_owned()]),
        "packages depending on the AWS SDK"
    );
}

#[test]
fn the_functions_link_no_test_adapters_no_simulator_and_no_sqlite() {
    // Every workspace crate a function reaches through normal dependencies (what its release
    // binary links): none of them may enable core's `test-util` (the in-memory adapters and
    // fixtures) or depend on the simulator or the local SQLite backend.
    let packages: BTreeMap<&str, &Value> = metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| (p["name"].as_str().unwrap(), p))
        .collect();
    for function in ["hubsync-webhook-function", "hubsync-sync-function"] {
        let mut pending = vec![function];
        let mut seen = BTreeSet::new();
        while let Some(name) = pending.pop() {
            if !seen.insert(name) {
                continue;
            }
            let package = packages
                .get(name)
                .unwrap_or_else(|| panic!("{name} is a workspace package"));
            for dependency in package["dependencies"].as_array().unwrap() {
                let dep = dependency["name"].as_str().unwrap();
                if !dependency["kind"].is_null() || !packages.contains_key(dep) {
                    continue;
                }
                assert!(
                    !["hubsync-bitbucket-sim", "hubsync-sqlite"].contains(&dep),
                    "{function} links {dep} through {name}"
                );
                let features: Vec<&str> = dependency["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(
                    !features.contains(&"test-util"),
                    "{function} links {dep}'s test-util through {name}"
                );
                pending.push(dep);
            }
        }
        assert!(
            seen.contains("hubsync-core"),
            "{function} reaches hubsync-core: {seen:?}"
        );
    }
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

// ---------------------------------------------------------------------------------------------
// Architecture and Cargo Lambda: what `sam build`, `cargo lambda build` and `cargo lambda deploy`
// produce must be what the template deploys.
// ---------------------------------------------------------------------------------------------

/// `infra/samconfig.toml` as JSON (read with Python's tomllib, as the template is read with
/// cfn-lint's loader).
fn samconfig() -> Value {
    let script = "import json,sys,tomllib\nprint(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))";
    let out = Command::new(hubsync_tests::python::tool("python"))
        .args(["-c", script])
        .arg(root().join("infra").join("samconfig.toml"))
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("samconfig.toml as JSON")
}

/// The one architecture a function resource deploys, written in the template itself.
fn architecture_of(name: &str, function: &Value) -> &'static str {
    let archs = function["Properties"]["Architectures"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: Architectures is a list"));
    assert_eq!(archs.len(), 1, "{name}: one architecture");
    match archs[0].as_str() {
        Some("arm64") => "arm64",
        Some("x86_64") => "x86_64",
        _ => panic!(
            "{name}: Architectures must be a literal arm64 or x86_64, not {}: `sam build` resolves a \
             parameter from the template default or its own --parameter-overrides, never from the \
             values `sam deploy --guided` saved, so the binary and the function could disagree",
            archs[0]
        ),
    }
}

/// ELF `e_machine` of the architecture Lambda calls `name`.
fn elf_machine(architecture: &str) -> u16 {
    match architecture {
        "arm64" => 0xB7,
        "x86_64" => 0x3E,
        other => panic!("unknown architecture {other}"),
    }
}

/// Cargo Lambda's configuration of the package building `binary` (`[package.metadata.lambda]`).
fn cargo_lambda_config(binary: &str) -> &'static Value {
    let manifest = package_dir_of_binary(binary).join("Cargo.toml");
    let package = metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| Path::new(p["manifest_path"].as_str().unwrap()) == manifest)
        .expect("the package is in cargo metadata");
    &package["metadata"]["lambda"]
}

#[test]
fn the_architecture_is_written_in_the_template_so_sam_build_and_sam_deploy_agree() {
    // Arrange
    let template = template();
    let config = samconfig();

    // Act
    let architectures: BTreeSet<&str> = functions().iter().map(|(n, f)| architecture_of(n, f)).collect();

    // Assert
    assert_eq!(architectures, BTreeSet::from(["arm64"]), "both functions run on arm64");
    assert!(
        template["Parameters"]["Architecture"].is_null(),
        "no Architecture parameter: a guided deploy could set it without the build seeing it"
    );
    for (env, commands) in config.as_object().unwrap().iter().filter(|(_, v)| v.is_object()) {
        for (command, sections) in commands.as_object().unwrap() {
            let params = &sections["parameters"];
            let overrides = params["parameter_overrides"].as_str().unwrap_or_default();
            assert!(
                !overrides.contains("Architecture"),
                "[{env}.{command}.parameters] overrides the architecture"
            );
            assert!(
                params["beta_features"].is_null(),
                "[{env}.{command}.parameters] sets beta_features, which turns on every beta \
                 feature; rust-cargolambda needs none since SAM CLI 1.156"
            );
        }
    }
}

#[test]
fn each_bootstrap_is_built_for_the_architecture_the_template_deploys() {
    let target = PathBuf::from(metadata()["target_directory"].as_str().unwrap());
    for (name, f) in functions() {
        // Arrange
        let expected = elf_machine(architecture_of(&name, f));
        let bootstrap = target.join("lambda").join(binary_of(f)).join("bootstrap");

        // Act
        let bytes = std::fs::read(&bootstrap).unwrap_or_else(|e| {
            panic!(
                "{name}: {} is missing ({e}); `cargo xtask build-lambdas` builds it with cargo lambda build",
                bootstrap.display()
            )
        });

        // Assert
        assert_eq!(&bytes[..4], b"\x7fELF", "{name}: an ELF executable");
        assert_eq!(bytes[4], 2, "{name}: 64-bit");
        assert_eq!(bytes[5], 1, "{name}: little-endian");
        let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
        assert_eq!(
            machine, expected,
            "{name}: the bootstrap's ELF machine is {machine:#x}, the template deploys {expected:#x}"
        );
    }
}

#[test]
fn cargo_lambda_builds_each_function_for_the_template_architecture() {
    // Cargo Lambda reads a package's configuration when it builds that package's binary alone;
    // `--bin webhook --bin sync` reads the workspace's only. Both must say the same.
    let workspace = &metadata()["metadata"]["lambda"]["build"];
    for (name, f) in functions() {
        let arm64 = architecture_of(&name, f) == "arm64";
        assert_eq!(
            workspace["arm64"].as_bool().unwrap_or(false),
            arm64,
            "{name}: [workspace.metadata.lambda.build] arm64"
        );
        let build = &cargo_lambda_config(binary_of(f))["build"];
        assert_eq!(
            build["arm64"].as_bool().unwrap_or(false),
            arm64,
            "{name}: [package.metadata.lambda.build] arm64"
        );
        assert_eq!(build["x86_64"].as_bool().unwrap_or(false), !arm64, "{name}: x86_64");
        assert!(
            build["target"].is_null(),
            "{name}: no target besides the architecture flag"
        );
    }
}

#[test]
fn cargo_lambda_deploy_sets_what_the_template_sets_and_keeps_the_stack_environment() {
    // What `cargo lambda deploy` may send for a function of the stack: the template's memory and
    // timeout, and the environment merged. Anything else (env values, role, runtime, layers,
    // tracing, VPC...) would drift from the template until the next `sam deploy`.
    let allowed = BTreeSet::from(["memory", "timeout", "merge_env"]);
    for (name, f) in functions() {
        // Arrange
        let properties = &f["Properties"];

        // Act
        let deploy = &cargo_lambda_config(binary_of(f))["deploy"];

        // Assert
        let keys: BTreeSet<&str> = deploy
            .as_object()
            .unwrap_or_else(|| panic!("{name}: [package.metadata.lambda.deploy] exists"))
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&allowed),
            "{name}: deploy keys {keys:?}; only {allowed:?} keep the function as the template sets it"
        );
        assert_eq!(deploy["memory"], properties["MemorySize"], "{name}: memory");
        assert_eq!(deploy["timeout"], properties["Timeout"], "{name}: timeout");
        assert_eq!(
            deploy["merge_env"], true,
            "{name}: without merge_env a deploy replaces every variable the template set"
        );
        assert!(
            properties["Environment"]["Variables"]
                .as_object()
                .is_some_and(|v| !v.is_empty()),
            "{name}: the template sets the environment the deploy keeps"
        );
    }
}

#[test]
fn each_function_is_named_after_the_stack_and_its_binary() {
    // `cargo lambda deploy --binary-name <binary> <stack>-<binary>` then updates the stack's
    // function instead of creating another one.
    for (name, f) in functions() {
        let expected = format!("${{AWS::StackName}}-{}", binary_of(f));
        assert_eq!(
            f["Properties"]["FunctionName"]["Fn::Sub"].as_str(),
            Some(expected.as_str()),
            "{name}: FunctionName"
        );
    }
}

/// Runs a boto3 script against moto: `argv[1]` is the endpoint, then `args`; prints JSON.
fn boto3(script: &str, args: &[&str]) -> Value {
    let prelude = "import boto3,json,sys\nkw=dict(endpoint_url=sys.argv[1],region_name='us-east-1',\
                   aws_access_key_id='testing',aws_secret_access_key='testing')\n";
    let out = Command::new(hubsync_tests::python::tool("python"))
        .args(["-c", &format!("{prelude}{script}")])
        .arg(&hubsync_tests::moto::moto().endpoint)
        .args(args)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the boto3 script")
}

/// The function `name` as the stack creates it: the template's memory, timeout, architecture
/// and environment (a value per variable, as CloudFormation fills them in).
fn create_stack_function(name: &str, function: &Value, env: &Value) {
    let p = &function["Properties"];
    let script = "iam=boto3.client('iam',**kw)\nlam=boto3.client('lambda',**kw)\n\
        doc=json.dumps({'Version':'2012-10-17','Statement':[{'Effect':'Allow','Principal':\
        {'Service':'lambda.amazonaws.com'},'Action':'sts:AssumeRole'}]})\n\
        role=iam.create_role(RoleName=sys.argv[2]+'-role',AssumeRolePolicyDocument=doc)['Role']['Arn']\n\
        import io,zipfile\nbuf=io.BytesIO()\nz=zipfile.ZipFile(buf,'w')\nz.writestr('bootstrap',b'stack build')\nz.close()\n\
        lam.create_function(FunctionName=sys.argv[2],Role=role,Handler='bootstrap',Runtime=sys.argv[3],\
        Code={'ZipFile':buf.getvalue()},MemorySize=int(sys.argv[4]),Timeout=int(sys.argv[5]),\
        Architectures=[sys.argv[6]],Environment={'Variables':json.loads(sys.argv[7])})\nprint('{}')";
    boto3(
        script,
        &[
            name,
            p["Runtime"].as_str().unwrap(),
            &p["MemorySize"].to_string(),
            &p["Timeout"].to_string(),
            p["Architectures"][0].as_str().unwrap(),
            &env.to_string(),
        ],
    );
}

/// Memory, timeout, architectures, environment and code size of the function `name`.
fn function_configuration(name: &str) -> Value {
    boto3(
        "c=boto3.client('lambda',**kw).get_function_configuration(FunctionName=sys.argv[2])\n\
         print(json.dumps({'memory':c['MemorySize'],'timeout':c['Timeout'],'architectures':c['Architectures'],\
         'env':c['Environment']['Variables'],'codeSize':c['CodeSize']}))",
        &[name],
    )
}

/// `cargo lambda deploy --binary-name <binary> <function> [extra]` from the workspace root,
/// against moto, with the bootstraps under `target_dir`.
fn cargo_lambda_deploy(binary: &str, function: &str, target_dir: &Path, extra: &[&str]) {
    let out = Command::new(hubsync_tests::python::tool("cargo-lambda"))
        .args(["lambda", "deploy", "--binary-name", binary, function])
        .args(["--endpoint-url", &hubsync_tests::moto::moto().endpoint])
        .args(extra)
        .current_dir(root())
        .env("CARGO_TARGET_DIR", target_dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", target_dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", target_dir.join("no-aws-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("cargo-lambda runs");
    assert!(
        out.status.success(),
        "cargo lambda deploy {function} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The smallest ELF header that names `machine`: enough for cargo-lambda to read the
/// architecture of the bootstrap it uploads (moto never runs it).
fn elf_header(machine: u16) -> Vec<u8> {
    let mut h = b"\x7fELF\x02\x01\x01\x00".to_vec();
    h.extend([0; 8]);
    h.extend(2u16.to_le_bytes()); // e_type: executable
    h.extend(machine.to_le_bytes());
    h.extend(1u32.to_le_bytes()); // e_version
    h.extend(0x40_0000u64.to_le_bytes()); // e_entry
    h.extend([0; 8 + 8 + 4]); // e_phoff, e_shoff, e_flags
    h.extend(64u16.to_le_bytes()); // e_ehsize
    h.extend(56u16.to_le_bytes()); // e_phentsize
    h.extend([0; 2]); // e_phnum
    h.extend(64u16.to_le_bytes()); // e_shentsize
    h.extend([0; 4]); // e_shnum, e_shstrndx
    h
}

#[test]
fn cargo_lambda_deploy_updates_the_stack_function_and_keeps_what_the_template_set() {
    for (name, f) in functions() {
        // Arrange: the stack's function, and a new build of its binary.
        let binary = binary_of(f);
        let function_name = format!("deploy-test-{}", binary);
        let mut env: BTreeMap<String, String> = f["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), format!("value of {k} set by the stack")))
            .collect();
        env.insert("RUST_LOG".into(), "info,hubsync_bitbucket=debug".into());
        create_stack_function(&function_name, f, &serde_json::to_value(&env).unwrap());
        let stack = function_configuration(&function_name);
        let target_dir = tempfile::tempdir().unwrap();
        let bootstrap_dir = target_dir.path().join("lambda").join(binary);
        std::fs::create_dir_all(&bootstrap_dir).unwrap();
        let arch = architecture_of(&name, f);
        std::fs::write(bootstrap_dir.join("bootstrap"), elf_header(elf_machine(arch))).unwrap();

        // Act: the everyday update, with no other flag.
        cargo_lambda_deploy(binary, &function_name, target_dir.path(), &[]);
        let updated = function_configuration(&function_name);

        // Assert: new code; the template's memory, timeout, architecture and environment kept.
        assert_ne!(updated["codeSize"], stack["codeSize"], "{name}: the code was uploaded");
        assert_eq!(updated["memory"], f["Properties"]["MemorySize"], "{name}: memory");
        assert_eq!(updated["timeout"], f["Properties"]["Timeout"], "{name}: timeout");
        assert_eq!(
            updated["architectures"],
            serde_json::json!([arch]),
            "{name}: architecture"
        );
        assert_eq!(updated["env"], stack["env"], "{name}: environment");

        // Act: a temporary log level from an env file (quoted: the value holds `,` and `=`).
        let env_file = target_dir.path().join("debug.env");
        std::fs::write(&env_file, "RUST_LOG=\"debug,hyper=info\"\n").unwrap();
        cargo_lambda_deploy(
            binary,
            &function_name,
            target_dir.path(),
            &["--env-file", env_file.to_str().unwrap()],
        );

        // Assert: only RUST_LOG changed.
        let mut expected = stack["env"].clone();
        expected["RUST_LOG"] = "debug,hyper=info".into();
        assert_eq!(
            function_configuration(&function_name)["env"],
            expected,
            "{name}: merged"
        );
    }
}
