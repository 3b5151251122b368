//! The page: one HTML document with its styles and charts (inline SVG) inside, and a Content-Security-Policy that
//! forbids every external load, so it renders the same from a presigned URL, a saved file or an email attachment,
//! and a browser shows an error if anything ever tries to load from elsewhere.
//!
//! Every number carries a `data-metric` attribute, so the browser test reads what a person sees.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::{Count, Dashboard, DayCount, HistoryPoint, SEVERITIES};

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:16px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}main{padding:20px 28px;max-width:1280px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:16px 20px;margin:0 0 18px}
h2{font-size:16px;margin:0 0 12px}.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 14px}
.card .n{font-size:26px;font-weight:600}.card .n.t{font-size:16px;padding:6px 0}.card .l{color:#5b6574;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:18px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef2}
th{color:#5b6574;font-weight:600}td.num,th.num{text-align:right}.empty{color:#7a8594;font-style:italic}
.sev-critical{color:#8e1b1b;font-weight:600}.sev-high{color:#b3401b}.sev-medium{color:#8a6a00}.sev-low{color:#44607a}
.tag{display:inline-block;padding:0 6px;border-radius:9px;background:#eceef2;font-size:12px}
.tag.undone{background:#fde7c8}.tag.applied{background:#d7f0dc}.tag.expired{background:#f8d4d4}
svg text{font:11px system-ui,sans-serif;fill:#3b4452}.legend span{margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
";

fn color(severity: &str) -> &'static str {
    match severity {
        "critical" => "#8e1b1b",
        "high" => "#d9622b",
        "medium" => "#e0b020",
        _ => "#6d8fb0",
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// The whole page.
pub fn render(d: &Dashboard) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Palisade compliance dashboard</title><style>{STYLE}</style></head><body>\
         <header><h1>Palisade compliance</h1><p>Generated <time data-metric=\"generated-at\" datetime=\"{}\">{}</time>. \
         Counts come from the violations table and the ledgers; the same data is in data.json.</p></header><main>",
        d.generated_at.to_rfc3339(),
        time(&d.generated_at)
    );
    cards(&mut h, d);
    h.push_str("<div class=\"grid\">");
    section(&mut h, "Open violations over time", "trend", |h| trend(h, &d.history));
    section(&mut h, "Enforcement actions applied per day", "activity", |h| activity(h, &d.enforced_per_day));
    h.push_str("</div><div class=\"grid\">");
    section(&mut h, "Open violations by policy", "by-policy", |h| {
        bars(h, "by-policy", &d.open_by_policy, |_| "#2f6fb0")
    });
    section(&mut h, "Open violations by severity", "by-severity", |h| {
        bars(h, "by-severity", &d.open_by_severity, color)
    });
    section(&mut h, "Open violations by owner", "by-owner", |h| bars(h, "by-owner", &d.open_by_owner, |_| "#4d8a6a"));
    h.push_str("</div>");
    section(&mut h, "Next steps: reminders pending and enforcement due", "next-steps", |h| next_steps(h, d));
    section(&mut h, "Enforcement", "enforcement", |h| enforcement(h, d));
    section(&mut h, "Exceptions", "exceptions", |h| exceptions(h, d));
    section(&mut h, "File pipelines per tenant", "tenants", |h| tenants(h, d));
    h.push_str("</main></body></html>\n");
    h
}

fn cards(h: &mut String, d: &Dashboard) {
    let s = &d.summary;
    let next = s.next_enforcement_at.as_ref().map_or_else(|| "none scheduled".to_owned(), time);
    let items: [(&str, String, &str); 10] = [
        ("open-violations", s.open_violations.to_string(), "open violations"),
        ("enforced", s.enforced.to_string(), "enforcement actions applied"),
        ("undone", s.undone.to_string(), "of them undone"),
        ("dry-runs", s.dry_runs.to_string(), "dry runs recorded"),
        ("reminders-pending", s.reminders_pending.to_string(), "reminders pending"),
        ("awaiting-approval", s.awaiting_approval.to_string(), "awaiting approval"),
        ("next-enforcement", next, "next enforcement due"),
        ("exceptions-active", s.exceptions_active.to_string(), "exceptions in force"),
        ("exceptions-expired", s.exceptions_expired.to_string(), "exceptions expired"),
        ("open-incidents", s.open_incidents.to_string(), "open incidents"),
    ];
    h.push_str("<section><h2>Summary</h2><div class=\"cards\">");
    for (metric, value, label) in items {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"n{}\" data-metric=\"{metric}\">{}</div><div class=\"l\">{label}</div></div>",
            if value.parse::<u32>().is_ok() { "" } else { " t" },
            esc(&value)
        );
    }
    h.push_str("</div></section>");
}

fn section(h: &mut String, title: &str, id: &str, body: impl FnOnce(&mut String)) {
    let _ = write!(h, "<section id=\"{id}\"><h2>{}</h2>", esc(title));
    body(h);
    h.push_str("</section>");
}

fn empty(h: &mut String, what: &str) {
    let _ = write!(h, "<p class=\"empty\">{}</p>", esc(what));
}

/// Horizontal bars, one per key, with the count at the end.
fn bars(h: &mut String, metric: &str, items: &[Count], fill: fn(&str) -> &'static str) {
    if items.iter().all(|c| c.count == 0) {
        return empty(h, "None open.");
    }
    let max = items.iter().map(|c| c.count).max().unwrap_or(1).max(1);
    let (label_w, bar_w, row) = (190.0, 260.0, 22.0);
    let height = row * items.len() as f64 + 6.0;
    let _ = write!(
        h,
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {} {height}\" preserveAspectRatio=\"xMinYMin meet\">\
         <title>{metric}</title>",
        label_w + bar_w + 50.0
    );
    for (i, c) in items.iter().enumerate() {
        let y = row * i as f64 + 3.0;
        let w = (f64::from(c.count) / f64::from(max) * bar_w).max(if c.count > 0 { 2.0 } else { 0.0 });
        let label: String = if c.key.chars().count() > 30 {
            c.key.chars().take(29).chain(std::iter::once('…')).collect()
        } else {
            c.key.clone()
        };
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" rx=\"2\" fill=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{}\" data-metric=\"{metric}:{}\">{}</text>",
            label_w - 8.0,
            y + 14.0,
            esc(&label),
            row - 6.0,
            fill(&c.key),
            esc(&c.key),
            c.count,
            label_w + w + 6.0,
            y + 14.0,
            esc(&slug(&c.key)),
            c.count
        );
    }
    h.push_str("</svg>");
}

/// Stacked columns of open violations per severity, one per day.
fn trend(h: &mut String, history: &[HistoryPoint]) {
    let totals: Vec<u32> = history.iter().map(|p| p.open.values().sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let (left, top, plot_w, plot_h) = (36.0, 8.0, 420.0, 150.0);
    let n = history.len().max(1) as f64;
    let step = plot_w / n;
    let col = (step * 0.7).clamp(2.0, 40.0);
    let _ = write!(
        h,
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {} {}\"><title>open violations per day by severity</title>",
        left + plot_w + 10.0,
        top + plot_h + 34.0
    );
    axis(h, left, top, plot_w, plot_h, max);
    for (i, p) in history.iter().enumerate() {
        let x = left + step * i as f64 + (step - col) / 2.0;
        let mut y = top + plot_h;
        for sev in SEVERITIES {
            let v = p.open.get(sev).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let hgt = f64::from(v) / f64::from(max) * plot_h;
            y -= hgt;
            let _ = write!(
                h,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{col:.1}\" height=\"{hgt:.1}\" fill=\"{}\"><title>{} {sev}: {v}</title></rect>",
                color(sev),
                p.date
            );
        }
        if i == 0 || i + 1 == history.len() || history.len() <= 8 {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + col / 2.0,
                top + plot_h + 16.0,
                p.date.format("%m-%d")
            );
        }
    }
    h.push_str("</svg><div class=\"legend\">");
    for sev in SEVERITIES {
        let _ = write!(h, "<span><i style=\"background:{}\"></i>{sev}</span>", color(sev));
    }
    let _ = write!(
        h,
        "</div><p class=\"l\">{} day(s) recorded; today: <span data-metric=\"trend-today\">{}</span> open.</p>",
        history.len(),
        totals.last().copied().unwrap_or(0)
    );
}

/// Columns of applied enforcement actions per day.
fn activity(h: &mut String, days: &[DayCount]) {
    let max = days.iter().map(|d| d.count).max().unwrap_or(0).max(1);
    let (left, top, plot_w, plot_h) = (36.0, 8.0, 420.0, 150.0);
    let step = plot_w / days.len().max(1) as f64;
    let col = (step * 0.7).clamp(2.0, 40.0);
    let _ = write!(
        h,
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {} {}\"><title>enforcement actions applied per day</title>",
        left + plot_w + 10.0,
        top + plot_h + 34.0
    );
    axis(h, left, top, plot_w, plot_h, max);
    for (i, d) in days.iter().enumerate() {
        let x = left + step * i as f64 + (step - col) / 2.0;
        let hgt = f64::from(d.count) / f64::from(max) * plot_h;
        if d.count > 0 {
            let _ = write!(
                h,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{col:.1}\" height=\"{hgt:.1}\" fill=\"#2f6fb0\"><title>{}: {}</title></rect>",
                top + plot_h - hgt,
                d.date,
                d.count
            );
        }
        let last = i + 1 == days.len();
        if last || (i % 7 == 0 && i + 4 < days.len()) {
            let _ = write!(
                h,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + col / 2.0,
                top + plot_h + 16.0,
                d.date.format("%m-%d")
            );
        }
    }
    let total: u32 = days.iter().map(|d| d.count).sum();
    let _ = write!(
        h,
        "</svg><p class=\"l\"><span data-metric=\"enforced-30d\">{total}</span> applied in the last {} days.</p>",
        days.len()
    );
}

fn axis(h: &mut String, left: f64, top: f64, w: f64, hgt: f64, max: u32) {
    let _ = write!(
        h,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"#9aa3af\"/>\
         <line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#9aa3af\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text><text x=\"{lx}\" y=\"{b}\" text-anchor=\"end\">0</text>",
        b = top + hgt,
        r = left + w,
        lx = left - 4.0,
        ty = top + 10.0
    );
}

fn next_steps(h: &mut String, d: &Dashboard) {
    if d.next_steps.is_empty() {
        return empty(h, "No open violations.");
    }
    h.push_str(
        "<table data-table=\"next-steps\"><thead><tr><th>violation</th><th>severity</th><th>owner</th><th>next step</th>\
         <th>due</th><th class=\"num\">reminders</th></tr></thead><tbody>",
    );
    for s in &d.next_steps {
        let _ = write!(
            h,
            "<tr data-step=\"{}\"><td>{}</td><td class=\"sev-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{} of {}</td></tr>",
            esc(s.step.label()),
            esc(&s.violation),
            esc(&slug(&s.severity)),
            esc(&s.severity),
            esc(&s.owner),
            esc(s.step.label()),
            s.due_at.as_ref().map_or_else(|| "now".to_owned(), time),
            s.reminders_sent,
            s.reminders_total
        );
    }
    h.push_str("</tbody></table>");
}

fn enforcement(h: &mut String, d: &Dashboard) {
    if d.enforcement.is_empty() {
        return empty(h, "Nothing enforced yet.");
    }
    h.push_str(
        "<table data-table=\"enforcement\"><thead><tr><th>when</th><th>policy</th><th>action</th><th>resource</th>\
         <th>outcome</th><th>by</th><th>undone</th></tr></thead><tbody>",
    );
    for r in &d.enforcement {
        let undone = match (&r.undone_at, &r.undone_by) {
            (Some(at), by) => format!(
                "<span class=\"tag undone\">undone {}{}</span>",
                esc(at.get(..16).unwrap_or(at)),
                by.as_deref().map(|b| format!(" by {}", esc(b))).unwrap_or_default()
            ),
            (None, _) => "no".to_owned(),
        };
        let _ = write!(
            h,
            "<tr data-outcome=\"{}\" data-undone=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"tag {}\">{}</span></td><td>{}</td><td>{undone}</td></tr>",
            esc(&r.outcome),
            r.undone_at.is_some(),
            time(&r.at),
            esc(&r.policy),
            esc(&r.action),
            esc(&r.resource),
            esc(&slug(&r.outcome)),
            esc(&r.outcome),
            esc(&r.actor)
        );
    }
    h.push_str("</tbody></table>");
}

fn exceptions(h: &mut String, d: &Dashboard) {
    if d.exceptions.is_empty() {
        return empty(h, "No exceptions.");
    }
    h.push_str(
        "<table data-table=\"exceptions\"><thead><tr><th>policy</th><th>covers</th><th>reason</th><th>granted by</th>\
         <th>expires</th></tr></thead><tbody>",
    );
    for e in &d.exceptions {
        let _ = write!(
            h,
            "<tr data-expired=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            e.expired,
            esc(&e.policy),
            esc(&e.scope),
            esc(&e.reason),
            esc(&e.granted_by),
            time(&e.expires_at),
            if e.expired { " <span class=\"tag expired\">expired</span>" } else { "" }
        );
    }
    h.push_str("</tbody></table>");
}

fn tenants(h: &mut String, d: &Dashboard) {
    if d.tenants.is_empty() {
        return empty(h, "No tenant pipelines configured (compliance stack parameter TenantStacks).");
    }
    h.push_str(
        "<table data-table=\"tenants\"><thead><tr><th>tenant</th><th class=\"num\">accepted</th>\
         <th class=\"num\">extracted</th><th class=\"num\">delivered</th><th class=\"num\">quarantined</th>\
         <th class=\"num\">deleted by retention</th><th class=\"num\">open incidents</th></tr></thead><tbody>",
    );
    for t in &d.tenants {
        let k = esc(&slug(&t.tenant));
        let _ = write!(
            h,
            "<tr data-tenant=\"{}\"><td>{}</td><td class=\"num\" data-metric=\"tenant:{k}:accepted\">{}</td>\
             <td class=\"num\" data-metric=\"tenant:{k}:extracted\">{}</td>\
             <td class=\"num\" data-metric=\"tenant:{k}:delivered\">{}</td>\
             <td class=\"num\" data-metric=\"tenant:{k}:quarantined\">{}</td>\
             <td class=\"num\" data-metric=\"tenant:{k}:deleted\">{}</td>\
             <td class=\"num\" data-metric=\"tenant:{k}:open-incidents\">{}</td></tr>",
            esc(&t.tenant),
            esc(&t.tenant),
            t.accepted,
            t.extracted,
            t.delivered,
            t.quarantined,
            t.deleted,
            t.open_incidents
        );
    }
    h.push_str("</tbody></table>");
}
