//! Live sources (`fgclip watch`, in progress): the event logic of a scored stream
//! (`events.rs`: causal smoothing, events opened and closed); live inputs are decoded by
//! `data/live.rs`. Batching several sources into one tower call, reconnection, status,
//! clips and the command come next.

pub mod events;
