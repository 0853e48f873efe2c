//! Peak memory of syncing one 32 MiB model (issue 11, goal 2: peak RSS at most twice the model
//! plus 32 MiB), and of a batch of four of them (the fetch budget shared by the whole invocation
//! must keep a batch of large models within the function's memory), with their sizes announced
//! (`Content-Length`) and without (chunked, so the budget learns a size only as the bytes come),
//! measured end to end: the Bitbucket Data Center simulator serves the models over loopback, the
//! real client fetches them, the sync recognises them and the SQLite store writes them.
//!
//! The simulator runs in a child process (this same binary, started with `sim-child`), so that
//! its copy of the models is not counted. The figure is this process's `VmHWM` (peak resident
//! set) from `/proc/self/status`, reset (`/proc/self/clear_refs`) just before the sync starts.
//! Linux only. `cargo bench -p hubsync-cli --bench peak_memory`; `-- --bytes N` for another size.
//! Under `cargo test` (no `--bench`) it syncs one 256 KiB model once.

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::bail;
use common::{ChildSim, Figure, MIB, SqliteSync, arg, is_bench_run, memory, reset_peak, serve_repo_with};
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, SimConfig};
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::ModelStore;
use hubsync_core::sync::{DEFAULT_MAX_MODEL_BYTES, NoProgress};

/// Large models in the batch figure.
const BATCH: usize = 4;

fn main() -> anyhow::Result<()> {
    // As the sync function and `hubsync` do at start-up.
    hubsync_bitbucket::give_large_bodies_back_to_the_os();
    let bench = is_bench_run();
    let bytes: u64 = match arg("--bytes") {
        Some(n) => n.parse()?,
        // Just under the cap: the generator writes at least the target, at most one entity more.
        None if bench => DEFAULT_MAX_MODEL_BYTES - MIB / 4,
        None => MIB / 4,
    };
    let count: usize = arg("--count").map(|n| n.parse()).transpose()?.unwrap_or(1);
    let chunked = std::env::args().any(|a| a == "--chunked");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("sim-child") {
        return runtime.block_on(serve_simulator(bytes, count, chunked));
    }
    runtime.block_on(async {
        let (model_bytes, peak, took) = measure(bytes, 1, false).await?;
        let goal = 2 * model_bytes + 32 * MIB;
        let mib = |n: u64| n as f64 / MIB as f64;
        Figure {
            figure: format!(
                "peak RSS, full sync of one {:.1} MiB model into SQLite ({:.2} s)",
                mib(model_bytes),
                took
            ),
            value: mib(peak),
            unit: "MiB",
            floor: Some("2 x model + 32 MiB".into()),
            floor_value: Some(mib(goal)),
            goal: Some("<= 1x (2 x model + 32 MiB)".into()),
            note: None,
        }
        .print();
        if bench {
            for chunked in [false, true] {
                let (model_bytes, peak, took) = measure(bytes, BATCH, chunked).await?;
                let goal = 2 * model_bytes + 32 * MIB;
                let sizes = if chunked {
                    "sizes not announced (chunked)"
                } else {
                    "sizes announced"
                };
                Figure {
                    figure: format!(
                        "peak RSS, full sync of {BATCH} models of {:.1} MiB at once, {sizes} ({:.2} s)",
                        mib(model_bytes),
                        took
                    ),
                    value: mib(peak),
                    unit: "MiB",
                    floor: Some("2 x one model + 32 MiB".into()),
                    floor_value: Some(mib(goal)),
                    goal: Some("<= 1x (the budget bounds the batch)".into()),
                    note: None,
                }
                .print();
            }
        }
        Ok(())
    })
}

/// The child: a simulator holding one repository with `count` models of `bytes` (sent without
/// `Content-Length` when `chunked`); prints `<base URL> <token> <head> <bytes of the largest
/// model>` and serves until its standard input closes.
async fn serve_simulator(bytes: u64, count: usize, chunked: bool) -> anyhow::Result<()> {
    let mut largest = 0;
    let mut ops = Vec::new();
    for i in 0..count {
        let model = generate_model(&ModelSpec {
            seed: 32 + i as u64,
            name: format!("Thirty-two {i}"),
            target_bytes: usize::try_from(bytes)?,
            ..ModelSpec::default()
        });
        largest = largest.max(model.len());
        ops.push(FileOp::write(format!("big-{i}.hck.json"), model));
    }
    let config = SimConfig {
        raw_content_length: !chunked,
        ..SimConfig::default()
    };
    serve_repo_with(config, ops, &[largest.to_string()]).await
}

/// Syncs `count` models of `bytes` (served without their length when `chunked`): the largest
/// model's size, the peak RSS and the seconds taken.
async fn measure(bytes: u64, count: usize, chunked: bool) -> anyhow::Result<(u64, u64, f64)> {
    let (bytes_arg, count_arg) = (bytes.to_string(), count.to_string());
    let mut args = vec!["sim-child", "--bytes", &bytes_arg, "--count", &count_arg];
    if chunked {
        args.push("--chunked");
    }
    let child = ChildSim::start(&args)?;
    let [base_url, token, _head, model_bytes] = child.fields.as_slice() else {
        bail!("the simulator child printed {:?}", child.fields);
    };
    let model_bytes: u64 = model_bytes.parse()?;
    let SqliteSync { hub, repo, worker, .. } = &SqliteSync::new(base_url, token).await?;

    reset_peak()?;
    let started = Instant::now();
    worker.sync_repo(repo, true, &NoProgress).await?;
    let took = started.elapsed();
    let (peak, _) = memory()?;
    child.stop()?;

    let stored = hub.list_models(repo).await?;
    if stored.len() != count || !stored.iter().all(|m| matches!(m.status, ModelStatus::Valid { .. })) {
        bail!("the models were not stored as valid models: {stored:?}");
    }
    Ok((model_bytes, peak, took.as_secs_f64()))
}
