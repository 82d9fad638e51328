//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the
//! files at compile time but cannot tell Cargo to watch the directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
