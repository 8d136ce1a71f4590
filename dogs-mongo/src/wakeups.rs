//! Wake-ups through a change stream on the jobs collection (replica sets), reopened when it
//! fails (workers poll meanwhile).

use dogs_core::{listen_with_reconnect, WakeUpSender};
use futures::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use tokio_util::sync::CancellationToken;

/// Watches for jobs that become due, or are stored or rescheduled for later (idle workers learn
/// their time from their next claim), until `stop` fires.
pub(crate) async fn watch(jobs: Collection<Document>, wake: WakeUpSender, stop: CancellationToken) {
    let waiting = doc! { "$in": ["pending", "scheduled"] };
    let pipeline = [doc! { "$match": { "$or": [
        { "operationType": "insert", "fullDocument.state": waiting.clone() },
        { "operationType": "update", "updateDescription.updatedFields.state": waiting },
    ] } }];
    let connect = || async {
        let stream = jobs.watch().pipeline(pipeline.clone()).await?;
        Ok::<_, mongodb::error::Error>(stream.map(|event| event.map(|_| ())))
    };
    listen_with_reconnect("MongoDB change stream", wake, stop, connect).await;
}
