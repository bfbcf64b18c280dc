//! Tests of the agent core on virtual time: each is a table of inputs at given times and the
//! effects they must give.

mod admit;
mod harness;
mod latest;
mod stream;
mod tasks;
mod updates;
