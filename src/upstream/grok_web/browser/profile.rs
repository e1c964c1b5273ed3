//! Which browser the grok.com traffic looks like. One profile decides the TLS hello, the HTTP/2
//! settings, header order and the default headers (User-Agent, client hints), so they cannot disagree:
//! Cloudflare compares all of them with the browser the User-Agent claims.
//!
//! Profile names are wreq-util's (`chrome_149`, `firefox_151`, `safari_26.4`, ...). A User-Agent set by
//! the operator (or handed back by a clearance service) picks the nearest profile of the same browser.

use http::HeaderValue;
use http::header::USER_AGENT;
use wreq_util::{Emulation, Platform, Profile};

/// A profile name split into browser family and version, e.g. `safari_ios_26.2` → (`safari_ios`, 26.2).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    profile: Profile,
    name: String,
    family: String,
    version: Vec<u32>,
}

fn profile_name(p: Profile) -> String {
    serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn parse_version(s: &str) -> Vec<u32> {
    s.split('.').map_while(|part| part.parse().ok()).collect()
}

fn catalogue() -> Vec<Named> {
    Profile::VARIANTS
        .iter()
        .filter_map(|&profile| {
            let name = profile_name(profile);
            let (family, version) = name.rsplit_once('_')?;
            Some(Named { profile, family: family.to_owned(), version: parse_version(version), name })
        })
        .collect()
}

/// Every profile name, for error messages and `--help`.
pub fn profile_names() -> Vec<String> {
    catalogue().into_iter().map(|n| n.name).collect()
}

/// The newest Chrome the library ships: the default, since Chrome is what most grok.com users run.
pub fn newest_chrome() -> String {
    catalogue()
        .into_iter()
        .filter(|n| n.family == "chrome")
        .max_by(|a, b| a.version.cmp(&b.version))
        .map(|n| n.name)
        .unwrap_or_else(|| "chrome".into())
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "windows" => Platform::Windows,
        "macos" | "mac" => Platform::MacOS,
        "linux" => Platform::Linux,
        "android" => Platform::Android,
        "ios" => Platform::IOS,
        other => return Err(format!("unknown grok.platform `{other}`; use windows, macos, linux, android or ios")),
    })
}

/// What a User-Agent string claims to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedBrowser {
    /// A wreq-util family: chrome, edge, opera, firefox, firefox_android, safari, safari_ios, safari_ipad.
    pub family: &'static str,
    pub version: Vec<u32>,
    pub platform: Platform,
}

fn version_after(ua: &str, marker: &str) -> Option<Vec<u32>> {
    let start = ua.find(marker)? + marker.len();
    let v = parse_version(ua[start..].split(|c: char| !(c.is_ascii_digit() || c == '.')).next()?);
    (!v.is_empty()).then_some(v)
}

/// Reads family, version and platform from a User-Agent; `None` for anything that is not a browser.
pub fn parse_user_agent(ua: &str) -> Option<ClaimedBrowser> {
    let platform = if ua.contains("iPhone") || ua.contains("iPad") {
        Platform::IOS
    } else if ua.contains("Android") {
        Platform::Android
    } else if ua.contains("Windows") {
        Platform::Windows
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        Platform::MacOS
    } else if ua.contains("Linux") || ua.contains("X11") {
        Platform::Linux
    } else {
        return None;
    };
    // Order matters: Edge and Opera also say Chrome, and every Chromium says Safari.
    let (family, version) = if let Some(v) = version_after(ua, "Edg/") {
        ("edge", v)
    } else if let Some(v) = version_after(ua, "OPR/") {
        ("opera", v)
    } else if let Some(v) = version_after(ua, "Firefox/") {
        (if platform == Platform::Android { "firefox_android" } else { "firefox" }, v)
    } else if let Some(v) = version_after(ua, "Chrome/").or_else(|| version_after(ua, "CriOS/")) {
        ("chrome", v)
    } else if ua.contains("Safari/") && ua.contains("AppleWebKit/") {
        let v = version_after(ua, "Version/")?;
        let family = match platform {
            Platform::IOS if ua.contains("iPad") => "safari_ipad",
            Platform::IOS => "safari_ios",
            _ => "safari",
        };
        (family, v)
    } else {
        return None;
    };
    Some(ClaimedBrowser { family, version, platform })
}

