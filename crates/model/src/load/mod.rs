//! Loading a checkpoint: where its files are (local or the Hub), its tensors, the compute dtype it
//! gets on this device, the memory that takes, and the options a load is asked for.

pub mod checkpoint;
pub mod dtype;
pub mod memory;
pub mod options;
pub mod weights;
