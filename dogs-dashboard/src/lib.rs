//! A web dashboard for dogs job stores.
