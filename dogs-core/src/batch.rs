//! What stores share to answer a batch call (`schedule_many`, `finish_many`) and to read many
//! records: one outcome per entry, in order, each entry checked first so a bad one fails alone;
//! and records that cannot be read skipped with a logged error.

use crate::error::{Error, ErrorKind, Result};

/// The outcomes of a batch call, one per entry, filled in as the store learns them.
#[derive(Debug)]
pub struct Outcomes<R> {
    slots: Vec<Option<Result<R>>>,
}

impl<R> Outcomes<R> {
    /// Checks every entry of `items` with `check`: a refused entry has its error at once, and the
    /// accepted ones are returned with their places in the batch.
    pub fn check<T>(items: Vec<T>, check: impl Fn(&T) -> Result<()>) -> (Self, Vec<(usize, T)>) {
        let mut slots = Vec::with_capacity(items.len());
        let mut accepted = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match check(&item) {
                Ok(()) => {
                    slots.push(None);
                    accepted.push((i, item));
                }
                Err(e) => slots.push(Some(Err(e))),
            }
        }
        (Outcomes { slots }, accepted)
    }

    /// Sets the outcome of the entry at `place`.
    pub fn set(&mut self, place: usize, outcome: Result<R>) {
        if let Some(slot) = self.slots.get_mut(place) {
            *slot = Some(outcome);
        }
    }

    /// Whether the entry at `place` has its outcome.
    pub fn is_set(&self, place: usize) -> bool {
        self.slots.get(place).is_some_and(Option::is_some)
    }

    /// The outcomes, in order; an entry left without one is a `Backend` error.
    pub fn finish(self) -> Vec<Result<R>> {
        self.slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(Error::new(
                        ErrorKind::Backend,
                        "the store gave this entry no outcome",
                    ))
                })
            })
            .collect()
    }
}

/// The records of `items` that could be read: an error is logged and the record skipped, so a
/// record written by hand or by another version never fails a listing; `None` (a record past
/// its retention, say) is skipped silently.
pub fn readable<T>(items: impl IntoIterator<Item = Result<Option<T>>>) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|item| match item {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(error = %e, "skipping a record that cannot be read");
                None
            }
        })
        .collect()
}
