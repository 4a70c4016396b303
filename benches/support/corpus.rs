//! A generated, deterministic HAProxy log corpus for the benches and the load generator.
//!
//! The same seed always gives the same lines, byte for byte, so a number measured today can
//! be compared with one measured on an older commit. The traffic imitates a busy HAProxy 2.6
//! site rather than a test loop:
//!
//! - a TLS frontend (`fe_https~`, with `{host|user-agent}` captures and HTTP/2 absolute
//!   URIs), a plain-HTTP frontend that mostly redirects (`<NOSRV>`, `LR--`, `-1` timers), an
//!   internal API frontend, and a few TCP frontends logging in `tcplog`;
//! - about 300 routes (API collections and items with numeric ids, pages, static files,
//!   health checks, scanner probes), chosen with a Zipf-like popularity;
//! - mostly 2xx, some 3xx/4xx/5xx, client aborts (`-1` status), server timeouts and
//!   connection failures with their `-1` timers and termination states;
//! - IPv4 and IPv6 clients, realistic timer, size and connection-count distributions.
//!
//! Every line it writes is a traffic line the exporter counts: none is a notice or a
//! rejection, so "lines sent" and "lines counted" can be compared directly.

// Each bench and the load generator use a different part of this module.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;

/// SplitMix64: tiny, fast, and the same on every platform (no `rand` needed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index into `weights`, each chosen in proportion to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return i;
            }
            x -= u64::from(w);
        }
        weights.len() - 1
    }

    /// Roughly log-uniform in `lo..=hi`: many small values, a long tail.
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo.max(1)) as f64, (hi.max(1)) as f64);
        let v = (l.ln() + self.unit() * (h.ln() - l.ln())).exp();
        (v as u64).clamp(lo, hi)
    }
}

/// A discrete distribution sampled by binary search over cumulative weights.
#[derive(Debug, Clone)]
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// Item `k` (0-based) has weight `1 / (k + 1)^s`.
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// The syslog header in front of each line: the shapes HAProxy 2.6 sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// HAProxy's default ("local"): `<134>Nov 25 10:00:00 haproxy[1234]: `.
    Local,
    /// `format rfc3164`: `<134>Nov 25 10:00:00 lb1 haproxy[1234]: `.
    Rfc3164,
    /// `format rfc5424`: `<134>1 2026-11-25T10:00:00.123456+00:00 lb1 haproxy 1234 - - `.
    Rfc5424,
    /// `format short`: `<6>`.
    Short,
    /// `format raw`: nothing.
    Raw,
}

/// The value called `name` in a table of (value, name) pairs.
fn from_name<T: Copy>(table: &[(T, &'static str)], name: &str) -> Option<T> {
    table.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
}

/// The name of `value` in a table of (value, name) pairs.
fn name_of<T: PartialEq>(table: &[(T, &'static str)], value: T) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("?", |(_, n)| n)
}

impl Header {
    pub const ALL: [(Header, &'static str); 5] = [
        (Header::Local, "local"),
        (Header::Rfc3164, "rfc3164"),
        (Header::Rfc5424, "rfc5424"),
        (Header::Short, "short"),
        (Header::Raw, "raw"),
    ];

    pub fn from_name(name: &str) -> Option<Header> {
        from_name(&Header::ALL, name)
    }

    pub fn name(self) -> &'static str {
        name_of(&Header::ALL, self)
    }
}

/// The layout of the log entry after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `option httplog`, with `option tcplog` lines from the TCP frontends mixed in (the
    /// exporter's default configuration reads both).
    Httplog,
    /// `option tcplog` only.
    Tcplog,
    /// `option httplog clf` (`HLE_LOG_FORMAT=clf`).
    Clf,
    /// An operator's `log-format` ([`CUSTOM_FORMAT`]).
    Custom,
    /// A hand-written JSON `log-format` ([`JSON_FORMAT`]).
    Json,
}

impl Layout {
    pub const ALL: [(Layout, &'static str); 5] = [
        (Layout::Httplog, "httplog"),
        (Layout::Tcplog, "tcplog"),
        (Layout::Clf, "clf"),
        (Layout::Custom, "custom"),
        (Layout::Json, "json"),
    ];

    pub fn from_name(name: &str) -> Option<Layout> {
        from_name(&Layout::ALL, name)
    }

    pub fn name(self) -> &'static str {
        name_of(&Layout::ALL, self)
    }

    /// The value of `HLE_LOG_FORMAT` that reads this layout.
    pub fn log_format_env(self) -> &'static str {
        match self {
            Layout::Httplog => "httplog",
            Layout::Tcplog => "tcplog",
            Layout::Clf => "clf",
            Layout::Custom => CUSTOM_FORMAT,
            Layout::Json => JSON_FORMAT,
        }
    }
}

/// The custom layout, as written after `log-format` in haproxy.cfg.
pub const CUSTOM_FORMAT: &str = "\"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq m=%HM p=%HPO ua=%{+Q}[var(txn.ua)]\"";

/// The JSON layout, as written after `log-format` in haproxy.cfg.
pub const JSON_FORMAT: &str = r#"'{"ci":"%ci","cp":%cp,"tr":"%tr","ft":"%ft","b":"%b","s":"%s","TR":%TR,"Tw":%Tw,"Tc":%Tc,"Tr":%Tr,"Ta":%Ta,"ST":%ST,"B":%B,"ts":"%tsc","m":"%HM","u":"%HU","v":"%HV"}'"#;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub header: Header,
    pub layout: Layout,
    /// Share of `tcplog` lines in the `Httplog` layout.
    pub tcp_share: f64,
    /// Numeric ids per route that has one (`/api/v1/users/17`), so the number of distinct
    /// paths is about `routes with an id × path_ids + other routes`.
    pub path_ids: u64,
    /// Simulated requests per second: how fast the timestamps advance.
    pub clock_rate: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 1,
            header: Header::Local,
            layout: Layout::Httplog,
            tcp_share: 0.03,
            path_ids: 10,
            clock_rate: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Api,
    Page,
    Static,
    Health,
    Scanner,
}

/// A URL template: `prefix` + optional numeric id + `suffix`.
#[derive(Debug, Clone)]
struct Route {
    prefix: String,
    suffix: String,
    has_id: bool,
    class: Class,
    /// Index into `Generator::backends`.
    backend: usize,
    /// Methods and their weights.
    methods: &'static [(&'static str, u32)],
}

