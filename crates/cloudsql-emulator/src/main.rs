//! `cloudsql-emulator --config <file>`: runs a local Cloud SQL until stopped.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use cloudsql_emulator::{Emulator, FileConfig};

/// A local, faithful stand-in for Google Cloud SQL.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see the crate docs for its fields).
    #[arg(long)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config: FileConfig =
        toml::from_str(&text).with_context(|| format!("invalid config {}", args.config.display()))?;

    let emulator = match config.admin_api_addr {
        Some(addr) => Emulator::start_on(addr).await?,
        None => Emulator::start().await?,
    };
    let dir = config
        .credentials_dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("cloudsql-emulator-{}", std::process::id())));
    let accounts = if config.service_accounts.is_empty() {
        vec!["emulator@emulated-project.iam.gserviceaccount.com".to_owned()]
    } else {
        config.service_accounts
    };
    println!("admin_api_url = {}", emulator.admin_api_url());
    for (i, email) in accounts.iter().enumerate() {
        let path = emulator.write_service_account_file(email, &dir)?;
        if i == 0 {
            println!("credentials_file = {}", path.display());
        } else {
            println!("credentials_file.{email} = {}", path.display());
        }
    }
    for instance in config.instances {
        let instance = emulator.add_instance(instance).await?;
        println!(
            "instance {} public_ip={} private_ip={} psc={}",
            instance.connection_name(),
            instance.public_ip().map_or("-".into(), |ip| ip.to_string()),
            instance.private_ip().map_or("-".into(), |ip| ip.to_string()),
            instance
                .psc_dns_name()
                .zip(instance.psc_ip())
                .map_or("-".into(), |(name, ip)| format!("{name}->{ip}")),
        );
    }
    println!("ready; press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    emulator.shutdown();
    Ok(())
}
