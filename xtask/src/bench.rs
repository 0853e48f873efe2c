//! `cargo xtask bench`: every benchmark of the workspace in one release run, and one markdown
//! table of what they measured (issue 11).
//!
//! It builds the release `webhook` and `sync` binaries (the cold-start bench runs them), then runs
//! `cargo bench --workspace --benches`: the criterion benches (their figures are read back from
//! `target/criterion/**/new/estimates.json`) and the end-to-end bench binaries, whose results are
//! the `hubsync-bench {json}` lines they print. Each row gives the figure, its floor or peer
//! measured in the same run, the ratio, the goal, and whether it is met or by how much it is not.
//! Everything else the benches print goes to standard error; the table goes to standard output,
//! after the machine it ran on and the date.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::Value;

/// One row of the table: the protocol's JSON line, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub figure: String,
    pub value: f64,
    pub unit: String,
    pub floor: Option<String>,
    pub floor_value: Option<f64>,
    pub ratio: Option<f64>,
    pub goal: Option<String>,
    pub note: Option<String>,
}

/// The criterion figures the table shows: (figure, benchmark, its floor, floor's name, goal).
/// A goal of `-` marks a figure shown to explain another; its note says what it explains.
const CRITERION_PAIRS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "webhook handler in-process, 1-change delivery (verify + parse + queue message), µs",
        "webhook_1_change/handler",
        "webhook_1_change/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "<= 2x floor",
    ),
    (
        "webhook handler in-process, 1,000-change delivery (verify + parse + queue message), µs",
        "webhook_1000_changes/handler",
        "webhook_1000_changes/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "<= 2x floor",
    ),
    (
        "webhook payload parse alone (its scanner), 1-change delivery, µs",
        "webhook_1_change/parse",
        "webhook_1_change/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "-",
    ),
    (
        "serde_json scan alone (IgnoredAny: validate and skip), 1-change delivery, µs",
        "webhook_1_change/serde_json_scan",
        "webhook_1_change/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "-",
    ),
    (
        "webhook payload parse alone (its scanner), 1,000-change delivery, µs",
        "webhook_1000_changes/parse",
        "webhook_1000_changes/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "-",
    ),
    (
        "serde_json scan alone (IgnoredAny: validate and skip), 1,000-change delivery, µs",
        "webhook_1000_changes/serde_json_scan",
        "webhook_1000_changes/hmac_sha256",
        "HMAC-SHA256 alone over the same body",
        "-",
    ),
];

/// What an explanatory criterion row (goal `-`) shows.
fn criterion_note(id: &str) -> &'static str {
    if id.ends_with("/serde_json_scan") {
        "the least any serde_json parse of this body costs: why the webhook has its own scanner"
    } else {
        "the handler's share spent reading the body"
    }
}

/// Reads a `hubsync-bench {json}` line; `None` for any other line.
pub fn parse_line(line: &str) -> Option<anyhow::Result<Row>> {
    let json = line.trim().strip_prefix("hubsync-bench ")?;
    Some(parse_json(json))
}

fn parse_json(json: &str) -> anyhow::Result<Row> {
    let v: Value = serde_json::from_str(json).with_context(|| format!("a hubsync-bench line: {json}"))?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let number = |k: &str| v.get(k).and_then(Value::as_f64);
    let value = number("value").with_context(|| format!("a value in {json}"))?;
    let floor_value = number("floor_value");
    Ok(Row {
        figure: text("figure").with_context(|| format!("a figure in {json}"))?,
        value,
        unit: text("unit").unwrap_or_default(),
        floor: text("floor"),
        floor_value,
        ratio: number("ratio").or_else(|| floor_value.filter(|f| *f > 0.0).map(|f| value / f)),
        goal: text("goal"),
        note: text("note"),
    })
}

/// Whether `row` meets its goal: `Some(true/false)`, or `None` when the goal is not a bound this
/// reads (`<= N x ...` bounds the ratio, `<= N unit` the value; `>=` bounds them from below).
pub fn verdict(row: &Row) -> Option<bool> {
    let goal = row.goal.as_deref()?.trim();
    let (at_most, goal) = match (goal.strip_prefix("<="), goal.strip_prefix(">=")) {
        (Some(rest), _) => (true, rest.trim_start()),
        (None, Some(rest)) => (false, rest.trim_start()),
        (None, None) => return None,
    };
    let digits: String = goal.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let bound: f64 = digits.parse().ok()?;
    let rest = goal[digits.len()..].trim_start();
    let measured = if rest.starts_with('x') { row.ratio? } else { row.value };
    Some(if at_most { measured <= bound } else { measured >= bound })
}

