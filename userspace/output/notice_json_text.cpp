#include "notice_json_text.h"

#include <charconv>
#include <cmath>

#include "json_object_text.h"
#include "safe_text.h"
#include "time_format.h"

namespace connleak {

void append_notices_json(std::string& out, const std::vector<Notice>& notices, size_t indent)
{
    append_array(out, notices, indent, [&](const Notice& n, size_t at) {
        ObjectText o(out, at);
        o.count("seq", n.seq);
        o.text("kind", n.kind);
        o.text("time", format_utc(n.wall_time_s));
        o.count("pid", n.pid);
        o.count("tid", n.tid);
        o.text("comm", utf8_text(n.comm));
        char conn[2 + 16 + 2] = {'"', '0', 'x'};
        char* end = std::to_chars(conn + 3, conn + sizeof(conn) - 1, n.conn, 16).ptr;  // as "0x%" PRIx64
        *end++ = '"';
        o.json_text("conn", std::string_view(conn, static_cast<size_t>(end - conn)));
        o.number(n.kind == "leak" ? "age_ms" : "held_ms", std::round(n.age_ms * 10.0) / 10.0);
        o.text("site", utf8_text(n.site));
        append_frames(o.key("frames"), n.frames, at + 2);
        // add_notice_pool_keys (handle_json.cpp).
        o.boolean("pooled", n.pooled);
        if (n.pooled && n.kind == "leak")
            o.number("in_transaction_ms", std::round(n.in_transaction_ms * 10.0) / 10.0);
    });
}

}  // namespace connleak
