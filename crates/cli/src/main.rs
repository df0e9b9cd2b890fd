use clap::Parser;

#[global_allocator]
static ALLOCATOR: armorm_server::allocator::Allocator = mimalloc::MiMalloc;

use armorm_cli::args::{Cli, Command};

fn main() -> anyhow::Result<()> {
    armorm_server::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let (json_logs, otlp) = match &cli.command {
        Command::Serve(config) => (config.telemetry.json_logs, config.telemetry.otlp_endpoint.as_deref()),
        _ => (false, None),
    };
    let _telemetry = armorm_server::telemetry::init(json_logs, otlp)?;
    match cli.command {
        Command::Score(args) => armorm_cli::score::run(&args),
        Command::Healthcheck(args) => armorm_cli::healthcheck::run(&args),
        #[cfg(feature = "train")]
        Command::Train(args) => Ok(armorm_train::pipeline::run(&args)?),
        #[cfg(feature = "eval")]
        Command::Eval(args) => armorm_eval::run::run(&args).map(drop).map_err(Into::into),
        Command::Serve(config) => {
            let runtime = tokio::runtime::Runtime::new()?;
            let served = runtime.block_on(async {
                let server = armorm_server::serve::start(&config).await?;
                shutdown_signal().await;
                server.shutdown().await
            });
            // Tokenizer threads still running for dropped requests must not hold the exit.
            runtime.shutdown_background();
            served
        }
    }
}

/// SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
