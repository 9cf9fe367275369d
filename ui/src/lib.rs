//! `cairn-ui`: the web UI, hand-written HTML, CSS and JavaScript embedded in the binary, with no
//! build step and nothing loaded from the internet.
//!
//! **Role.** Holds the UI's files ([`ASSETS`]); the master serves [`INDEX`] at `/` and every
//! asset at `/ui/<name>`. The page reads everything it shows from `/graphql`: queries at the
//! URL's as-of point, the `timeline` of the log for time travel and replay, mutations for
//! actions, and the `events` subscription (graphql-transport-ws) to stay current.
//!
//! **Boundary.** No Rust dependencies and no knowledge of the API beyond the GraphQL schema the
//! scripts query; the HTTP routes live in the root binary.
//!
//! **Invariants** (tested below).
//! - Every file the page loads is one of [`ASSETS`], served from the binary.
//! - No asset names another origin: no CDN, web font or script from elsewhere.
//! - Text from the API enters the page as text (`textContent`), never as markup.

/// One file of the UI.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("../assets/", $name)),
        }
    };
}

/// The page served at `/`.
pub const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Every file under `/ui/`.
pub const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("views.js", "text/javascript; charset=utf-8"),
    asset!("gql.js", "text/javascript; charset=utf-8"),
    asset!("util.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The asset called `name`, if there is one.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every quoted `/ui/…` path and relative module import (`"./x.js"`) in `text`.
    fn references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for quote in ['"', '\''] {
            for part in text.split(quote).skip(1).step_by(2) {
                if let Some(name) = part.strip_prefix("/ui/") {
                    found.push(name.to_owned());
                } else if let Some(name) = part.strip_prefix("./") {
                    if part.ends_with(".js") {
                        found.push(name.to_owned());
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_file_the_page_loads_is_served_from_the_binary() {
        let mut seen = 0;
        for text in std::iter::once(INDEX.body).chain(ASSETS.iter().map(|a| a.body)) {
            for name in references(text) {
                assert!(
                    asset(&name).is_some(),
                    "{name} is referenced but not an asset"
                );
                seen += 1;
            }
        }
        // The page, its style, its icon and the four modules' imports.
        assert!(seen >= 6, "only {seen} references found");
        for a in ASSETS {
            assert!(
                INDEX.body.contains(&format!("/ui/{}", a.name))
                    || ASSETS
                        .iter()
                        .any(|b| b.body.contains(&format!("./{}", a.name))),
                "{} is never loaded",
                a.name
            );
        }
    }

    #[test]
    fn nothing_is_loaded_from_another_origin() {
        // The SVG namespace is a name, not a place anything is fetched from.
        const NAMESPACE: &str = "http://www.w3.org/2000/svg";
        for a in std::iter::once(&INDEX).chain(ASSETS) {
            let text = a.body.replace(NAMESPACE, "");
            for needle in [
                "http://",
                "https://",
                "url(//",
                "src=\"//",
                "href=\"//",
                "@import",
            ] {
                assert!(!text.contains(needle), "{} holds {needle:?}", a.name);
            }
        }
    }

    #[test]
    fn api_text_never_becomes_markup() {
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!a.body.contains(sink), "{} uses {sink}", a.name);
            }
        }
    }
}
