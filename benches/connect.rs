//! Placeholder until the connect benchmark lands.
fn main() {}
