//! `cloudsql-emulator --config <file>`: runs a local Cloud SQL until stopped.

use std::path::PathBuf;

use clap::Parser;
use cloudsql_emulator::{Emulator, FileConfig};

/// A local, faithful stand-in for Google Cloud SQL.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see docs/emulator.md for its fields). Relative paths in it are
    /// relative to its own directory.
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
    let config = FileConfig::load(&args.config)?;

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
    println!("metadata_host = {}", emulator.metadata_host());
    println!("dns_addr = {}", emulator.dns_addr());
    if let Some(email) = &config.metadata.service_account {
        emulator.set_metadata_service_account(email);
    }
    if let Some(project) = &config.metadata.project_id {
        emulator.set_metadata_project_id(project);
    }
    for record in &config.dns_records {
        emulator.set_dns_record(record)?;
    }
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