#[derive(Debug, Clone)]
struct Backend {
    name: &'static str,
    servers: Vec<String>,
}

const READ_METHODS: &[(&str, u32)] = &[("GET", 96), ("HEAD", 4)];
const COLLECTION_METHODS: &[(&str, u32)] = &[("GET", 80), ("POST", 17), ("OPTIONS", 3)];
const ITEM_METHODS: &[(&str, u32)] = &[
    ("GET", 80),
    ("PUT", 7),
    ("PATCH", 4),
    ("DELETE", 5),
    ("OPTIONS", 4),
];
const FORM_METHODS: &[(&str, u32)] = &[("GET", 70), ("POST", 30)];

const RESOURCES: &[&str] = &[
    "users",
    "orders",
    "products",
    "carts",
    "payments",
    "invoices",
    "sessions",
    "reviews",
    "categories",
    "inventory",
    "shipments",
    "coupons",
    "notifications",
    "messages",
    "accounts",
    "addresses",
    "subscriptions",
    "plans",
    "reports",
    "events",
    "tokens",
    "teams",
    "projects",
    "tasks",
    "comments",
    "files",
    "images",
    "tags",
    "settings",
    "webhooks",
];
const SUB_RESOURCES: &[&str] = &["items", "history", "comments", "status"];
const PAGES: &[&str] = &[
    "/",
    "/login",
    "/logout",
    "/signup",
    "/cart",
    "/checkout",
    "/account",
    "/account/orders",
    "/account/settings",
    "/search",
    "/about",
    "/contact",
    "/help",
    "/pricing",
    "/blog",
    "/careers",
    "/terms",
    "/privacy",
];
const ID_PAGES: &[&str] = &["/products/", "/category/", "/blog/posts/", "/orders/"];
const STATIC: &[&str] = &[
    "/favicon.ico",
    "/robots.txt",
    "/sitemap.xml",
    "/manifest.json",
    "/static/js/app.3f9a1c.js",
    "/static/js/vendor.77b2e0.js",
    "/static/js/runtime.0c1d2e.js",
    "/static/css/app.9e8d7c.css",
    "/static/css/print.1a2b3c.css",
    "/static/fonts/inter-regular.woff2",
    "/static/fonts/inter-bold.woff2",
    "/static/img/logo.svg",
    "/static/img/hero.webp",
    "/static/img/sprite.png",
    "/apple-touch-icon.png",
];
const ID_STATIC: &[(&str, &str)] = &[
    ("/img/products/", ".jpg"),
    ("/img/products/thumb/", ".webp"),
    ("/img/avatars/", ".png"),
    ("/media/docs/", ".pdf"),
];
const HEALTH: &[&str] = &["/healthz", "/readyz", "/-/status"];
const SCANNER: &[&str] = &[
    "/wp-login.php",
    "/.env",
    "/.git/config",
    "/phpmyadmin/index.php",
    "/admin/config.php",
    "/xmlrpc.php",
    "/server-status",
    "/cgi-bin/luci",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/actuator/health",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KH",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebK",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHT",
    "curl/8.4.0",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Go-http-client/2.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
const SEARCH_TERMS: &[&str] = &["shoes", "red+dress", "laptop", "usb-c", "gift", "sale"];

/// One request (or TCP session) before it is written in some layout.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub tcp: bool,
    pub client_ip: String,
    pub client_port: u16,
    /// Microseconds since midnight when the connection was accepted.
    pub accept_us: u64,
    /// `%ft` as logged (`~` for TLS).
    pub frontend: &'static str,
    pub backend: String,
    pub server: String,
    /// `TR/Tw/Tc/Tr/Ta` (httplog) or `-/Tw/Tc/-/Tt` (tcplog); `-1` where HAProxy logs it.
    pub timers: [i64; 5],
    /// `-1` for a client that left before the response.
    pub status: i32,
    pub bytes: u64,
    /// `%tsc` (4 characters) or `%ts` (2).
    pub termination: &'static str,
    pub conns: [u64; 5],
    pub redispatched: bool,
    pub queues: [u64; 2],
    /// `{host|user-agent}`, on the TLS frontend only.
    pub capture: Option<(&'static str, &'static str)>,
    pub badreq: bool,
    pub method: &'static str,
    /// The URI as logged: origin form, or absolute for HTTP/2.
    pub uri: String,
    pub version: &'static str,
}

