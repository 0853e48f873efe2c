//! `hubsync`: the command line of the Model Hub replication pipeline (the commands themselves
//! live in the `hubsync_cli` library, so tests drive them too).

use clap::{Parser, Subcommand};
#[cfg(feature = "demo")]
use hubsync_cli::demo;
use hubsync_cli::{admin, commands, config, deliveries, serve};

#[derive(Parser, Debug)]
#[command(
    name = "hubsync",
    version,
    about = "Replicates Hackolade models from Bitbucket Data Center into the Model Hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find, register, list and remove replicated repositories.
    #[command(subcommand)]
    Repos(commands::ReposCommand),
    /// Check or create the hub's webhook on Bitbucket, with the access token.
    #[command(subcommand)]
    Webhooks(admin::WebhooksCommand),
    /// Sync a registered repository now: the whole repository, `--recent` (from the cursor) or
    /// `--from COMMIT`; `--queue` hands it to the running pipeline; `--slice PERIOD` runs it in
    /// slices, each reported as it ends.
    Sync(commands::SyncArgs),
    /// List and read replicated models.
    #[command(subcommand)]
    Models(commands::ModelsCommand),
    /// The hub's delivery log, newest first: each webhook delivery's verdict and what its sync
    /// did (`deliveries show ID` for one in full).
    Deliveries(deliveries::DeliveriesArgs),
    /// Inspect the queue (local, or SQS on AWS) and redrive its dead letters.
    #[command(subcommand)]
    Queue(commands::QueueCommand),
    /// Create the queue, table and secret in a local AWS emulator (needs AWS_ENDPOINT_URL).
    Init(commands::InitArgs),
    /// Run the webhook endpoint, the queue and the sync worker as one local process.
    Serve(serve::ServeArgs),
    /// Show the whole flow against a simulated Bitbucket Data Center, with sample models.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

/// Logs to stderr, levels from `RUST_LOG`; by default `info` (the demo: `warn`, so its own
/// output reads cleanly).
fn init_terminal_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A batch of large models: each one's memory goes back to the OS once it is written.
    hubsync_bitbucket::give_large_bodies_back_to_the_os();
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let demo = matches!(
        &cli.command,
        Command::Demo(_) | Command::Serve(serve::ServeArgs { demo: true, .. })
    );
    #[cfg(not(feature = "demo"))]
    let demo = false;
    init_terminal_logs(if demo {
        "warn"
    } else {
        "info,aws_config=warn,aws_smithy_runtime=warn"
    });
    let result = match cli.command {
        Command::Repos(cmd) => commands::repos(cmd).await,
        Command::Webhooks(cmd) => admin::webhooks(cmd).await,
        Command::Sync(args) => commands::sync(args).await,
        Command::Models(cmd) => commands::models(cmd).await,
        Command::Queue(cmd) => commands::queue(cmd).await,
        Command::Deliveries(args) => deliveries::deliveries(args).await,
        Command::Init(args) => commands::init(args).await,
        // `serve --demo`: the demo starts the server itself, against its simulated Bitbucket.
        #[cfg(feature = "demo")]
        Command::Serve(serve::ServeArgs { demo: true, listen, .. }) => {
            demo::run(demo::DemoArgs {
                listen,
                keep_running: true,
                db: None,
            })
            .await
        }
        Command::Serve(args) => match config::LocalConfig::from_env() {
            Ok(local) => serve::run(args, local).await,
            Err(e) => Err(e),
        },
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
