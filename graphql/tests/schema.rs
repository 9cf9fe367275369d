//! The committed SDL is the schema: any change to the API shows up in review as a change to
//! `graphql/schema.graphql`. `CAIRN_UPDATE_GOLDEN=1 cargo test -p cairn-graphql` rewrites it.

use std::path::PathBuf;

#[test]
fn the_schema_matches_the_committed_sdl() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = cairn_graphql::sdl();
    if std::env::var_os("CAIRN_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "the GraphQL schema changed: review the change, then run \
         `CAIRN_UPDATE_GOLDEN=1 cargo test -p cairn-graphql` to update {}",
        path.display()
    );
}