/// Writes an endless, deterministic stream of log lines.
#[derive(Debug, Clone)]
pub struct Generator {
    options: Options,
    rng: Rng,
    clock_us: u64,
    routes: Vec<Route>,
    id_popularity: Zipf,
    backends: Vec<Backend>,
    ipv4: Vec<String>,
    ipv4_internal: Vec<String>,
    ipv6: Vec<String>,
    /// Indices into `routes`, by frontend: (TLS site, API frontend).
    site_routes: Vec<usize>,
    api_routes: Vec<usize>,
    site_popularity: Zipf,
    api_popularity: Zipf,
}

const BE_WEB: usize = 0;
const BE_STATIC: usize = 1;
const BE_API: usize = 2;
const BE_AUTH: usize = 3;
const BE_SEARCH: usize = 4;
const BE_PAYMENTS: usize = 5;
const BE_REDIS: usize = 6;
const BE_PG: usize = 7;

/// Midnight to 10:00, when the simulated day starts.
const START_US: u64 = 10 * 3600 * 1_000_000;

impl Generator {
    pub fn new(options: Options) -> Generator {
        let mut rng = Rng::new(options.seed);
        let backend = |name: &'static str, prefix: &str, n: usize| Backend {
            name,
            servers: (1..=n).map(|i| format!("{prefix}{i}")).collect(),
        };
        let backends = vec![
            backend("be_web", "web", 6),
            backend("be_static", "static", 3),
            backend("be_api", "api", 8),
            backend("be_auth", "auth", 2),
            backend("be_search", "search", 4),
            backend("be_payments", "pay", 3),
            backend("be_redis", "redis", 3),
            backend("be_pg", "pg", 2),
        ];

