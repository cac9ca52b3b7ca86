//! A page's preview metadata: OpenGraph (`og:*`), Twitter cards and plain HTML as fallbacks,
//! and the page's oEmbed JSON link. Parsing never fails: a page without metadata gives an empty
//! [`PageMeta`].

use scraper::{Html, Selector};
use serde::Deserialize;
use url::Url;

/// Longest title kept, in characters.
pub const MAX_TITLE: usize = 256;
/// Longest description kept, in characters.
pub const MAX_DESCRIPTION: usize = 350;
/// Longest site name kept, in characters.
pub const MAX_SITE_NAME: usize = 100;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PageMeta {
    pub title: Option<String>,
    pub description: Option<String>,
    pub site_name: Option<String>,
    pub image: Option<ImageRef>,
    /// `<link rel="alternate" type="application/json+oembed" href=…>`, resolved.
    pub oembed: Option<Url>,
}

/// An image the page points at (not fetched yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    pub url: Url,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Reads the metadata of an HTML page found at `base` (for relative URLs).
pub fn parse_html(html: &str, base: &Url) -> PageMeta {
    let doc = Html::parse_document(html);
    let mut og = std::collections::HashMap::<String, String>::new();
    if let Ok(sel) = Selector::parse("meta") {
        for m in doc.select(&sel) {
            let el = m.value();
            let key = el.attr("property").or_else(|| el.attr("name"));
            let (Some(key), Some(content)) = (key, el.attr("content")) else {
                continue;
            };
            // The first of a repeated property wins (og:image may repeat; the first is the main).
            og.entry(key.trim().to_ascii_lowercase())
                .or_insert_with(|| content.to_owned());
        }
    }
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| og.get(*k).map(|v| clean(v)).filter(|v| !v.is_empty()))
    };
    let title_tag = Selector::parse("title").ok().and_then(|sel| {
        doc.select(&sel)
            .next()
            .map(|t| clean(&t.text().collect::<String>()))
            .filter(|t| !t.is_empty())
    });
    let image = get(&[
        "og:image:secure_url",
        "og:image",
        "og:image:url",
        "twitter:image",
        "twitter:image:src",
    ])
    .and_then(|u| base.join(&u).ok())
    .filter(|u| matches!(u.scheme(), "http" | "https"))
    .map(|url| ImageRef {
        url,
        width: get(&["og:image:width"]).and_then(|w| w.parse().ok()),
        height: get(&["og:image:height"]).and_then(|h| h.parse().ok()),
    });
    let oembed = Selector::parse("link[rel~=alternate]")
        .ok()
        .and_then(|sel| {
            doc.select(&sel).find_map(|l| {
                let ty = l.value().attr("type")?.trim().to_ascii_lowercase();
                if ty != "application/json+oembed" {
                    return None;
                }
                let u = base.join(l.value().attr("href")?.trim()).ok()?;
                matches!(u.scheme(), "http" | "https").then_some(u)
            })
        });
    PageMeta {
        title: get(&["og:title", "twitter:title"])
            .or(title_tag)
            .map(|t| truncate(&t, MAX_TITLE)),
        description: get(&["og:description", "twitter:description", "description"])
            .map(|d| truncate(&d, MAX_DESCRIPTION)),
        site_name: get(&["og:site_name", "application-name"]).map(|s| truncate(&s, MAX_SITE_NAME)),
        image,
        oembed,
    }
}

/// The parts of an oEmbed response (https://oembed.com) a preview uses.
#[derive(Debug, Default, Deserialize)]
pub struct OEmbed {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub author_name: Option<String>,
    pub provider_name: Option<String>,
    /// For `type: "photo"`: the photo itself.
    pub url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub thumbnail_width: Option<serde_json::Value>,
    pub thumbnail_height: Option<serde_json::Value>,
    pub width: Option<serde_json::Value>,
    pub height: Option<serde_json::Value>,
}

/// Parses oEmbed JSON; `None` when it is not an oEmbed object.
pub fn parse_oembed(json: &[u8]) -> Option<OEmbed> {
    serde_json::from_slice(json).ok()
}

