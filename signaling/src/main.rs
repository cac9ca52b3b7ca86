//! `confab`: serves chat, voice and the web client. With no arguments: http://127.0.0.1:3000
//! with a private PostgreSQL under ./data. `confab doctor` checks the configuration and what
//! it points at, prints the table and exits without serving.

use clap::Parser;
use confab_signaling::config::{Cli, Command, Config, Role};
use std::ffi::OsString;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse_from(doctor_last(std::env::args_os().collect()));
    let doctor = matches!(cli.command, Some(Command::Doctor));
    let config = match Config::load(cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("confab: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_env("CONFAB_LOG").unwrap_or_else(|_| {
        EnvFilter::new(if doctor {
            "warn,sqlx=off,async_nats=off"
        } else {
            "info,sqlx=warn,tower_http=info"
        })
    });
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    confab_signaling::process::raise_fd_limit();
    confab_signaling::process::return_large_allocations();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confab: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        if doctor {
            return run_doctor(&config).await;
        }
        match run(config).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("confab: {e:#}");
                eprintln!("(`confab doctor` with the same flags checks the whole configuration)");
                1
            }
        }
    });
    drop(runtime);
    std::process::exit(code);
}

/// `confab doctor --flags…` as well as `confab --flags… doctor`: clap wants the flags before
/// the subcommand, people write them after it.
fn doctor_last(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.get(1).is_some_and(|a| a == "doctor") {
        let doctor = args.remove(1);
        args.push(doctor);
    }
    args
}

async fn run_doctor(config: &Config) -> i32 {
    println!("Confab {} self-check:", confab_signaling::VERSION);
    let report = confab_signaling::doctor::doctor(config).await;
    print!("{}", report.table());
    if report.fatal() {
        println!("Confab cannot start like this: fix the FATAL lines above.");
        1
    } else {
        0
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    if config.role == Role::Media {
        let checked = config.clone();
        let running = confab_signaling::media::run::start_media_node(config).await?;
        let sfu = running.node.sfu();
        let report =
            confab_signaling::doctor::media_startup(&checked, sfu.tcp_addr(), sfu.ipv6_addr());
        report.log();
        println!(
            "Confab {} media node self-check:",
            confab_signaling::VERSION
        );
        print!("{}", report.table());
        println!(
            "Confab media node is running (metrics on http://{})",
            running.addr
        );
        wait_for_signal(|| {}).await;
        tracing::info!("draining and shutting down");
        running.shutdown().await;
        return Ok(());
    }
    let running = confab_signaling::start(config).await?;
    let report = confab_signaling::doctor::startup(&running).await;
    report.log();
    let scheme = if running.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("Confab {} self-check:", confab_signaling::VERSION);
    print!("{}", report.table());
    println!("Confab is running on {scheme}://{}", running.addr);
    wait_for_signal(|| match running.reload_tls() {
        Ok(true) => tracing::info!("TLS certificate reloaded"),
        Ok(false) => tracing::info!("SIGHUP: no TLS certificate to reload"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "TLS reload failed; still serving the previous certificate"),
    })
    .await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or SIGINT; calls `on_hangup` at each SIGHUP meanwhile.
async fn wait_for_signal(on_hangup: impl Fn()) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop Confab with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => on_hangup(),
        }
    }
}
