//! The dogs command line.

fn main() {}
