//! Wake-ups through a change stream on the jobs collection (replica sets), reopened when it
//! fails (workers poll meanwhile).

use dogs_core::{listen_with_reconnect, Notice, WakeUpSender, CANCELLED_ERROR};
use futures::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use tokio_util::sync::CancellationToken;

/// Watches for jobs that become due, or are stored or rescheduled for later (idle workers learn
/// their time from their next claim), until `stop` fires.
pub(crate) async fn watch(jobs: Collection<Document>, wake: WakeUpSender, stop: CancellationToken) {
    let waiting = doc! { "$in": ["pending", "scheduled"] };
    // A running job cancelled is failed with `CANCELLED_ERROR`: moved (deleted, then inserted)
    // in a transaction, or updated.
    let pipeline = [doc! { "$match": { "$or": [
        { "operationType": "insert", "fullDocument.state": waiting.clone() },
        { "operationType": "update", "updateDescription.updatedFields.state": waiting },
        { "operationType": "insert", "fullDocument.last_error": CANCELLED_ERROR },
        { "operationType": "update", "updateDescription.updatedFields.last_error": CANCELLED_ERROR },
    ] } }];
    let connect = || async {
        let stream = jobs.watch().pipeline(pipeline.clone()).await?;
        Ok::<_, mongodb::error::Error>(stream.map(|event| event.map(notice)))
    };
    listen_with_reconnect("MongoDB change stream", wake, stop, connect).await;
}

/// What a change event says: a job failed (only cancelled ones pass the filter) is a
/// cancellation; anything else may have made a job due.
fn notice(event: mongodb::change_stream::event::ChangeStreamEvent<Document>) -> Notice {
    let state = event
        .full_document
        .as_ref()
        .and_then(|d| d.get_str("state").ok().map(str::to_owned))
        .or_else(|| {
            event
                .update_description
                .as_ref()
                .and_then(|u| u.updated_fields.get_str("state").ok().map(str::to_owned))
        });
    match state.as_deref() {
        Some("failed") => Notice::Cancelled,
        _ => Notice::Due,
    }
}
