//! Wake-ups through a change stream on the jobs collection (replica sets), reopened when it
//! fails (workers poll meanwhile).

use std::time::Duration;

use dogs_core::WakeUpSender;
use futures::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Watches for jobs that become due now until `stop` fires, waking `wake` on each, and after each
/// (re)opening of the stream, since events in between are not replayed.
pub(crate) async fn watch(jobs: Collection<Document>, wake: WakeUpSender, stop: CancellationToken) {
    let pipeline = [doc! { "$match": { "$or": [
        { "operationType": "insert", "fullDocument.state": "pending" },
        { "operationType": "update", "updateDescription.updatedFields.state": "pending" },
    ] } }];
    let mut pause = Duration::from_millis(100);
    loop {
        let opened = tokio::select! {
            _ = stop.cancelled() => return,
            opened = jobs.watch().pipeline(pipeline.clone()) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                warn!(error = %e, retry_in = ?pause, "MongoDB change stream cannot open; polling meanwhile");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        pause = Duration::from_millis(100);
        wake.notify();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                event = stream.next() => match event {
                    Some(Ok(_)) => wake.notify(),
                    Some(Err(e)) => {
                        warn!(error = %e, "MongoDB change stream failed; reopening");
                        break;
                    }
                    None => break,
                },
            }
        }
    }
}