/// The browser identity every grok.com request of one token carries.
#[derive(Debug, Clone)]
pub struct BrowserProfile {
    pub name: String,
    pub profile: Profile,
    pub platform: Platform,
    pub user_agent: String,
    /// `sec-ch-ua`, `sec-ch-ua-mobile`, `sec-ch-ua-platform`: Chromium browsers only.
    pub client_hints: Option<[(&'static str, String); 3]>,
}

impl BrowserProfile {
    /// `grok.browser` (+ `grok.platform`), optionally overridden by a User-Agent the operator chose.
    pub fn select(browser: &str, platform: &str, user_agent: Option<&str>) -> Result<Self, String> {
        let platform = parse_platform(platform)?;
        let ua = user_agent.map(str::trim).filter(|s| !s.is_empty());
        match ua {
            Some(ua) => Self::for_user_agent(ua),
            None => Self::named(browser, platform),
        }
    }

    /// `name` empty (the config's default) is the newest Chrome.
    pub fn named(name: &str, platform: Platform) -> Result<Self, String> {
        let name = match name.trim() {
            "" => newest_chrome(),
            name => name.to_ascii_lowercase(),
        };
        let named = catalogue()
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| format!("unknown grok.browser `{name}`; known profiles: {}", profile_names().join(", ")))?;
        let emulation = Emulation::builder().profile(named.profile).platform(platform).build();
        let headers = wreq::IntoEmulation::into_emulation(emulation).headers;
        let text = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let user_agent = text(USER_AGENT.as_str()).ok_or_else(|| format!("profile {name} has no User-Agent"))?;
        let client_hints = match (text("sec-ch-ua"), text("sec-ch-ua-mobile"), text("sec-ch-ua-platform")) {
            (Some(a), Some(m), Some(p)) => Some([("sec-ch-ua", a), ("sec-ch-ua-mobile", m), ("sec-ch-ua-platform", p)]),
            _ => None,
        };
        Ok(Self { name: named.name, profile: named.profile, platform, user_agent, client_hints })
    }

    /// The profile nearest to what `ua` claims (same browser, closest version), sending `ua` itself.
    pub fn for_user_agent(ua: &str) -> Result<Self, String> {
        let claimed = parse_user_agent(ua).ok_or_else(|| {
            format!(
                "User-Agent `{ua}` is not one of a browser we can impersonate; set grok.browser instead, \
                 one of: {}",
                profile_names().join(", ")
            )
        })?;
        let all = catalogue();
        let nearest = nearest(&all, &claimed).ok_or_else(|| {
            format!(
                "no profile for {} (User-Agent `{ua}`); known profiles: {}",
                claimed.family,
                profile_names().join(", ")
            )
        })?;
        let mut p = Self::named(&nearest.name, claimed.platform)?;
        if nearest.version.first() != claimed.version.first() {
            tracing::warn!(
                user_agent = ua,
                profile = %p.name,
                "no profile of this browser version; using the nearest, whose TLS hello may differ"
            );
        }
        if let (Some(hints), Some(&have), Some(&want)) =
            (p.client_hints.as_mut(), nearest.version.first(), claimed.version.first())
            && have != want
        {
            hints[0].1 = hints[0].1.replace(&format!("v=\"{have}\""), &format!("v=\"{want}\""));
        }
        p.user_agent = ua.to_owned();
        Ok(p)
    }

    pub fn emulation(&self) -> Emulation {
        Emulation::builder().profile(self.profile).platform(self.platform).build()
    }

    /// Headers that must agree with the TLS hello, set on every request.
    pub fn identity_headers(&self) -> Vec<(&'static str, HeaderValue)> {
        let mut out = Vec::with_capacity(4);
        if let Ok(v) = HeaderValue::from_str(&self.user_agent) {
            out.push(("user-agent", v));
        }
        for (k, v) in self.client_hints.iter().flatten() {
            if let Ok(v) = HeaderValue::from_str(v) {
                out.push((*k, v));
            }
        }
        out
    }
}

fn nearest<'a>(all: &'a [Named], claimed: &ClaimedBrowser) -> Option<&'a Named> {
    let distance = |v: &[u32]| -> (u32, u32) {
        let at = |xs: &[u32], i: usize| xs.get(i).copied().unwrap_or(0);
        (at(v, 0).abs_diff(at(&claimed.version, 0)), at(v, 1).abs_diff(at(&claimed.version, 1)))
    };
    // On a tie the newer profile wins: browsers only add to their hello.
    all.iter()
        .filter(|n| n.family == claimed.family)
        .min_by(|a, b| distance(&a.version).cmp(&distance(&b.version)).then_with(|| b.version.cmp(&a.version)))
}

