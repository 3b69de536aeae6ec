//! `aepiot-stream run --webhooks`: the pipeline ([`crate::processor`]) and the webhook service
//! ([`crate::webhook`]) side by side in one process, counting into one metrics registry, served
//! by the pipeline. When either stops, the other is stopped too, and an error of either is the
//! exit status.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::processor::{self, RunHooks};
use crate::webhook::{self, WebhookHooks};

/// Runs both until `shutdown` is cancelled or one of them stops; `listener` serves the shared
/// metrics (see [`crate::http::bind`]).
pub async fn run(
    config: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
    hooks: RunHooks,
) -> anyhow::Result<()> {
    config.validate_for_webhooks()?;
    let metrics = Metrics::new();
    let (pipeline_stop, webhooks_stop) = (shutdown.child_token(), shutdown.child_token());
    let mut pipeline = tokio::spawn(processor::run(
        config.clone(),
        listener,
        pipeline_stop.clone(),
        RunHooks {
            metrics: Some(metrics.clone()),
            ..hooks
        },
    ));
    let mut webhooks = tokio::spawn(webhook::run(
        config,
        webhooks_stop.clone(),
        WebhookHooks {
            metrics: Some(metrics),
            no_metrics_server: true,
        },
    ));
    let (p, w) = tokio::select! {
        p = &mut pipeline => { webhooks_stop.cancel(); (p, webhooks.await) }
        w = &mut webhooks => { pipeline_stop.cancel(); (pipeline.await, w) }
    };
    if let Ok(Err(e)) = &w {
        tracing::error!(error = %format!("{e:#}"), "webhook service stopped");
    }
    p??;
    w??;
    Ok(())
}