fn number(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| figure | value | floor or peer (same run) | ratio | goal | met? |\n|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let floor = match (&row.floor, row.floor_value) {
            (Some(name), Some(v)) => format!("{name}: {} {}", number(v), row.unit),
            (Some(name), None) => name.clone(),
            _ => "-".into(),
        };
        let ratio = row.ratio.map_or("-".into(), |r| format!("{}x", number(r)));
        let met = match verdict(row) {
            Some(true) => "met".to_owned(),
            Some(false) => format!(
                "**not met**{}",
                row.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default()
            ),
            None => row.note.clone().unwrap_or_else(|| "-".into()),
        };
        out.push_str(&format!(
            "| {} | {} {} | {} | {} | {} | {} |\n",
            row.figure,
            number(row.value),
            row.unit,
            floor,
            ratio,
            row.goal.as_deref().unwrap_or("-"),
            met
        ));
    }
    out
}

/// The median of a criterion benchmark, in nanoseconds.
fn criterion_median(target: &Path, id: &str) -> anyhow::Result<f64> {
    let path = target.join("criterion").join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text)?;
    v["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("a median in {}", path.display()))
}

/// Criterion's figures as rows (nanoseconds shown as microseconds).
fn criterion_rows(target: &Path) -> anyhow::Result<Vec<Row>> {
    CRITERION_PAIRS
        .iter()
        .map(|(figure, id, floor_id, floor, goal)| {
            let value = criterion_median(target, id)? / 1000.0;
            let floor_value = criterion_median(target, floor_id)? / 1000.0;
            Ok(Row {
                figure: (*figure).to_owned(),
                value,
                unit: "µs".into(),
                floor: Some((*floor).to_owned()),
                floor_value: Some(floor_value),
                ratio: Some(value / floor_value),
                goal: Some((*goal).to_owned()).filter(|g| g != "-"),
                note: (*goal == "-").then(|| criterion_note(id).to_owned()),
            })
        })
        .collect()
}

/// `nproc`, the CPU model and the memory of this machine, and today's date, in one line.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpus} CPUs (nproc), {model}, {mem_gib:.1} GiB memory; {date}")
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Builds, runs every bench, prints the table.
pub fn run(root: &Path, cargo: &str, path: std::ffi::OsString) -> anyhow::Result<()> {
    crate::run(
        Command::new(cargo)
            .args(["build", "--release", "--workspace", "--bin", "webhook", "--bin", "sync"])
            .current_dir(root),
    )?;
    let mut cmd = Command::new(cargo);
    cmd.args(["bench", "--workspace", "--benches"])
        .current_dir(root)
        .env("PATH", path)
        .stdout(Stdio::piped());
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd.spawn().with_context(|| format!("could not start {cmd:?}"))?;
    let mut rows = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            eprintln!("{line}");
            if let Some(row) = parse_line(&line) {
                rows.push(row?);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    let mut all = criterion_rows(&target_dir(root))?;
    all.extend(rows);
    println!("Machine: {}\n", machine());
    print!("{}", table(&all));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_line_becomes_a_row_with_its_ratio() {
        let row = parse_line(r#"hubsync-bench {"figure": "sync", "value": 5.9, "unit": "s", "floor": "download", "floor_value": 4.3, "ratio": null, "goal": "<= 1.1x floor"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(row.figure, "sync");
        assert!((row.ratio.unwrap() - 5.9 / 4.3).abs() < 1e-9);
        assert_eq!(verdict(&row), Some(false));
        assert!(parse_line("Benchmarking webhook: Warming up").is_none());
    }

    #[test]
    fn goals_bound_the_ratio_or_the_value() {
        let row = |value, ratio: Option<f64>, goal: &str| Row {
            figure: "f".into(),
            value,
            unit: "MiB".into(),
            floor: None,
            floor_value: None,
            ratio,
            goal: Some(goal.into()),
            note: None,
        };
        assert_eq!(verdict(&row(40.0, None, "<= 64 MiB")), Some(true));
        assert_eq!(verdict(&row(70.0, None, "<= 64 MiB")), Some(false));
        assert_eq!(verdict(&row(1.0, Some(0.05), "<= 0.1x peer")), Some(true));
        assert_eq!(verdict(&row(1.0, Some(1.2), "<= 1.1x floor")), Some(false));
        assert_eq!(verdict(&row(2.0, None, ">= 2")), Some(true));
        assert_eq!(verdict(&row(1.0, None, ">= 2")), Some(false));
        assert_eq!(verdict(&row(1.0, None, "as small as possible")), None);
    }

    #[test]
    fn the_table_has_one_row_per_figure_and_says_what_is_not_met() {
        let rows = vec![
            parse_json(r#"{"figure": "a", "value": 1, "unit": "s", "floor": "f", "floor_value": 2, "goal": "<= 1.1x floor"}"#).unwrap(),
            parse_json(r#"{"figure": "b", "value": 3, "unit": "s", "floor": "f", "floor_value": 2, "goal": "<= 1.1x floor", "note": "why"}"#).unwrap(),
        ];
        let text = table(&rows);
        assert_eq!(text.lines().count(), 4);
        assert!(
            text.contains("| a | 1.00 s | f: 2.00 s | 0.500x | <= 1.1x floor | met |"),
            "{text}"
        );
        assert!(text.contains("**not met**: why"), "{text}");
    }
}
