//! Everything between files on disk and a training batch: videos, annotations,
//! sampling and batching.

pub mod annotations;
pub mod batch;
pub mod encode;
pub mod frames;
pub mod npy;
pub mod resize;
pub mod sampling;
pub mod validate;
pub mod video;