#[cfg(test)]
mod tests {
    use crate::upstream::grok_web::browser::profile::*;

    const CHROME_150_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36";

    /// The default is the newest Chrome wreq-util 3.0.0-rc.14 ships, and its User-Agent says so. When a
    /// wreq-util upgrade brings a newer one, the hello facts (docs/grok-transport.md "Why not Chrome
    /// 156's hello", src/sim/cloudflare.rs) must be measured again: this fails to say so.
    #[test]
    fn the_default_is_chrome_149_the_newest_the_library_presents() {
        assert_eq!(newest_chrome(), "chrome_149");
        let p = BrowserProfile::select("", "windows", None).unwrap();
        assert_eq!(p.name, "chrome_149");
        assert!(p.user_agent.contains("Chrome/149."), "{}", p.user_agent);
    }

    #[test]
    fn default_is_the_newest_chrome_and_carries_matching_hints() {
        let name = newest_chrome();
        assert!(name.starts_with("chrome_"), "{name}");
        let major: u32 = name.trim_start_matches("chrome_").parse().unwrap();
        assert!(major >= 149, "the library's newest Chrome is {major}");
        let p = BrowserProfile::select(&name, "windows", None).unwrap();
        assert!(p.user_agent.contains(&format!("Chrome/{major}.")), "{}", p.user_agent);
        // The config's default (empty) is this profile.
        assert_eq!(BrowserProfile::select("", "windows", None).unwrap().name, name);
        assert!(p.user_agent.contains("Windows NT 10.0"));
        let hints = p.client_hints.unwrap();
        assert!(hints[0].1.contains(&format!("v=\"{major}\"")), "{}", hints[0].1);
        assert_eq!(hints[2].1, "\"Windows\"");
    }

    #[test]
    fn user_agents_pick_the_nearest_profile_of_their_browser() {
        let p = BrowserProfile::for_user_agent(CHROME_150_WIN).unwrap();
        assert_eq!(p.name, newest_chrome());
        assert_eq!(p.user_agent, CHROME_150_WIN);
        assert!(p.client_hints.as_ref().unwrap()[0].1.contains("v=\"150\""));
        let ff = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:144.0) Gecko/20100101 Firefox/144.0";
        let p = BrowserProfile::for_user_agent(ff).unwrap();
        assert_eq!((p.name.as_str(), p.platform), ("firefox_144", Platform::Linux));
        assert!(p.client_hints.is_none(), "Firefox sends no client hints");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Edg/140.0.0.0";
        assert_eq!(BrowserProfile::for_user_agent(edge).unwrap().name, "edge_140");
        let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.3 Safari/605.1.15";
        assert_eq!(BrowserProfile::for_user_agent(safari).unwrap().name, "safari_26.3");
        let chrome_136 = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/136.0.0.0 Safari/537.36";
        let p = BrowserProfile::for_user_agent(chrome_136).unwrap();
        assert_eq!((p.name.as_str(), p.platform), ("chrome_136", Platform::MacOS));
    }

    #[test]
    fn unknown_profiles_and_non_browsers_are_startup_errors_listing_profiles() {
        let e = BrowserProfile::select("netscape_4", "windows", None).unwrap_err();
        assert!(e.contains("chrome_149") && e.contains("firefox_"), "{e}");
        let e = BrowserProfile::select("chrome_149", "windows", Some("curl/8.5.0")).unwrap_err();
        assert!(e.contains("curl/8.5.0") && e.contains("chrome_"), "{e}");
        assert!(BrowserProfile::select("chrome_149", "beos", None).is_err());
    }
}
