#include "conn_json_text.h"

#include <array>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "json_object_text.h"
#include "safe_text.h"

namespace connleak {
namespace {

double round_ms(double ms)
{
    return std::round(ms * 10.0) / 10.0;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s)
{
    static const char hex[] = "0123456789abcdef";
    out += '"';
    size_t plain = 0;  // start of the run copied as is
    for (size_t i = 0; i < s.size(); i++) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        out.append(s.data() + plain, i - plain);
        plain = i + 1;
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xf];
        }
    }
    out.append(s.data() + plain, s.size() - plain);
    out += '"';
}

const std::string& ConnJsonWriter::quoted(std::string& cache_key, std::string& cache, const std::string& s)
{
    if (cache.empty() || cache_key != s) {
        cache_key = s;
        cache.clear();
        append_json_string(cache, utf8_text(s));
    }
    return cache;
}

void ConnJsonWriter::append(std::string& out, const ConnReport& c, bool sockets_tracked, size_t indent)
{
    ObjectText o(out, indent);
    char conn[2 + 16 + 2] = {'"', '0', 'x'};
    char* end = std::to_chars(conn + 3, conn + sizeof(conn) - 1, c.conn, 16).ptr;  // as "0x%" PRIx64
    *end++ = '"';
    o.json_text("conn", std::string_view(conn, static_cast<size_t>(end - conn)));
    o.number("tid", static_cast<int64_t>(c.tid));
    o.json_text("site", quoted(site_, site_json_, c.site));
    o.number("age_ms", round_ms(c.age_ms));
    o.boolean("leak", c.leak);
    if (sockets_tracked) {
        o.text_or_null("peer", !c.peer.empty(), c.peer);
        const std::string local = c.local.str();
        o.text_or_null("local", !local.empty(), local);
        o.text("socket", c.socket);
    }
    if (c.idle_ms >= 0)
        o.number("idle_ms", round_ms(c.idle_ms));
    else
        o.null("idle_ms");
    const bool last_used = !c.last_used_site.empty();
    if (last_used)
        o.json_text("last_used_site", quoted(last_used_, last_used_json_, c.last_used_site));
    else
        o.null("last_used_site");
    if (!last_used) {
        o.null("last_used_frames");
    } else if (!c.last_used_frames || c.last_used_frames->empty()) {
        o.key("last_used_frames") += "[]";
    } else {
        std::string& a = o.key("last_used_frames");
        a += '[';
        bool first = true;
        for (const std::string& f : *c.last_used_frames) {
            a += first ? "\n" : ",\n";
            first = false;
            a.append(indent + 4, ' ');
            append_json_string(a, utf8_text(f));
        }
        a += '\n';
        a.append(indent + 2, ' ');
        a += ']';
    }
    // add_handle_keys (handle_json.cpp): null unless the state is known.
    const bool known = c.state_known && c.state != ConnState::unknown;
    o.text_or_null("state", known, known ? conn_state_name(c.state) : "");
    if (known && c.backend_pid)
        o.number("backend_pid", static_cast<int64_t>(c.backend_pid));
    else
        o.null("backend_pid");
    if (known) {
        o.json_text("database", quoted(database_, database_json_, c.database));
        o.json_text("user", quoted(user_, user_json_, c.user));
    } else {
        o.null("database");
        o.null("user");
    }
    o.boolean("pooled", c.pooled);
}

void append_conn_json(std::string& out, const ConnReport& c, bool sockets_tracked, size_t indent)
{
    ConnJsonWriter().append(out, c, sockets_tracked, indent);
}

}  // namespace connleak
