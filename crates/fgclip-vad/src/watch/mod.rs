//! Live sources (`fgclip watch`, in progress): the event logic of a scored stream
//! (`events.rs`: causal smoothing, events opened and closed). Decoding live inputs, batching
//! several sources into one tower call, status and clips come next.

pub mod events;
