//! Link previews for Confab (docs/link-previews.md): which links of a message get one
//! ([`links`]), an SSRF-safe fetcher ([`fetch`], vetting every address with [`vet`]), a page's
//! OpenGraph / oEmbed metadata ([`meta`]) and its image, checked by its bytes ([`image`]).
//!
//! This crate only fetches and parses: no SQL, no HTTP server. Caching, storage and serving
//! the images live in `confab-chat` and `confab-signaling`.
//!
//! ```text
//! Previewer::preview(url)
//!   ├─ Fetcher::fetch(url, HTML)        every hop: scheme/port → resolve → vet all → pinned connect
//!   ├─ meta::parse_html                 og:*, twitter:*, <title>, <meta name=description>
//!   ├─ Fetcher::fetch(oembed, JSON)     only when the page lacks a title or an image
//!   └─ Fetcher::fetch(og:image, any)    image::check sniffs PNG/JPEG/GIF/WebP and reads its size
//! ```

pub mod fetch;
pub mod image;
pub mod links;
pub mod meta;
pub mod vet;

pub use fetch::{FetchError, Fetcher, Limits};
pub use vet::Allowlist;

use fetch::{Oversize, Want};
use url::Url;

/// How much of an HTML page is read: the metadata is in its `<head>`.
pub const MAX_HTML_BYTES: usize = 512 * 1024;
/// Largest oEmbed document.
pub const MAX_OEMBED_BYTES: usize = 64 * 1024;

const HTML: Want = Want {
    accept: "text/html,application/xhtml+xml;q=0.9",
    types: &["text/html", "application/xhtml+xml"],
    max_bytes: MAX_HTML_BYTES,
    oversize: Oversize::Truncate,
};

const OEMBED: Want = Want {
    accept: "application/json",
    types: &["application/json", "text/json", "application/json+oembed"],
    max_bytes: MAX_OEMBED_BYTES,
    oversize: Oversize::Fail,
};

const IMAGE: Want = Want {
    accept: "image/png,image/jpeg,image/gif,image/webp",
    // The bytes decide (image::check), not the header.
    types: &[],
    max_bytes: image::MAX_BYTES,
    oversize: Oversize::Fail,
};

/// A link's preview, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The link as written in the message (not where redirects ended).
    pub url: Url,
    pub title: Option<String>,
    pub description: Option<String>,
    pub site_name: Option<String>,
    pub image: Option<image::Image>,
}

/// Builds previews with one fetcher.
#[derive(Debug, Clone)]
pub struct Previewer {
    fetcher: Fetcher,
}

impl Previewer {
    pub fn new(fetcher: Fetcher) -> Self {
        Previewer { fetcher }
    }

    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// The preview of `url`: `Ok(None)` when the page has nothing to show (no title and no
    /// description). An image that cannot be fetched or is not a served type leaves the
    /// preview without one rather than failing it.
    pub async fn preview(&self, url: &Url) -> Result<Option<Preview>, FetchError> {
        let page = self.fetcher.fetch(url, HTML).await?;
        let html = String::from_utf8_lossy(&page.body);
        let mut meta = meta::parse_html(&html, &page.url);
        if meta.title.is_none() || meta.image.is_none() {
            if let Some(oembed_url) = meta.oembed.clone() {
                match self.fetcher.fetch(&oembed_url, OEMBED).await {
                    Ok(doc) => {
                        if let Some(o) = meta::parse_oembed(&doc.body) {
                            meta.merge_oembed(&o, &doc.url);
                        }
                    }
                    Err(e) => tracing::debug!(url = %oembed_url, error = %e, "oEmbed fetch failed"),
                }
            }
        }
        if meta.is_empty() {
            return Ok(None);
        }
        let image = match &meta.image {
            Some(img) => match self.fetcher.fetch(&img.url, IMAGE).await {
                Ok(f) => image::check(f.body),
                Err(e) => {
                    tracing::debug!(url = %img.url, error = %e, "preview image fetch failed");
                    None
                }
            },
            None => None,
        };
        Ok(Some(Preview {
            url: url.clone(),
            title: meta.title,
            description: meta.description,
            site_name: meta.site_name,
            image,
        }))
    }
}