        let mut routes = Vec::new();
        let mut route = |prefix: String,
                         suffix: &str,
                         has_id: bool,
                         class: Class,
                         backend: usize,
                         methods: &'static [(&'static str, u32)]| {
            routes.push(Route {
                prefix,
                suffix: suffix.to_string(),
                has_id,
                class,
                backend,
                methods,
            })
        };
        for version in ["/api/v1/", "/api/v2/"] {
            for (i, resource) in RESOURCES.iter().enumerate() {
                let backend = match *resource {
                    "sessions" | "tokens" | "accounts" => BE_AUTH,
                    "payments" | "invoices" | "subscriptions" => BE_PAYMENTS,
                    _ => BE_API,
                };
                let base = format!("{version}{resource}");
                route(
                    base.clone(),
                    "",
                    false,
                    Class::Api,
                    backend,
                    COLLECTION_METHODS,
                );
                route(
                    format!("{base}/"),
                    "",
                    true,
                    Class::Api,
                    backend,
                    ITEM_METHODS,
                );
                // Each resource has two of the sub-resources.
                for sub in [SUB_RESOURCES[i % 4], SUB_RESOURCES[(i + 1) % 4]] {
                    route(
                        format!("{base}/"),
                        &format!("/{sub}"),
                        true,
                        Class::Api,
                        backend,
                        COLLECTION_METHODS,
                    );
                }
            }
            route(
                format!("{version}search"),
                "",
                false,
                Class::Api,
                BE_SEARCH,
                READ_METHODS,
            );
        }
        for page in PAGES {
            let methods = match *page {
                "/login" | "/signup" | "/checkout" | "/contact" => FORM_METHODS,
                _ => READ_METHODS,
            };
            let backend = if *page == "/search" {
                BE_SEARCH
            } else {
                BE_WEB
            };
            route(page.to_string(), "", false, Class::Page, backend, methods);
        }
        for page in ID_PAGES {
            route(
                page.to_string(),
                "",
                true,
                Class::Page,
                BE_WEB,
                READ_METHODS,
            );
        }
        for file in STATIC {
            route(
                file.to_string(),
                "",
                false,
                Class::Static,
                BE_STATIC,
                READ_METHODS,
            );
        }
        for (dir, ext) in ID_STATIC {
            route(
                dir.to_string(),
                ext,
                true,
                Class::Static,
                BE_STATIC,
                READ_METHODS,
            );
        }
        for path in HEALTH {
            route(
                path.to_string(),
                "",
                false,
                Class::Health,
                BE_WEB,
                &[("GET", 1)],
            );
        }
        for path in SCANNER {
            route(
                path.to_string(),
                "",
                false,
                Class::Scanner,
                BE_WEB,
                &[("GET", 9), ("POST", 1)],
            );
        }

        // Shuffle the popularity ranks so that the most popular routes are a mix of
        // classes, not all API collections.
        let mut order: Vec<usize> = (0..routes.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let site_routes: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&r| routes[r].class != Class::Health)
            .collect();
        let api_routes: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&r| routes[r].class == Class::Api)
            .collect();

        let ipv4 = (0..5000)
            .map(|_| {
                format!(
                    "{}.{}.{}.{}",
                    rng.range(1, 223),
                    rng.below(256),
                    rng.below(256),
                    rng.range(1, 254)
                )
            })
            .collect();
        let ipv4_internal = (0..200)
            .map(|_| {
                format!(
                    "10.{}.{}.{}",
                    rng.below(4),
                    rng.below(256),
                    rng.range(1, 254)
                )
            })
            .collect();
        let ipv6 = (0..1000)
            .map(|_| {
                format!(
                    "2001:db8:{:x}:{:x}::{:x}",
                    rng.below(0x10000),
                    rng.below(0x10000),
                    rng.range(1, 0xffff)
                )
            })
            .collect();

        Generator {
            id_popularity: Zipf::new(options.path_ids.max(1) as usize, 1.1),
            site_popularity: Zipf::new(site_routes.len(), 1.0),
            api_popularity: Zipf::new(api_routes.len(), 0.9),
            options,
            rng,
            clock_us: START_US,
            routes,
            backends,
            ipv4,
            ipv4_internal,
            ipv6,
            site_routes,
            api_routes,
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The next request.
    pub fn request(&mut self) -> Request {
        let step = 2_000_000 / self.options.clock_rate.max(1);
        self.clock_us += self.rng.range(0, step);
        let tcp = match self.options.layout {
            Layout::Tcplog => true,
            Layout::Httplog => self.rng.chance(self.options.tcp_share),
            _ => false,
        };
        let mut req = if tcp {
            self.tcp_session()
        } else {
            self.http_request()
        };
        req.accept_us = self.clock_us;
        req
    }

    /// Appends the next line (without a newline) to `out`.
    pub fn write_line(&mut self, out: &mut Vec<u8>) {
        let req = self.request();
        write_header(self.options.header, &req, out);
        match self.options.layout {
            Layout::Httplog | Layout::Tcplog => write_haproxy(&req, out),
            Layout::Clf => write_clf(&req, out),
            Layout::Custom => write_custom(&req, out),
            Layout::Json => write_json(&req, out),
        }
    }

    /// The next `n` lines, each without a newline.
    pub fn lines(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut line = Vec::with_capacity(256);
                self.write_line(&mut line);
                line
            })
            .collect()
    }

    fn client(&mut self, internal: bool, ipv6_share: f64) -> (String, u16) {
        let ip = if internal {
            self.rng.pick(&self.ipv4_internal).clone()
        } else if self.rng.chance(ipv6_share) {
            self.rng.pick(&self.ipv6).clone()
        } else {
            self.rng.pick(&self.ipv4).clone()
        };
        (ip, self.rng.range(1024, 65535) as u16)
    }

    fn conns(&mut self) -> [u64; 5] {
        let ac = self.rng.range(200, 3000);
        let fc = self.rng.range(ac / 3, ac);
        let bc = self.rng.range(1, fc / 4 + 1);
        let sc = self.rng.range(0, bc / 4 + 1);
        [ac, fc, bc, sc, 0]
    }

    fn tcp_session(&mut self) -> Request {
        let (frontend, backend) = if self.rng.chance(0.7) {
            ("fe_redis", BE_REDIS)
        } else {
            ("fe_pg", BE_PG)
        };
        let (client_ip, client_port) = self.client(true, 0.0);
        let server = self.rng.pick(&self.backends[backend].servers).clone();
        let r = self.rng.unit();
        // Tw/Tc/Tt: most sessions are long-lived pooled connections.
        let (tw, tc, tt, ts) = if r < 0.005 {
            (0, -1, self.rng.range(1000, 3000) as i64, "SC")
        } else if r < 0.01 {
            (-1, -1, self.rng.range(1000, 5000) as i64, "sQ")
        } else {
            let tc = self.rng.range(0, 2) as i64;
            let tt = self.rng.log_range(5, 600_000) as i64;
            let ts = *self.rng.pick(&["--", "--", "--", "CD", "SD", "cD"]);
            (0, tc, tt, ts)
        };
        let bytes = if tc < 0 {
            0
        } else {
            self.rng.log_range(40, 5_000_000)
        };
        let mut conns = self.conns();
        conns[0] = self.rng.range(10, 400);
        conns[1] = self.rng.range(1, conns[0]);
        Request {
            tcp: true,
            client_ip,
            client_port,
            frontend,
            backend: self.backends[backend].name.to_string(),
            server: if tc < 0 && ts == "sQ" {
                "<NOSRV>".to_string()
            } else {
                server
            },
            timers: [-1, tw, tc, -1, tt],
            status: 0,
            bytes,
            termination: ts,
            conns,
            queues: [0, 0],
            ..Request::default()
        }
    }

    fn http_request(&mut self) -> Request {
        let r = self.rng.unit();
        let (frontend, tls, internal) = if r < 0.66 {
            ("fe_https~", true, false)
        } else if r < 0.75 {
            ("fe_http", false, false)
        } else {
            ("fe_api", false, true)
        };
        let badreq_allowed = matches!(self.options.layout, Layout::Httplog);
        let (client_ip, client_port) = self.client(internal, 0.15);
        let mut req = Request {
            tcp: false,
            client_ip,
            client_port,
            frontend,
            conns: self.conns(),
            version: "HTTP/1.1",
            termination: "----",
            ..Request::default()
        };
        if tls {
            let host = if self.rng.chance(0.8) {
                "www.example.com"
            } else {
                "static.example.com"
            };
            req.capture = Some((host, *self.rng.pick(USER_AGENTS)));
            if self.rng.chance(0.45) {
                req.version = "HTTP/2.0";
            }
        } else if self.rng.chance(0.02) {
            req.version = "HTTP/1.0";
        }

        // The plain-HTTP frontend redirects almost everything to HTTPS itself.
        if frontend == "fe_http" && self.rng.chance(0.85) {
            let route = self.site_routes[self.site_popularity.sample(&mut self.rng)];
            req.method = "GET";
            req.uri = self.path(route);
            req.backend = "fe_http".to_string();
            req.server = "<NOSRV>".to_string();
            req.timers = [self.rng.range(0, 2) as i64, -1, -1, -1, 0];
            req.status = 301;
            req.bytes = 97;
            req.termination = "LR--";
            return req;
        }
        if badreq_allowed && self.rng.chance(0.002) {
            req.badreq = true;
            req.backend = frontend.trim_end_matches('~').to_string();
            req.server = "<NOSRV>".to_string();
            if self.rng.chance(0.5) {
                req.timers = [-1, -1, -1, -1, 0];
                req.status = 400;
                req.termination = "CR--";
            } else {
                req.timers = [-1, -1, -1, -1, self.rng.range(5000, 10000) as i64];
                req.status = 408;
                req.termination = "cR--";
            }
            req.bytes = 0;
            return req;
        }

        let route = if internal {
            self.api_routes[self.api_popularity.sample(&mut self.rng)]
        } else if frontend == "fe_http" {
            // Health checks of a monitoring system, on plain HTTP.
            self.routes
                .iter()
                .position(|r| r.class == Class::Health)
                .map_or(0, |first| {
                    first + self.rng.below(HEALTH.len() as u64) as usize
                })
        } else {
            self.site_routes[self.site_popularity.sample(&mut self.rng)]
        };
        let route_ref = &self.routes[route];
        let class = route_ref.class;
        let backend = route_ref.backend;
        let methods = route_ref.methods;
        let weights: Vec<u32> = methods.iter().map(|(_, w)| *w).collect();
        req.method = methods[self.rng.weighted(&weights)].0;
        let mut uri = self.path(route);
        if req.method == "GET" && self.rng.chance(0.2) {
            match class {
                Class::Api if uri.ends_with("search") => {
                    let _ = write!(uri, "?q={}", self.rng.pick(SEARCH_TERMS));
                }
                Class::Api => {
                    let _ = write!(uri, "?page={}&limit=50", self.rng.range(1, 20));
                }
                Class::Static => {
                    let _ = write!(uri, "?v={}", self.rng.range(1, 9));
                }
                Class::Page => {
                    let _ = write!(uri, "?utm_source={}", self.rng.pick(&["mail", "ad", "x"]));
                }
                _ => {}
            }
        }
        if req.version == "HTTP/2.0" {
            let host = req.capture.map_or("www.example.com", |(h, _)| h);
            uri = format!("https://{host}{uri}");
        }
        req.uri = uri;
        req.backend = self.backends[backend].name.to_string();
        req.server = self.rng.pick(&self.backends[backend].servers).clone();

        let tr_ = if self.rng.chance(0.85) {
            0
        } else {
            self.rng.log_range(1, 300) as i64
        };
        let tw = if self.rng.chance(0.98) {
            0
        } else {
            self.rng.log_range(1, 500) as i64
        };
        let tc = *self.rng.pick(&[0, 0, 0, 0, 0, 0, 0, 1, 1, 2]);
        let r = self.rng.unit();
        if r < 0.002 {
            // Connection to the server failed (retries exhausted).
            req.timers = [tr_, tw, -1, -1, 3000 + self.rng.range(0, 20) as i64];
            req.status = 503;
            req.bytes = 217;
            req.termination = "SC--";
            return req;
        }
        if r < 0.003 {
            // No server was free in time: the request left the queue.
            req.timers = [tr_, -1, -1, -1, self.rng.range(1000, 5000) as i64];
            req.server = "<NOSRV>".to_string();
            req.status = 503;
            req.bytes = 217;
            req.termination = "sQ--";
            return req;
        }
        if r < 0.005 {
            // Server timeout.
            let ta = 30_000 + self.rng.range(0, 5) as i64;
            req.timers = [tr_, tw, tc, -1, ta];
            req.status = 504;
            req.bytes = 198;
            req.termination = "sH--";
            return req;
        }
        if r < 0.01 {
            // The client left before the response.
            let ta = self.rng.log_range(10, 20_000) as i64;
            req.timers = [tr_, tw, tc, -1, ta];
            req.status = -1;
            req.bytes = 0;
            req.termination = "CH--";
            return req;
        }

        let tr = match class {
            Class::Static => self.rng.log_range(1, 20),
            Class::Health => self.rng.range(0, 3),
            Class::Scanner => self.rng.range(0, 5),
            _ => {
                let r = self.rng.unit();
                if r < 0.70 {
                    self.rng.log_range(1, 30)
                } else if r < 0.95 {
                    self.rng.log_range(30, 300)
                } else {
                    self.rng.log_range(300, 8000)
                }
            }
        } as i64;
        let (status, bytes) = self.status_and_size(class, req.method);
        let transfer = if bytes > 50_000 {
            self.rng.log_range(1, 2000) as i64
        } else {
            self.rng.range(0, 2) as i64
        };
        req.timers = [tr_, tw, tc, tr, tr_ + tw + tc + tr + transfer];
        req.status = status;
        req.bytes = bytes;
        if self.rng.chance(0.003) {
            // The client closed during the data phase.
            req.termination = "CD--";
        } else if self.rng.chance(0.001) {
            req.redispatched = true;
            req.conns[4] = 1;
        }
        if self.rng.chance(0.03) {
            req.queues = [self.rng.range(0, 5), self.rng.range(0, 20)];
        }
        req
    }

    /// The path of `route` with an id filled in.
    fn path(&mut self, route: usize) -> String {
        let route = &self.routes[route];
        let mut path = String::with_capacity(route.prefix.len() + route.suffix.len() + 8);
        path.push_str(&route.prefix);
        if route.has_id {
            let id = self.id_popularity.sample(&mut self.rng) as u64 + 1;
            // Spread the ids out so they look like database keys.
            let _ = write!(path, "{}", 1000 + id * 7919 % 100_000);
        }
        path.push_str(&route.suffix);
        path
    }

    fn status_and_size(&mut self, class: Class, method: &str) -> (i32, u64) {
        match class {
            Class::Scanner => (*self.rng.pick(&[404, 404, 404, 403]), 150),
            Class::Health => (200, 2),
            Class::Static => {
                let r = self.rng.unit();
                if r < 0.84 {
                    (200, self.rng.log_range(400, 400_000))
                } else if r < 0.97 {
                    (304, 0)
                } else if r < 0.99 {
                    (206, self.rng.log_range(10_000, 1_000_000))
                } else {
                    (404, 150)
                }
            }
            Class::Page | Class::Api => {
                let ok = match method {
                    "POST" => 201,
                    "DELETE" => 204,
                    "OPTIONS" => 204,
                    _ => 200,
                };
                const OTHER: &[(i32, u32)] = &[
                    (302, 30),
                    (400, 20),
                    (401, 25),
                    (403, 8),
                    (404, 40),
                    (405, 2),
                    (409, 4),
                    (422, 6),
                    (429, 10),
                    (500, 8),
                    (502, 3),
                    (503, 2),
                ];
                if self.rng.chance(0.88) {
                    let size = if ok == 204 {
                        0
                    } else if class == Class::Page {
                        self.rng.log_range(2_000, 200_000)
                    } else {
                        self.rng.log_range(60, 60_000)
                    };
                    (ok, size)
                } else {
                    let weights: Vec<u32> = OTHER.iter().map(|(_, w)| *w).collect();
                    let status = OTHER[self.rng.weighted(&weights)].0;
                    (status, self.rng.range(50, 600))
                }
            }
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Hours, minutes, seconds and microseconds of a time of day (wrapping at midnight).
fn clock(us: u64) -> (u64, u64, u64, u64) {
    let s = (us / 1_000_000) % 86_400;
    (s / 3600, s / 60 % 60, s % 60, us % 1_000_000)
}

/// The syslog header, stamped when the request ended (HAProxy logs at the end).
pub fn write_header(header: Header, req: &Request, out: &mut Vec<u8>) {
    let end = req.accept_us + req.timers[4].max(0) as u64 * 1000;
    let (h, m, s, us) = clock(end);
    let _ = match header {
        Header::Local => write!(out, "<134>Nov 25 {h:02}:{m:02}:{s:02} haproxy[1234]: "),
        Header::Rfc3164 => write!(out, "<134>Nov 25 {h:02}:{m:02}:{s:02} lb1 haproxy[1234]: "),
        Header::Rfc5424 => write!(
            out,
            "<134>1 2026-11-25T{h:02}:{m:02}:{s:02}.{us:06}+00:00 lb1 haproxy 1234 - - "
        ),
        Header::Short => write!(out, "<6>"),
        Header::Raw => Ok(()),
    };
}

/// `%tr`: `25/Nov/2026:10:00:00.123`
fn write_accept_date(req: &Request, out: &mut Vec<u8>) {
    let (h, m, s, us) = clock(req.accept_us);
    let _ = write!(
        out,
        "25/{}/2026:{h:02}:{m:02}:{s:02}.{:03}",
        MONTHS[10],
        us / 1000
    );
}

/// `option httplog` or `option tcplog`, as HAProxy 2.6 writes them.
pub fn write_haproxy(req: &Request, out: &mut Vec<u8>) {
    let _ = write!(out, "{}:{} [", req.client_ip, req.client_port);
    write_accept_date(req, out);
    let _ = write!(out, "] {} {}/{} ", req.frontend, req.backend, req.server);
    let [tr, tw, tc, tr2, ta] = req.timers;
    let [ac, fc, bc, sc, rc] = req.conns;
    let plus = if req.redispatched { "+" } else { "" };
    if req.tcp {
        let _ = write!(
            out,
            "{tw}/{tc}/{ta} {} {} {ac}/{fc}/{bc}/{sc}/{plus}{rc} {}/{}",
            req.bytes, req.termination, req.queues[0], req.queues[1]
        );
        return;
    }
    let _ = write!(
        out,
        "{tr}/{tw}/{tc}/{tr2}/{ta} {} {} - - {} {ac}/{fc}/{bc}/{sc}/{plus}{rc} {}/{} ",
        req.status, req.bytes, req.termination, req.queues[0], req.queues[1]
    );
    if let Some((host, ua)) = req.capture {
        let _ = write!(out, "{{{host}|{ua}}} ");
    }
    if req.badreq {
        out.extend_from_slice(b"\"<BADREQ>\"");
    } else {
        let _ = write!(out, "\"{} {} {}\"", req.method, req.uri, req.version);
    }
}

/// `option httplog clf`.
pub fn write_clf(req: &Request, out: &mut Vec<u8>) {
    let (h, m, s, us) = clock(req.accept_us);
    let [tr, tw, tc, tr2, ta] = req.timers;
    let [ac, fc, bc, sc, rc] = req.conns;
    let _ = write!(
        out,
        "{} - - [25/Nov/2026:{h:02}:{m:02}:{s:02} +0000] \"{} {} {}\" {} {} \"\" \"\" {} {} \"{}\" \"{}\" \"{}\" {tr} {tw} {tc} {tr2} {ta} {} {ac} {fc} {bc} {sc} {rc} {} {} \"\" \"\" ",
        req.client_ip,
        req.method,
        req.uri,
        req.version,
        req.status,
        req.bytes,
        req.client_port,
        us / 1000,
        req.frontend,
        req.backend,
        req.server,
        req.termination,
        req.queues[0],
        req.queues[1],
    );
}

/// [`CUSTOM_FORMAT`].
pub fn write_custom(req: &Request, out: &mut Vec<u8>) {
    let _ = write!(out, "{}:{} [", req.client_ip, req.client_port);
    write_accept_date(req, out);
    let [tr, tw, tc, tr2, ta] = req.timers;
    let [ac, fc, bc, sc, rc] = req.conns;
    let path = path_only(&req.uri);
    let ua = req.capture.map_or("-", |(_, ua)| ua);
    let _ = write!(
        out,
        "] {} {}/{} {tr}/{tw}/{tc}/{tr2}/{ta} {} {} {} {ac}/{fc}/{bc}/{sc}/{rc} {}/{} m={} p={path} ua=\"{ua}\"",
        req.frontend,
        req.backend,
        req.server,
        req.status,
        req.bytes,
        req.termination,
        req.queues[0],
        req.queues[1],
        req.method,
    );
}

/// [`JSON_FORMAT`].
pub fn write_json(req: &Request, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{{\"ci\":\"{}\",\"cp\":{},\"tr\":\"",
        req.client_ip, req.client_port
    );
    write_accept_date(req, out);
    let [tr, tw, tc, tr2, ta] = req.timers;
    let _ = write!(
        out,
        "\",\"ft\":\"{}\",\"b\":\"{}\",\"s\":\"{}\",\"TR\":{tr},\"Tw\":{tw},\"Tc\":{tc},\"Tr\":{tr2},\"Ta\":{ta},\"ST\":{},\"B\":{},\"ts\":\"{}\",\"m\":\"{}\",\"u\":\"{}\",\"v\":\"{}\"}}",
        req.frontend,
        req.backend,
        req.server,
        req.status,
        req.bytes,
        req.termination,
        req.method,
        req.uri,
        req.version,
    );
}

/// `%HPO`: the path without scheme, authority or query.
fn path_only(uri: &str) -> &str {
    let uri = match uri.find("://") {
        Some(i) => uri[i + 3..].find('/').map_or("/", |j| &uri[i + 3 + j..]),
        None => uri,
    };
    uri.split('?').next().unwrap_or(uri)
}

/// What a corpus contains, to tell how many series a label set will create.
#[derive(Debug, Default)]
pub struct Stats {
    pub lines: u64,
    pub bytes: u64,
    pub tcp: u64,
    pub paths: usize,
    pub status_backend_server: usize,
    pub path_method_status_server: usize,
}

/// Generates `n` requests with `options` and counts distinct label values.
pub fn stats(options: &Options, n: u64) -> Stats {
    use std::collections::HashSet;
    let mut generator = Generator::new(options.clone());
    let mut paths = HashSet::new();
    let mut default_set = HashSet::new();
    let mut heavy_set = HashSet::new();
    let mut stats = Stats::default();
    let mut line = Vec::with_capacity(512);
    for _ in 0..n {
        let req = generator.request();
        line.clear();
        write_header(options.header, &req, &mut line);
        write_haproxy(&req, &mut line);
        stats.lines += 1;
        stats.bytes += line.len() as u64 + 1;
        let status = if req.tcp {
            String::new()
        } else {
            req.status.to_string()
        };
        let path = if req.tcp || req.badreq {
            ""
        } else {
            path_only(&req.uri)
        };
        stats.tcp += u64::from(req.tcp);
        paths.insert(path.to_string());
        default_set.insert((status.clone(), req.backend.clone(), req.server.clone()));
        heavy_set.insert((path.to_string(), req.method, status, req.server.clone()));
    }
    stats.paths = paths.len();
    stats.status_backend_server = default_set.len();
    stats.path_method_status_server = heavy_set.len();
    stats
}
