//! `bitbucket-sim`: runs the Bitbucket Data Center simulator with a sample repository of
//! Hackolade models, prints where it listens and its token, and serves until Ctrl-C.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use hubsync_bitbucket_sim::{SimConfig, Simulator, models};
use secrecy::{ExposeSecret, SecretString};

/// Run a Bitbucket Data Center simulator with a sample repository.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7990")]
    bind: SocketAddr,
    /// Access token to accept (random if not given). `Debug` does not print it.
    #[arg(long, env = "BITBUCKET_SIM_TOKEN", hide_env_values = true)]
    token: Option<SecretString>,
    /// Project key of the sample repository.
    #[arg(long, default_value = "MODELS")]
    project: String,
    /// Name of the sample repository.
    #[arg(long, default_value = "data-models")]
    repo: String,
    /// Largest page the server returns.
    #[arg(long, default_value_t = 1000)]
    max_page_size: u32,
    /// `page.max.changes`.
    #[arg(long, default_value_t = 1000)]
    max_changes: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let mut config = SimConfig {
        bind: args.bind,
        max_page_size: args.max_page_size,
        max_changes: args.max_changes,
        ..SimConfig::default()
    };
    if let Some(token) = args.token {
        config.token = token;
    }

    let sim = Simulator::start(config).await.context("starting the simulator")?;
    let repo = sim
        .create_repo(&args.project, &args.repo)
        .context("creating the sample repository")?;
    let push = repo
        .commit_files("main", models::sample_repository(), "Add sample models")
        .context("committing the sample repository")?;

    println!("base URL:   {}", sim.base_url());
    println!("token:      {}", sim.token().expose_secret());
    println!("repository: {}", sim.repo_api_url(&repo));
    println!("main:       {}", push.to_hash().unwrap_or("-"));
    println!("Ctrl-C to stop.");

    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_print_no_token() {
        let args = Args::try_parse_from(["bitbucket-sim", "--token", "BBDC-SECRET-123"]).unwrap();

        let printed = format!("{args:?}");

        assert!(!printed.contains("SECRET-"), "{printed}");
    }
}
