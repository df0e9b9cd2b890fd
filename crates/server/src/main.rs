use clap::Parser;

use armorm_server::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json_logs = matches!(&cli.command, Command::Serve(args) if args.json_logs);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Score(args) => armorm_server::score_cmd::run(&args),
        Command::Healthcheck(args) => armorm_server::healthcheck::run(&args),
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(async {
            let server = armorm_server::serve::start(&args).await?;
            shutdown_signal().await;
            server.shutdown().await
        }),
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
