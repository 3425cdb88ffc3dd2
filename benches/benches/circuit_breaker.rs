//! Placeholder: this bench is written by its crate's issue.

fn main() {}