/// oEmbed sizes are numbers, or numbers in strings on some providers.
fn dim(v: &Option<serde_json::Value>) -> Option<u32> {
    match v.as_ref()? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl PageMeta {
    /// Fills what the page lacks from its oEmbed data (the page's own metadata wins).
    pub fn merge_oembed(&mut self, o: &OEmbed, base: &Url) {
        if self.title.is_none() {
            self.title = o
                .title
                .as_deref()
                .map(clean)
                .filter(|t| !t.is_empty())
                .map(|t| truncate(&t, MAX_TITLE));
        }
        if self.description.is_none() {
            self.description = o
                .author_name
                .as_deref()
                .map(clean)
                .filter(|t| !t.is_empty())
                .map(|t| truncate(&t, MAX_DESCRIPTION));
        }
        if self.site_name.is_none() {
            self.site_name = o
                .provider_name
                .as_deref()
                .map(clean)
                .filter(|t| !t.is_empty())
                .map(|t| truncate(&t, MAX_SITE_NAME));
        }
        if self.image.is_none() {
            let photo = (o.kind.as_deref() == Some("photo"))
                .then(|| o.url.as_deref().map(|u| (u, dim(&o.width), dim(&o.height))))
                .flatten();
            let thumb = o
                .thumbnail_url
                .as_deref()
                .map(|u| (u, dim(&o.thumbnail_width), dim(&o.thumbnail_height)));
            self.image = photo.or(thumb).and_then(|(u, width, height)| {
                let url = base.join(u).ok()?;
                matches!(url.scheme(), "http" | "https").then_some(ImageRef { url, width, height })
            });
        }
    }

    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none()
    }
}

/// Whitespace collapsed, control characters dropped.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://site.example/a/page.html").unwrap()
    }

    #[test]
    fn opengraph_wins_over_fallbacks() {
        let html = r#"<!doctype html><html><head>
            <title>Plain title</title>
            <meta name="description" content="plain description">
            <meta property="og:title" content="  The   OG title ">
            <meta property="og:description" content="OG &amp; description">
            <meta property="og:site_name" content="Example Site">
            <meta property="og:image" content="/img/card.png">
            <meta property="og:image" content="/img/second.png">
            <meta property="og:image:width" content="1200">
            <meta property="og:image:height" content="630">
            <link rel="alternate" type="application/json+oembed" href="/oembed?u=1">
            </head><body><p>hi</p></body></html>"#;
        let m = parse_html(html, &base());
        assert_eq!(m.title.as_deref(), Some("The OG title"));
        assert_eq!(m.description.as_deref(), Some("OG & description"));
        assert_eq!(m.site_name.as_deref(), Some("Example Site"));
        let img = m.image.unwrap();
        assert_eq!(img.url.as_str(), "https://site.example/img/card.png");
        assert_eq!((img.width, img.height), (Some(1200), Some(630)));
        assert_eq!(
            m.oembed.unwrap().as_str(),
            "https://site.example/oembed?u=1"
        );
    }

    #[test]
    fn plain_html_and_garbage() {
        let m = parse_html(
            "<title>Only\n a title</title><meta name=description content=desc>",
            &base(),
        );
        assert_eq!(m.title.as_deref(), Some("Only a title"));
        assert_eq!(m.description.as_deref(), Some("desc"));
        assert!(m.image.is_none());
        let m = parse_html(
            "\u{0}<<<>>>&&&<meta property=og:image content='javascript:alert(1)'>",
            &base(),
        );
        assert!(m.is_empty());
        assert!(m.image.is_none(), "non-http image URLs are dropped");
        let long = format!("<meta property=og:title content='{}'>", "x".repeat(1000));
        let m = parse_html(&long, &base());
        assert_eq!(m.title.unwrap().chars().count(), MAX_TITLE);
    }

    #[test]
    fn oembed_fills_gaps() {
        let o = parse_oembed(
            br#"{"type":"video","title":"A video","author_name":"Someone","provider_name":"Tube",
                "thumbnail_url":"https://img.example/t.jpg","thumbnail_width":"480","thumbnail_height":360}"#,
        )
        .unwrap();
        let mut m = PageMeta::default();
        m.merge_oembed(&o, &base());
        assert_eq!(m.title.as_deref(), Some("A video"));
        assert_eq!(m.description.as_deref(), Some("Someone"));
        assert_eq!(m.site_name.as_deref(), Some("Tube"));
        let img = m.image.unwrap();
        assert_eq!(img.url.as_str(), "https://img.example/t.jpg");
        assert_eq!((img.width, img.height), (Some(480), Some(360)));
        assert!(parse_oembed(b"not json").is_none());
        assert!(parse_oembed(b"[1,2]").is_none());
    }
}
