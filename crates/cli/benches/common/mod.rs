//! What the end-to-end bench binaries share: whether this is a real run, the peak-memory probe,
//! a simulator in a child process, and the `hubsync-bench` result line `cargo xtask bench`
//! collects into one table.

#![allow(dead_code)] // each bench binary uses its own part of this module

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

pub const MIB: u64 = 1024 * 1024;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a bench binary
/// does one tiny iteration only, so that it keeps compiling and working within CI's time.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in bytes. Linux only.
pub fn memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/self/status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("a number")?.parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets `VmHWM` to the current resident set, so the next [`memory`] reads the peak since now.
pub fn reset_peak() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM (Linux 4.0 or later)")
}

/// A child process (this same binary started with `child_args`) that prints one line of
/// whitespace-separated fields when ready and runs until its standard input closes.
pub struct ChildSim {
    child: Child,
    pub fields: Vec<String>,
}

impl ChildSim {
    pub fn start(child_args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(child_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulator child")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if fields.is_empty() {
            bail!("the simulator child printed nothing");
        }
        Ok(Self { child, fields })
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

/// In the child: prints `fields` on one line, then blocks until standard input closes.
pub async fn serve_until_stdin_closes(fields: &[String]) -> anyhow::Result<()> {
    println!("{}", fields.join(" "));
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

/// One result, printed as `hubsync-bench {json}` for `cargo xtask bench`.
pub struct Figure<'a> {
    pub figure: String,
    pub value: f64,
    pub unit: &'a str,
    pub floor: Option<String>,
    pub floor_value: Option<f64>,
    pub goal: Option<String>,
    /// Why the goal is not met, when it is not (shown in the table).
    pub note: Option<String>,
}

impl Figure<'_> {
    /// Prints the line; the ratio is value / floor when there is a floor.
    pub fn print(&self) {
        let ratio = self.floor_value.filter(|f| *f > 0.0).map(|f| self.value / f);
        let line = serde_json::json!({
            "figure": self.figure, "value": round(self.value), "unit": self.unit,
            "floor": self.floor, "floor_value": self.floor_value.map(round),
            "ratio": ratio.map(round), "goal": self.goal, "note": self.note,
        });
        println!("hubsync-bench {line}");
    }
}

/// `x` to four significant digits.
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}
