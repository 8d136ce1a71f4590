//! `dogs dashboard`: serves the web dashboard of the store.

use std::io::Write;
use std::net::SocketAddr;

use crate::cli::{Cli, DashboardArgs};
use crate::exit::{CliError, CliResult, Exit};

/// Whether the dashboard may listen on `addr` with these settings: anything but a loopback
/// address opens it to the network, where its actions (retry, cancel, pause, ...) need a token,
/// or must be turned off with `--read-only`.
pub fn check_exposure(addr: SocketAddr, has_token: bool, read_only: bool) -> CliResult<()> {
    if addr.ip().is_loopback() || has_token || read_only {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "refusing to serve the dashboard on {addr} without --token or --read-only: it is not a loopback address, so its actions (retry, cancel, pause, ...) would be open to anyone on the network"
    )))
}

/// The address `listen` names (`IP:PORT`, or `HOST:PORT` resolved to its first address).
async fn resolve(listen: &str) -> CliResult<SocketAddr> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let unusable = |why: String| CliError::usage(format!("--listen {listen}: {why}"));
    tokio::net::lookup_host(listen)
        .await
        .map_err(|e| unusable(format!("not an address to listen on ({e}); give IP:PORT")))?
        .next()
        .ok_or_else(|| unusable("the host has no address".to_owned()))
}

pub(super) async fn run(cli: &Cli, args: &DashboardArgs) -> CliResult<()> {
    let addr = resolve(&args.listen).await?;
    let token = args.token.clone();
    if token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(CliError::usage("the dashboard token is empty"));
    }
    check_exposure(addr, token.is_some(), args.read_only)?;
    if !addr.ip().is_loopback() && token.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "dogs dashboard: warning: read-only, without a token, on {addr}: job params and errors are visible to anyone who can reach it"
        );
    }
    serve(cli, args, addr, token).await
}

#[cfg(feature = "dashboard")]
async fn serve(
    cli: &Cli,
    args: &DashboardArgs,
    addr: SocketAddr,
    token: Option<String>,
) -> CliResult<()> {
    use crate::output::{print, print_json};

    let ctx = super::Context::open(cli).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::new(Exit::Store, format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let url = format!("http://{bound}/");
    let mode = if args.read_only {
        "read-only"
    } else {
        "actions on"
    };
    if cli.json {
        print_json(&serde_json::json!({ "url": url, "read_only": args.read_only }))?;
    } else {
        print(&format!(
            "dogs dashboard: serving {url} ({mode}{}); Ctrl-C stops it",
            if token.is_some() {
                ", token required"
            } else {
                ""
            }
        ))?;
    }
    // The options may grow fields; those not set here keep their defaults.
    #[allow(clippy::needless_update)]
    let options = dogs_dashboard::DashboardOptions {
        read_only: args.read_only,
        token,
        ..Default::default()
    };
    tokio::select! {
        served = dogs_dashboard::serve(listener, ctx.store, options) => served.map_err(|e| {
            CliError::new(Exit::Store, format!("the dashboard stopped: {e}"))
        }),
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => {
                let _ = writeln!(std::io::stderr(), "dogs dashboard: stopped");
                Ok(())
            }
            Err(e) => Err(CliError::new(Exit::Store, format!("cannot listen for Ctrl-C: {e}"))),
        },
    }
}

#[cfg(not(feature = "dashboard"))]
async fn serve(
    _cli: &Cli,
    _args: &DashboardArgs,
    _addr: SocketAddr,
    _token: Option<String>,
) -> CliResult<()> {
    Err(CliError::new(
        Exit::Store,
        "this build of dogs has no dashboard: build dogs-cli with its `dashboard` feature",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_a_token() {
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(check_exposure(addr("127.0.0.1:9090"), false, false).is_ok());
        assert!(check_exposure(addr("[::1]:9090"), false, false).is_ok());
        let refused = check_exposure(addr("0.0.0.0:9090"), false, false).unwrap_err();
        assert_eq!(refused.exit, Exit::Usage);
        assert!(refused.message.contains("--token"), "{}", refused.message);
        assert!(check_exposure(addr("0.0.0.0:9090"), true, false).is_ok());
        assert!(check_exposure(addr("10.1.2.3:9090"), false, true).is_ok());
    }
}
