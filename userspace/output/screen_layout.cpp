#include "screen_layout.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <map>
#include <string_view>

#include "duration_text.h"
#include "last_user_text.h"
#include "last_users.h"
#include "last_users_table.h"
#include "safe_text.h"
#include "server_text.h"
#include "strfmt.h"
#include "text_report.h"
#include "time_format.h"

namespace connleak {
namespace {

bool continuation(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

std::string pad_right(std::string_view s, size_t width)
{
    std::string out = clip(s, width);
    out.append(width - text_width(out), ' ');
    return out;
}

std::string pad_left(std::string_view s, size_t width)
{
    std::string out = clip(s, width);
    return std::string(width - text_width(out), ' ') + out;
}

std::string signed_text(int64_t v)
{
    return v > 0 ? fmt("+%" PRId64, v) : fmt("%" PRId64, v);
}

// Cuts a line to width columns, span by span.
Line fit(Line line, size_t width)
{
    Line out;
    size_t used = 0;
    for (Span& s : line) {
        const size_t w = text_width(s.text);
        if (used + w <= width) {
            used += w;
            out.push_back(std::move(s));
            continue;
        }
        if (used < width)
            out.push_back({clip(s.text, width - used), s.style});
        break;
    }
    return out;
}

// A bar across the whole width: left text, right text when it fits too.
Line bar(const std::string& left, const std::string& right, size_t width, Style style)
{
    std::string text = left;
    if (text_width(left) + text_width(right) + 1 <= width)
        text += std::string(width - text_width(left) - text_width(right), ' ') + right;
    return {{pad_right(text, width), style}};
}

// "label value" pairs laid out like words in a paragraph: the header and
// process headings wrap on narrow terminals instead of losing numbers.
struct Field {
    std::string label;  // "" for a bare value
    std::string value;
    Style style = Style::Strong;
};

std::vector<Line> flow(const std::vector<Field>& fields, size_t width, const std::string& indent,
                       const std::string& wrap_indent)
{
    std::vector<Line> lines;
    Line line;
    size_t used = 0;
    for (const Field& f : fields) {
        const std::string label = f.label.empty() ? "" : f.label + " ";
        const size_t w = text_width(label) + text_width(f.value);
        if (!line.empty() && used + 2 + w > width) {
            lines.push_back(fit(std::move(line), width));
            line.clear();
        }
        const std::string sep = !line.empty() ? "  " : lines.empty() ? indent : wrap_indent;
        used = (line.empty() ? 0 : used) + text_width(sep) + w;
        line.push_back({sep, Style::Plain});
        if (!label.empty())
            line.push_back({label, Style::Plain});
        line.push_back({f.value, f.style});
    }
    if (!line.empty())
        lines.push_back(fit(std::move(line), width));
    return lines;
}

Style leak_style(uint64_t leaks)
{
    return leaks ? Style::Leak : Style::Healthy;
}

// ---- the header --------------------------------------------------------

// The database sockets the targets really hold, and how far that is from
// their live libpq handles: a non-zero discrepancy (connections libpq
// tracking misses, or handles without a socket) is highlighted.
void add_socket_fields(const Totals& t, std::vector<Field>& fields)
{
    if (!t.sockets_tracked)
        return;
    fields.push_back({"db sockets", format_count(t.db_sockets, 20)});
    fields.push_back(
        {"discrepancy", signed_text(t.tracking_discrepancy), t.tracking_discrepancy ? Style::Warn : Style::Healthy});
}

std::vector<Field> total_fields(const Snapshot& snap, const Trends& trends, double interval_s)
{
    const Totals& t = snap.totals;
    const Trend active = trends.total();
    std::string active_text = format_count(t.active, 20);
    if (active.samples >= 2)  // the change since the report before, which came one interval earlier
        active_text += " (" + signed_text(active.since_last) + fmt(" in %gs)", interval_s);
    std::vector<Field> fields = {
        {"acquired", format_count(t.acquired, 20)},
        {"released", format_count(t.released, 20)},
        {"active", active_text, active.direction == Direction::Up ? Style::Warn : Style::Strong},
        {"leaks", format_count(t.leaks, 20), leak_style(t.leaks)},
        {"leak ratio", fmt("%.1f%%", t.leak_ratio), leak_style(t.leaks)},
    };
    if (t.leaked_at_exit)
        fields.push_back({"leaked at exit", format_count(t.leaked_at_exit, 20), Style::Leak});
    add_socket_fields(t, fields);
    fields.push_back({"dropped", format_count(t.dropped, 20), t.dropped ? Style::Warn : Style::Strong});
    if (t.dropped)
        fields.push_back({"", "(maps full: counts are low)", Style::Warn});
    return fields;
}

// ---- the site table ----------------------------------------------------

enum class Col { Active, Chg, Session, Trend, Leaks, Acquired, Released, AvgHold, MaxHold };

struct Column {
    Col id;
    const char* title;
    size_t width;
    int drop;  // order in which narrow terminals give it up; 0: never
};

// Trends sit next to ACTIVE because they describe it (README "Live view"
// says so; the headings should read without it). LEAKS is wide enough for
// "AT EXIT", its heading for exited processes.
constexpr Column kColumns[] = {
    {Col::Active, "ACTIVE", 6, 0},
    {Col::Chg, "CHANGE", 6, 7},            // ACTIVE since the last report
    {Col::Session, "SINCE START", 11, 3},  // ACTIVE since the site was first seen
    {Col::Trend, "TREND", 5, 6},           // up / flat / down over the last reports
    {Col::Leaks, "LEAKS", 7, 0},
    {Col::Acquired, "ACQUIRED", 8, 5},
    {Col::Released, "RELEASED", 8, 1},
    {Col::AvgHold, "AVG HOLD", kDurationWidth, 4},
    {Col::MaxHold, "MAX HOLD", kDurationWidth, 2},
};
constexpr size_t kIndent = 2;    // "! " marks a leaking row without colour
constexpr size_t kSiteMin = 24;  // narrower than this, numbers make room for names
constexpr int kMaxDrop = 7;

struct Table {
    std::vector<Column> cols;
    size_t site_width = 0;
};

// Columns that fit: the least telling numbers go first (RELEASED is
// ACQUIRED - ACTIVE; MAX and AVG hold matter less than the counts).
Table plan_table(size_t width, size_t longest_site)
{
    Table t;
    t.cols.assign(std::begin(kColumns), std::end(kColumns));
    const size_t want = std::min(kSiteMin, longest_site);
    auto room_for_site = [&] {
        size_t used = kIndent;
        for (const Column& c : t.cols)
            used += 1 + c.width;
        return width > used ? width - used : 0;
    };
    for (int rank = 1; rank <= kMaxDrop && room_for_site() < want; rank++)
        t.cols.erase(std::remove_if(t.cols.begin(), t.cols.end(), [&](const Column& c) { return c.drop == rank; }),
                     t.cols.end());
    t.site_width = std::min(room_for_site(), longest_site);
    return t;
}

const char* direction_name(Direction d)
{
    switch (d) {
    case Direction::Up:
        return "up";
    case Direction::Flat:
        return "flat";
    case Direction::Down:
        return "down";
    case Direction::New:
        break;
    }
    return "new";
}

uint64_t site_leaks(const ProcessReport& p, const SiteReport& s)
{
    return p.exited ? s.leaked_at_exit : s.leaks;
}

std::string cell(Col col, const ProcessReport& p, const SiteReport& s, const Trend& tr, size_t w)
{
    switch (col) {
    case Col::Active:
        return format_count(s.active, w);
    case Col::Chg:
        return tr.samples >= 2 ? signed_text(tr.since_last) : "";
    case Col::Session:
        return tr.samples >= 1 ? signed_text(tr.since_first) : "";
    case Col::Trend:
        return tr.samples >= 1 ? direction_name(tr.direction) : "";
    case Col::Leaks:
        return format_count(site_leaks(p, s), w);
    case Col::Acquired:
        return format_count(s.acquired, w);
    case Col::Released:
        return format_count(s.released, w);
    case Col::AvgHold:
        return s.released ? format_duration(s.avg_ms) : "-";  // no release, no mean hold
    case Col::MaxHold:
        return format_duration(s.max_ms);
    }
    return "";
}

Line table_heading(const Table& t, bool exited)
{
    std::string text(kIndent, ' ');
    text += pad_right("SITE", t.site_width);
    for (const Column& c : t.cols)
        text += " " + pad_left(c.id == Col::Leaks && exited ? "AT EXIT" : c.title, c.width);
    return {{text, Style::Heading}};
}

// Red: leaking. Yellow: climbing, not yet old enough to be a leak. Green:
// neither. The whole row, so the colour is what the eye catches first.
Line site_row(const Table& t, const ProcessReport& p, const SiteReport& s, const Trend& tr)
{
    const bool leak = site_leaks(p, s) > 0;
    const Style style = leak ? Style::Leak : tr.direction == Direction::Up ? Style::Warn : Style::Healthy;
    std::string text = leak ? "! " : "  ";
    text += pad_right(printable(s.site), t.site_width);
    for (const Column& c : t.cols)
        text += " " + pad_left(cell(c.id, p, s, tr, c.width), c.width);
    return {{text, style}};
}

// ---- sorting -----------------------------------------------------------

// Sorting by state: held in a transaction first (what a pool leaks), then
// under way, the rest, idle last.
int state_rank(const ConnReport& c)
{
    if (!c.state_known)
        return 0;
    switch (c.state) {
    case ConnState::in_transaction:
    case ConnState::in_error:
        return 5;
    case ConnState::busy:
        return 4;
    case ConnState::connecting:
        return 3;
    case ConnState::broken:
        return 2;
    case ConnState::idle:
        return 1;
    case ConnState::unknown:
        break;
    }
    return 0;
}

uint64_t in_transaction_count(const std::map<std::string, uint64_t>& states)
{
    uint64_t n = 0;
    for (const char* s : {"in_transaction", "in_error"})
        if (auto it = states.find(s); it != states.end())
            n += it->second;
    return n;
}

double site_key(const ProcessReport& p, const SiteReport& s, SortKey k)
{
    switch (k) {
    case SortKey::Leaks:
        return static_cast<double>(site_leaks(p, s));
    case SortKey::Active:
        return static_cast<double>(s.active);
    case SortKey::Acquired:
        return static_cast<double>(s.acquired);
    case SortKey::AvgHold:
        return s.avg_ms;
    case SortKey::State:
        return static_cast<double>(in_transaction_count(s.states));
    case SortKey::LastUser:
        break;  // sites keep the model's order; the last users table and live handles follow the sort
    }
    return 0;
}

double process_key(const ProcessReport& p, SortKey k)
{
    switch (k) {
    case SortKey::Leaks:
        return static_cast<double>(p.exited ? p.leaked_at_exit : p.leaks);
    case SortKey::Active:
        return static_cast<double>(p.active);
    case SortKey::Acquired:
        return static_cast<double>(p.acquired);
    case SortKey::AvgHold: {
        double worst = 0;
        for (const SiteReport& s : p.sites)
            worst = std::max(worst, s.avg_ms);
        return worst;
    }
    case SortKey::State:
        return static_cast<double>(in_transaction_count(p.states));
    case SortKey::LastUser:
        return static_cast<double>(std::count_if(p.connections.begin(), p.connections.end(),
                                                 [](const ConnReport& c) { return checked_out(c); }));
    }
    return 0;
}

// Largest first; stable, so ties keep the model's order (worst first, then
// by name; processes by pid) and rows do not jump between reports.
std::vector<const SiteReport*> sorted_sites(const ProcessReport& p, SortKey k)
{
    std::vector<const SiteReport*> out;
    for (const SiteReport& s : p.sites)
        out.push_back(&s);
    std::stable_sort(out.begin(), out.end(),
                     [&](const SiteReport* a, const SiteReport* b) { return site_key(p, *a, k) > site_key(p, *b, k); });
    return out;
}

// Live processes first: the ones a person can still do something about.
// Exited ones that never touched libpq have nothing to say (one note names them).
std::vector<const ProcessReport*> sorted_processes(const Snapshot& snap, SortKey k)
{
    std::vector<const ProcessReport*> out;
    for (const ProcessReport& p : snap.processes)
        if (!quiet_helper(p))
            out.push_back(&p);
    std::stable_sort(out.begin(), out.end(), [&](const ProcessReport* a, const ProcessReport* b) {
        if (a->exited != b->exited)
            return !a->exited;
        return process_key(*a, k) > process_key(*b, k);
    });
    return out;
}

// ---- the body ----------------------------------------------------------

std::vector<Field> process_fields(const ProcessReport& p)
{
    std::vector<Field> f = {{"", fmt("PID %u %s", p.pid, printable(p.comm).c_str()), Style::Strong}};
    // Its container as docker ps and kubectl show them: the id's first 12
    // characters, the pod's first 8 (the JSON has both whole).
    if (!p.container_id.empty())
        f.push_back({"container", printable(p.container_id.substr(0, 12)), Style::Muted});
    if (!p.pod_uid.empty())
        f.push_back({"pod", printable(p.pod_uid.substr(0, 8)), Style::Muted});
    if (p.exited)
        f.push_back({"", "exited", Style::Muted});
    else
        f.push_back({"active", format_count(p.active, 20)});
    if (p.exited)
        f.push_back({"leaked at exit", format_count(p.leaked_at_exit, 20), leak_style(p.leaked_at_exit)});
    else
        f.push_back({"leaks", format_count(p.leaks, 20), leak_style(p.leaks)});
    f.push_back({"acquired", format_count(p.acquired, 20)});
    f.push_back({"released", format_count(p.released, 20)});
    if (p.released_untracked)
        f.push_back({"released untracked", format_count(p.released_untracked, 20)});
    if (p.released_inherited)
        f.push_back({"released inherited", format_count(p.released_inherited, 20)});
    if (p.pings)
        f.push_back({"pings", format_count(p.pings, 20)});
    if (p.resets)
        f.push_back({"resets", format_count(p.resets, 20)});
    for (const auto& [state, n] : p.states)
        f.push_back({state, format_count(n, 20)});
    if (p.pool_slots_lost)
        f.push_back({"pool slots lost", format_count(p.pool_slots_lost, 20), Style::Warn});
    if (p.dropped)
        f.push_back({"dropped", format_count(p.dropped, 20) + " (counts are low)", Style::Warn});
    return f;
}

// ---- live connections ---------------------------------------------------

Line connection_heading(size_t width, bool server)
{
    return fit({{fmt("  %-18s %*s %-14s %8s  %s%s", "LIVE CONNECTION", kDurationWidth, "HELD", "STATE", "THREAD",
                     server ? fmt("%-28s  ", "SERVER").c_str() : "", "SITE"),
                 Style::Heading}},
               width);
}

// One live handle, oldest first: its age says how long a leak has been going.
// With --server, the server's state beside it, red for an open transaction
// left idle.
Line connection_row(const ConnReport& c, size_t width, bool server)
{
    const Style style = c.leak ? Style::Leak : Style::Plain;
    const std::string state = c.state_known ? std::string(conn_state_name(c.state)) + (c.pooled ? "*" : "") : "-";
    Line line = {{fmt("%s%-18s %*s %-14s %8s  ", c.leak ? "! " : "  ", connection_cell(c).c_str(), kDurationWidth,
                      format_duration(c.age_ms).c_str(), state.c_str(), thread_cell(c).c_str()),
                  style}};
    if (server) {
        const std::string cell = server_cell(c);
        line.push_back({fmt("%-28s", cell.empty() ? "-" : cell.c_str()), server_alarm(c) ? Style::Leak : style});
        line.push_back({"  ", style});
    }
    line.push_back({printable(c.site), style});
    if (std::string use = last_user_phrase(c); !use.empty())
        line.push_back({"  (" + printable(use) + ")", style});
    return fit(line, width);
}

bool any_server(const ProcessReport& p)
{
    for (const ConnReport& c : p.connections)
        if (c.server)
            return true;
    return false;
}

// Lines the first `shown` of a process's n live handles take under its
// table: a heading and the rows, and "+N more" unless all are there.
size_t connection_lines(size_t n, size_t shown)
{
    if (n == 0)
        return 0;
    if (shown == 0)
        return 1;
    return 1 + shown + (shown < n ? 1 : 0);
}

// How many live handles each process lists under its table: at least
// `floor` (or all it has), then one more at a time round the processes
// while the page has room, so the sites of every process come first and
// a tall terminal is filled. The rest go to the end of the body.
std::vector<size_t> plan_connections(const std::vector<const ProcessReport*>& procs, size_t fixed_lines, size_t page,
                                     size_t floor)
{
    std::vector<size_t> shown(procs.size());
    size_t used = fixed_lines;
    for (size_t i = 0; i < procs.size(); i++) {
        shown[i] = std::min(floor, procs[i]->connections.size());
        used += connection_lines(procs[i]->connections.size(), shown[i]);
    }
    for (bool grew = true; grew;) {
        grew = false;
        for (size_t i = 0; i < procs.size(); i++) {
            const size_t n = procs[i]->connections.size();
            if (shown[i] >= n)
                continue;
            const size_t more = connection_lines(n, shown[i] + 1) - connection_lines(n, shown[i]);
            if (used + more > page)
                continue;
            used += more;
            shown[i]++;
            grew = true;
        }
    }
    return shown;
}

// Sorting by last user: the process's last users in their order (most
// leaks and handles checked out first), those --top left out after them by
// label, handles with no known last user last.
void sort_by_last_user(const ProcessReport& p, std::vector<const ConnReport*>& conns)
{
    std::map<std::string_view, size_t> listed;
    for (size_t i = 0; i < p.last_users.size(); i++)
        listed.emplace(p.last_users[i].site, i);
    using Rank = std::pair<size_t, std::string_view>;
    std::vector<std::pair<Rank, const ConnReport*>> ranked;
    ranked.reserve(conns.size());
    for (const ConnReport* c : conns) {
        auto it = listed.find(c->last_used_site);
        const Rank r = c->last_used_site.empty() ? Rank{p.last_users.size() + 1, {}}
                       : it != listed.end()      ? Rank{it->second, {}}
                                                 : Rank{p.last_users.size(), c->last_used_site};
        ranked.emplace_back(r, c);
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < ranked.size(); i++)
        conns[i] = ranked[i].second;
}

// The model's order (oldest first), or by state or last user (stable:
// oldest first within one).
std::vector<const ConnReport*> sorted_connections(const ProcessReport& p, SortKey k)
{
    std::vector<const ConnReport*> out;
    for (const ConnReport& c : p.connections)
        out.push_back(&c);
    if (k == SortKey::State)
        std::stable_sort(out.begin(), out.end(),
                         [](const ConnReport* a, const ConnReport* b) { return state_rank(*a) > state_rank(*b); });
    if (k == SortKey::LastUser)
        sort_by_last_user(p, out);
    return out;
}

void add_connections(std::vector<Line>& body, const ProcessReport& p, size_t shown, size_t width, SortKey k)
{
    const size_t n = p.connections.size();
    if (n == 0)
        return;
    if (shown > 0)
        body.push_back(connection_heading(width, any_server(p)));
    const std::vector<const ConnReport*> conns = sorted_connections(p, k);
    for (size_t i = 0; i < shown; i++)
        body.push_back(connection_row(*conns[i], width, any_server(p)));
    if (n > shown)
        body.push_back(fit(
            {{fmt("  +%zu more live connection%s, at the end", n - shown, n - shown == 1 ? "" : "s"), Style::Muted}},
            width));
}

// The live handles that did not fit under their process, reached by
// scrolling. Bounded: the JSON lists them all.
constexpr size_t kMaxRestListed = 1000;

void add_rest_of_connections(std::vector<Line>& body, const ProcessReport& p, size_t shown, size_t width, SortKey k)
{
    const size_t n = p.connections.size();
    if (shown >= n)
        return;
    body.push_back({});
    body.push_back(fit({{fmt("PID %u %s: %zu more live connection%s", p.pid, printable(p.comm).c_str(), n - shown,
                             n - shown == 1 ? "" : "s"),
                         Style::Strong}},
                       width));
    body.push_back(connection_heading(width, any_server(p)));
    const size_t end = std::min(n, shown + kMaxRestListed);
    const std::vector<const ConnReport*> conns = sorted_connections(p, k);
    for (size_t i = shown; i < end; i++)
        body.push_back(connection_row(*conns[i], width, any_server(p)));
    if (end < n)
        body.push_back(fit({{fmt("  +%zu more (all are in --json)", n - end), Style::Muted}}, width));
}

// ---- the body ----------------------------------------------------------

std::vector<Line> layout_body(const Snapshot& snap, const Trends& trends, const ViewState& view,
                              const LayoutParams& params, size_t page)
{
    const size_t width = static_cast<size_t>(params.width);
    std::vector<Line> body;
    if (params.waiting) {
        body.push_back({{fmt("  waiting for the first report (every %gs)", params.interval_s), Style::Muted}});
        return body;
    }
    if (snap.processes.empty()) {
        body.push_back({{"  no traced process yet", Style::Muted}});
        return body;
    }
    const std::vector<const ProcessReport*> procs = sorted_processes(snap, view.sort);
    // One column plan for every process, so the tables line up.
    size_t longest = text_width("SITE");
    for (const ProcessReport* p : procs)
        for (const SiteReport& s : p->sites)
            longest = std::max(longest, text_width(printable(s.site)));
    const Table table = plan_table(width, longest);

    // Each process's heading and site table, then its live handles.
    std::vector<std::vector<Line>> heads;
    size_t fixed = 0;
    for (const ProcessReport* p : procs) {
        std::vector<Line> head;
        if (!heads.empty())
            head.push_back({});
        for (Line& l : flow(process_fields(*p), width, "", "  "))
            head.push_back(std::move(l));
        if (p->sites.empty()) {
            head.push_back(fit({{"  no connections acquired while traced", Style::Muted}}, width));
        } else {
            head.push_back(fit(table_heading(table, p->exited), width));
            for (const SiteReport* s : sorted_sites(*p, view.sort))
                head.push_back(fit(site_row(table, *p, *s, trends.site(p->pid, s->site)), width));
        }
        for (const TableLine& l : last_users_lines(*p))
            head.push_back(fit({{l.text, l.heading ? Style::Heading
                                         : l.note  ? Style::Muted
                                         : l.leak  ? Style::Leak
                                                   : Style::Plain}},
                               width));
        fixed += head.size();
        heads.push_back(std::move(head));
    }
    const std::string note = quiet_processes_note(snap);
    if (!note.empty())
        fixed += procs.empty() ? 1 : 2;
    const std::vector<size_t> shown = plan_connections(procs, fixed, page, params.oldest_conns);
    for (size_t i = 0; i < procs.size(); i++) {
        for (Line& l : heads[i])
            body.push_back(std::move(l));
        add_connections(body, *procs[i], shown[i], width, view.sort);
    }
    if (!note.empty()) {
        if (!body.empty())
            body.push_back({});
        body.push_back(fit({{"  " + printable(note), Style::Muted}}, width));
    }
    for (size_t i = 0; i < procs.size(); i++)
        add_rest_of_connections(body, *procs[i], shown[i], width, view.sort);
    return body;
}

Line title_bar(const Snapshot& snap, const LayoutParams& params, size_t width)
{
    if (params.waiting)
        return bar(" connleak", fmt("every %gs ", params.interval_s), width, Style::Bar);
    std::string when = format_utc(snap.wall_time_s);  // "2026-11-26T20:00:00Z", for people:
    when = when.substr(0, 10) + " " + when.substr(11, 8) + " UTC";
    return bar(" connleak  " + when, fmt("every %gs  leak after %gs ", params.interval_s, snap.leak_after_s), width,
               Style::Bar);
}

Line key_bar(const ViewState& view, int scroll, int page, size_t body_lines, size_t width)
{
    std::string sort = std::string("sort: ") + sort_name(view.sort);
    std::string keys = view.paused ? " PAUSED  p resume  q quit  s " + sort : " q quit  s " + sort + "  p pause";
    std::string where;
    if (page > 0 && body_lines > static_cast<size_t>(page)) {
        keys += "  j/k scroll";
        where = fmt("lines %d-%d of %zu ", scroll + 1, scroll + page, body_lines);
    }
    if (text_width(keys) + text_width(where) + 1 > width)  // narrow: the short form
        keys = view.paused ? " PAUSED p q s j/k" : " q s p j/k";
    return bar(keys, where, width, view.paused ? Style::BarWarn : Style::Bar);
}

}  // namespace

size_t text_width(std::string_view s)
{
    size_t n = 0;
    for (unsigned char c : s)
        n += !continuation(c);
    return n;
}

size_t line_width(const Line& line)
{
    size_t n = 0;
    for (const Span& s : line)
        n += text_width(s.text);
    return n;
}

std::string line_text(const Line& line)
{
    std::string out;
    for (const Span& s : line)
        out += s.text;
    return out;
}

std::string clip(std::string_view s, size_t width)
{
    if (text_width(s) <= width)
        return std::string(s);
    if (width == 0)
        return "";
    size_t end = 0, points = 0;  // keep width-1 code points, then the mark
    for (; end < s.size(); end++)
        if (!continuation(static_cast<unsigned char>(s[end])) && points++ == width - 1)
            break;
    return std::string(s.substr(0, end)) + "~";
}

std::string printable(std::string_view s)
{
    // safe_text, as the text report shows names, plus the C1 controls it
    // keeps as valid UTF-8 (U+009B is CSI to terminals that honour C1).
    const std::string safe = safe_text(s);
    std::string out;
    for (size_t i = 0; i < safe.size(); i++) {
        const auto next = i + 1 < safe.size() ? static_cast<unsigned char>(safe[i + 1]) : 0;
        if (static_cast<unsigned char>(safe[i]) == 0xC2 && next >= 0x80 && next <= 0x9F) {
            out += fmt("\\xc2\\x%02x", next);
            i++;
            continue;
        }
        out += safe[i];
    }
    return out;
}

std::string format_count(uint64_t v, size_t width)
{
    std::string plain = std::to_string(v);
    if (plain.size() <= width)
        return plain;
    double scaled = static_cast<double>(v);
    for (char unit : {'k', 'M', 'G', 'T', 'P', 'E'}) {
        scaled /= 1000;
        if (scaled >= 999.5)
            continue;
        if (std::string s = fmt("%.1f%c", scaled, unit); scaled < 9.95 && s.size() <= width)
            return s;  // "1.2M"
        if (std::string s = fmt("%.0f%c", scaled, unit); s.size() <= width)
            return s;  // "12M", "123M"
    }
    return clip(plain, width);
}

SortKey next_sort(SortKey k)
{
    switch (k) {
    case SortKey::Leaks:
        return SortKey::Active;
    case SortKey::Active:
        return SortKey::Acquired;
    case SortKey::Acquired:
        return SortKey::AvgHold;
    case SortKey::AvgHold:
        return SortKey::State;
    case SortKey::State:
        return SortKey::LastUser;
    case SortKey::LastUser:
        break;
    }
    return SortKey::Leaks;
}

const char* sort_name(SortKey k)
{
    switch (k) {
    case SortKey::Leaks:
        return "leaks";
    case SortKey::Active:
        return "active";
    case SortKey::Acquired:
        return "acquired";
    case SortKey::AvgHold:
        return "avg hold";
    case SortKey::State:
        return "state";
    case SortKey::LastUser:
        return "last user";
    }
    return "?";
}

Screen layout_screen(const Snapshot& snap, const Trends& trends, const ViewState& view, const LayoutParams& params)
{
    const size_t width = static_cast<size_t>(std::max(params.width, 1));
    const size_t height = static_cast<size_t>(std::max(params.height, 1));

    std::vector<Line> top = {title_bar(snap, params, width)};
    if (!params.waiting)
        for (Line& l : flow(total_fields(snap, trends, params.interval_s), width, " ", " "))
            top.push_back(std::move(l));
    // The text report's pre-attach note, short, and on every screen: a
    // screen is redrawn, not read back, and "leaks 0" must not read as all clear.
    if (const uint64_t n = params.pre_attach_hint && !params.waiting ? pre_attach_sockets(snap) : 0)
        top.push_back(fit({{fmt(" %" PRIu64 " db socket%s from before the attach, not counted: --server DSN shows %s",
                                n, n == 1 ? "" : "s", n == 1 ? "it" : "them"),
                            Style::Warn}},
                          width));
    top.push_back({});
    // Tiny terminals: the title and the key bar win over the header.
    if (top.size() + 1 > height)
        top.resize(std::max<size_t>(height, 2) - 1);

    Screen screen;
    screen.page = static_cast<int>(height > top.size() + 1 ? height - top.size() - 1 : 0);
    const std::vector<Line> body = layout_body(snap, trends, view, params, static_cast<size_t>(screen.page));
    screen.max_scroll = std::max(0, static_cast<int>(body.size()) - screen.page);
    screen.scroll = std::clamp(view.scroll, 0, screen.max_scroll);

    screen.lines = std::move(top);
    for (int i = 0; i < screen.page && screen.scroll + i < static_cast<int>(body.size()); i++)
        screen.lines.push_back(body[static_cast<size_t>(screen.scroll + i)]);
    if (height >= 2) {  // the key bar on the last row, however short the body
        screen.lines.resize(height - 1);
        screen.lines.push_back(key_bar(view, screen.scroll, screen.page, body.size(), width));
    }
    screen.lines.resize(std::min(screen.lines.size(), height));
    return screen;
}

}  // namespace connleak
